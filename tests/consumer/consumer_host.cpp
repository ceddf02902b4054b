// Uses the host part of an installed (or vendored) xgr; exits non-zero if anything is off.
#include <xgr/xgr.hpp>

#include <cstdio>

int main() {
  xgr::HostBuffer<float> scores(16);
  for (std::size_t i = 0; i < scores.size(); ++i) scores[i] = static_cast<float>(i);
  const xgr::MatrixView<const float> view = xgr::matrix_view<const float>(scores.span(), 4, 4);
  const float corner = view(3, 3);
  const float rounded = xgr::to_float(xgr::bfloat16(corner));
  std::printf("xgr %d.%d.%d consumer: corner %.1f (bf16 %.1f)\n", XGR_VERSION_MAJOR, XGR_VERSION_MINOR,
              XGR_VERSION_PATCH, static_cast<double>(corner), static_cast<double>(rounded));
  return (corner == 15.0f && rounded == 15.0f) ? 0 : 1;
}
