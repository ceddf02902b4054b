#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "support/random.hpp"
#include "xgr/core/dtype.hpp"

namespace {

// All finite values of a 16-bit format, sorted ascending, with their bit patterns: an independent
// oracle for round-to-nearest-even that shares no code with the conversion under test.
template <class T>
struct FiniteTable {
  std::vector<double> values;
  std::vector<std::uint16_t> bits;
  FiniteTable() {
    std::vector<std::pair<double, std::uint16_t>> entries;
    for (std::uint32_t b = 0; b < 65536; ++b) {
      const float v = xgr::to_float(T::from_bits(static_cast<std::uint16_t>(b)));
      if (std::isfinite(v) && !(v == 0.0f && (b & 0x8000u))) entries.emplace_back(v, static_cast<std::uint16_t>(b));
    }
    std::sort(entries.begin(), entries.end());
    for (const auto& [v, b] : entries) {
      values.push_back(v);
      bits.push_back(b);
    }
  }
};

// Round-to-nearest-even by search in the table; overflow goes to infinity when the value is at least
// halfway between the largest finite value and the next power step (IEEE semantics).
template <class T>
std::uint16_t reference_round(const FiniteTable<T>& table, float value, std::uint16_t infinity_bits) {
  const double v = std::fabs(static_cast<double>(value));
  const std::uint16_t sign = std::signbit(value) ? 0x8000u : 0u;
  const double max_finite = table.values.back();
  const double ulp_at_max = max_finite - table.values[table.values.size() - 2];
  if (v >= max_finite + ulp_at_max / 2) return sign | infinity_bits;
  const auto upper = std::lower_bound(table.values.begin(), table.values.end(), v);
  if (upper == table.values.end()) return static_cast<std::uint16_t>(sign | table.bits.back());  // rounds down to max
  const std::size_t hi = static_cast<std::size_t>(upper - table.values.begin());
  if (*upper == v || hi == 0) return static_cast<std::uint16_t>(sign | table.bits[hi]);
  const std::size_t lo = hi - 1;
  const double below = v - table.values[lo];
  const double above = table.values[hi] - v;
  std::size_t pick = below < above ? lo : hi;
  if (below == above) pick = (table.bits[lo] & 1u) == 0 ? lo : hi;
  return static_cast<std::uint16_t>(sign | table.bits[pick]);
}

}  // namespace

TEST_CASE("half: every bit pattern survives a round trip through float") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto h = xgr::half::from_bits(static_cast<std::uint16_t>(b));
    const float f = xgr::to_float(h);
    if (std::isnan(f)) {
      CHECK(std::isnan(xgr::to_float(xgr::half(f))));
    } else {
      CHECK(xgr::half(f).bits == b);
    }
  }
}

TEST_CASE("bfloat16: every bit pattern survives a round trip through float") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto h = xgr::bfloat16::from_bits(static_cast<std::uint16_t>(b));
    const float f = xgr::to_float(h);
    if (std::isnan(f)) {
      CHECK(std::isnan(xgr::to_float(xgr::bfloat16(f))));
    } else {
      CHECK(xgr::bfloat16(f).bits == b);
    }
  }
}

TEST_CASE("half: known values, subnormals, overflow and ties round as IEEE says") {
  CHECK(xgr::half(1.0f).bits == 0x3c00);
  CHECK(xgr::half(-2.0f).bits == 0xc000);
  CHECK(xgr::half(65504.0f).bits == 0x7bff);
  CHECK(xgr::half(65519.0f).bits == 0x7bff);  // below the halfway point to 65536
  CHECK(xgr::half(65520.0f).bits == 0x7c00);  // halfway: ties to even, which is infinity
  CHECK(xgr::half(std::ldexp(1.0f, -24)).bits == 0x0001);
  CHECK(xgr::half(std::ldexp(1.0f, -25)).bits == 0x0000);         // tie to even (zero)
  CHECK(xgr::half(std::ldexp(3.0f, -26)).bits == 0x0001);         // 0.75 ulp rounds up
  CHECK(xgr::half(-std::numeric_limits<float>::infinity()).bits == 0xfc00);
  CHECK(xgr::half(-0.0f).bits == 0x8000);
  CHECK(std::isnan(xgr::to_float(xgr::half(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("half and bfloat16 narrowing matches a table-search oracle on random floats") {
  static const FiniteTable<xgr::half> half_table;
  static const FiniteTable<xgr::bfloat16> bf16_table;
  auto rng = xgr::test::make_rng(11);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  std::uniform_real_distribution<float> exponent(-30.0f, 20.0f);
  for (int i = 0; i < 200000; ++i) {
    // Half the draws cover every float bit pattern, half concentrate on half's range.
    float value = std::bit_cast<float>(any_bits(rng));
    if (i % 2 == 1) value = std::copysign(std::exp2(exponent(rng)), value);
    if (std::isnan(value)) continue;
    const auto half_expected = reference_round(half_table, value, 0x7c00);
    const auto bf16_expected = reference_round(bf16_table, value, 0x7f80);
    if (xgr::half(value).bits != half_expected || xgr::bfloat16(value).bits != bf16_expected) {
      FAIL_CHECK("value " << value << " (bits " << std::bit_cast<std::uint32_t>(value) << ")");
    }
  }
}

TEST_CASE("dtype traits name every element type") {
  CHECK(xgr::dtype_traits<float>::dtype == xgr::DType::f32);
  CHECK(xgr::dtype_traits<xgr::half>::name == "f16");
  CHECK(xgr::dtype_traits<xgr::bfloat16>::name == "bf16");
  CHECK(xgr::to_string(xgr::DType::bf16) == "bf16");
  static_assert(xgr::Element<float> && xgr::Element<const xgr::half> && !xgr::Element<double>);
  CHECK(xgr::from_float<xgr::bfloat16>(1.5f).bits == xgr::bfloat16(1.5f).bits);
}
