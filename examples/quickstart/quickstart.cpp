// quickstart — the core vocabulary of xgr in one page.
//
// A GR decode step hands xgr a matrix of scores: one row per live beam, one column per token of
// the vocabulary. This example builds such a matrix in bf16, views it without copying, sizes a
// workspace once for the largest batch, and reuses it for smaller ones, which is the pattern every
// xgr primitive follows. It needs no GPU.
#include <fmt/core.h>

#include <cstdint>
#include <random>

#include <xgr/xgr.hpp>

namespace {

struct StepShape {
  std::size_t beams;
  std::size_t vocab;
};

struct StepScratch {
  float* row_max;       // one per beam
  std::uint32_t* best;  // one per beam
};

// The single description of the scratch a step needs: used to size and to carve.
StepScratch carve(xgr::WorkspaceArena& arena, StepShape shape) {
  return {arena.take<float>(shape.beams), arena.take<std::uint32_t>(shape.beams)};
}

}  // namespace

int main() {
  const StepShape largest{256, 8192};
  const std::size_t workspace_bytes = xgr::workspace_bytes_of([&](xgr::WorkspaceArena& a) { (void)carve(a, largest); });
  xgr::HostWorkspace workspace(workspace_bytes);
  fmt::print("workspace for up to {} beams x {} tokens: {} bytes, allocated once\n", largest.beams, largest.vocab,
             workspace.capacity_bytes());

  std::mt19937 rng(2026);
  std::normal_distribution<float> logit(0.0f, 2.0f);
  for (const StepShape shape : {StepShape{256, 8192}, StepShape{128, 8192}, StepShape{7, 1000}}) {
    // Scores live in a padded buffer: the row stride (vocab rounded up to 64) differs from the width.
    const std::size_t stride = (shape.vocab + 63) / 64 * 64;
    xgr::HostBuffer<xgr::bfloat16> storage(shape.beams * stride);
    for (std::size_t i = 0; i < storage.size(); ++i) storage[i] = xgr::bfloat16(logit(rng));
    const auto scores = xgr::matrix_view<const xgr::bfloat16>(storage.span(), shape.beams, shape.vocab, stride);

    workspace.require(xgr::workspace_bytes_of([&](xgr::WorkspaceArena& a) { (void)carve(a, shape); }), "quickstart");
    xgr::WorkspaceArena arena = workspace.arena();
    const StepScratch scratch = carve(arena, shape);
    for (std::size_t beam = 0; beam < scores.rows; ++beam) {
      scratch.row_max[beam] = -1e30f;
      for (std::size_t token = 0; token < scores.cols; ++token) {
        const float value = xgr::to_float(scores(beam, token));
        if (value > scratch.row_max[beam]) {  // strict: ties keep the lower token, as xgr orders
          scratch.row_max[beam] = value;
          scratch.best[beam] = static_cast<std::uint32_t>(token);
        }
      }
    }
    fmt::print("{:>4} beams x {:>5} tokens (stride {:>5}): beam 0 best token {:>5} ({:+.3f}), scratch used {} bytes\n",
               shape.beams, shape.vocab, stride, scratch.best[0], scratch.row_max[0], arena.used_bytes());
  }
  return 0;
}
