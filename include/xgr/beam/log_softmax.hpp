// xgr/beam/log_softmax.hpp — a log-sum-exp that host and device compute bit for bit alike.
//
// Beam selections must agree exactly between the host reference and the CUDA kernels, and a
// candidate's score depends on its row's log-sum-exp. Two things usually make that value differ
// between implementations: the order of the floating-point sum, and the exp/log of each math library.
// Both are taken out here:
//
//   * exp(x - max) lies in (0, 1]; it is added as a fixed-point integer with 43 fraction bits
//     (truncated). Integer addition is associative, so any summation order — a sequential loop, a
//     warp shuffle tree, atomics — gives the same sum. Terms below 2^-43 (x - max < -29.9) vanish;
//     a row of 2^20 elements loses at most 2^-23 of its sum, about one float ulp of the result.
//     The sum fits 64 bits for rows up to 2^20 elements (max_normalized_vocab).
//   * exp and log are short polynomial evaluations (Cephes coefficients) written with explicit
//     fused multiply-adds and no multiply feeding an add, so no compiler contraction can change
//     them; every operation is a correctly rounded IEEE single-precision operation on both sides.
//
// The row's log-sum-exp is then lse = max + log(sum), accurate to about 2 ulp — well inside the
// tolerance against PyTorch's log_softmax, and identical everywhere.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "xgr/core/config.hpp"
#include "xgr/core/dtype.hpp"

namespace xgr::beam {

inline constexpr int lse_fraction_bits = 43;
inline constexpr std::size_t max_normalized_vocab = std::size_t{1} << 20;

namespace detail {

XGR_HOST_DEVICE inline float fma_rn(float a, float b, float c) noexcept {
#if XGR_DEVICE_PASS
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

XGR_HOST_DEVICE inline float mul_rn(float a, float b) noexcept {
#if XGR_DEVICE_PASS
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

XGR_HOST_DEVICE inline float add_rn(float a, float b) noexcept {
#if XGR_DEVICE_PASS
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// The larger of a and b, or the other operand where one is NaN (IEEE maxNum; one instruction on a GPU).
// max_ignoring_nan below agrees except, possibly, in the sign of a zero result; it is kept for the
// host reference's row maxima, this one for exp_fixed's clamp, which runs once per logit.
XGR_HOST_DEVICE inline float max_or_other(float a, float b) noexcept {
#if XGR_DEVICE_PASS
  return fmaxf(a, b);
#else
  return std::fmax(a, b);
#endif
}

// Rounds v to the nearest integer, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves no fraction
// bits, so the addition itself rounds. Returns the integer as a float and as an int, both without
// a conversion instruction (a GPU runs those at an eighth of the rate of an add).
struct RoundedInteger {
  float value;
  int integer;
};
XGR_HOST_DEVICE inline RoundedInteger round_to_integer(float v) noexcept {
  constexpr float shifter = 12582912.0f;  // 1.5 * 2^23, bits 0x4b400000
  const float shifted = add_rn(v, shifter);
  return {add_rn(shifted, -shifter),
          static_cast<int>(xgr::detail::bit_cast<std::uint32_t>(shifted)) - static_cast<int>(0x4b400000u)};
}

// 2^n for n in [-126, 127], built from the exponent bits (exact).
XGR_HOST_DEVICE constexpr float exp2_integer(int n) noexcept {
  return xgr::detail::bit_cast<float>(static_cast<std::uint32_t>(n + 127) << 23);
}

// floor(e * 2^power) for a float e in [0.5, 2) and power in [0, 44]: the integer is built
// from e's bits (24-bit significand, shifted) instead of converted, which gives the same value as
// truncating the exact product.
XGR_HOST_DEVICE inline std::uint64_t scaled_to_integer(float e, int power) noexcept {
  const std::uint32_t bits = xgr::detail::bit_cast<std::uint32_t>(e);
  const std::uint64_t significand = (bits & 0x007fffffu) | 0x00800000u;             // e = significand * 2^(exponent - 23)
  const int exponent = static_cast<int>(bits >> 23) - 127;                              // -1 or 0
  return (significand << 21) >> (21 - (exponent - 23 + power));                        // shift 44 - exponent - power: 0 to 45
}

// exp(x) * 2^43 == e * 2^power, with e in [0.7, 1.42] and power in [0, 43], for x = logit - row
// max <= 0; NaN and x < -30 are taken as -30, whose term truncates to 0.
struct ScaledExp {
  float e;
  int power;
};
XGR_HOST_DEVICE inline ScaledExp scaled_exp(float x) noexcept {
  x = max_or_other(x, -30.0f);
  const RoundedInteger n = round_to_integer(mul_rn(x, 1.44269504088896341f));  // n in [-44, 0]
  float r = fma_rn(n.value, -0.693359375f, x);                                  // x - n ln2, in two parts
  r = fma_rn(n.value, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fma_rn(p, r, 1.3981999507e-3f);
  p = fma_rn(p, r, 8.3334519073e-3f);
  p = fma_rn(p, r, 4.1665795894e-2f);
  p = fma_rn(p, r, 1.6666665459e-1f);
  p = fma_rn(p, r, 5.0000001201e-1f);
  const float e = add_rn(fma_rn(p, mul_rn(r, r), r), 1.0f);  // exp(r), r in [-0.35, 0.35]
  return {e, n.integer + lse_fraction_bits};
}

}  // namespace detail

// exp(x) * 2^43, truncated, for x = logit - row max <= 0. NaN and x < -30 contribute 0.
XGR_HOST_DEVICE inline std::uint64_t exp_fixed(float x) noexcept {
  const detail::ScaledExp scaled = detail::scaled_exp(x);
  return detail::scaled_to_integer(scaled.e, scaled.power);
}

#if defined(__CUDACC__)
// The same terms, summed on the device without 64-bit arithmetic per term: each term is split at
// 2^22 into a high and a low part, truncated by float additions rounded toward zero (the sum with
// 2^23 has no fraction bits), and the parts' bit patterns are summed in 32-bit words. A GPU issues
// these at the full float rate; the 64-bit shifts and adds of exp_fixed are several integer
// instructions each. join() gives exactly the sum of exp_fixed over the same terms.
struct ExpFixedSum {
  std::uint32_t high_bits = 0;  // sum of (2^23 + floor(term / 2^22)) as float bits, modulo 2^32
  std::uint32_t low_bits = 0;   // sum of (2^23 + term mod 2^22) as float bits, modulo 2^32
  std::uint32_t terms = 0;

  __device__ void add(float x) {
    const detail::ScaledExp scaled = detail::scaled_exp(x);
    constexpr float shifter = 8388608.0f;                                                   // 2^23, bits 0x4b000000
    const float term = __fmul_rn(scaled.e, detail::exp2_integer(scaled.power));           // exact: a power of two
    const float high = __fadd_rz(__fmul_rn(term, 0x1p-22f), shifter);                      // 2^23 + floor(term / 2^22)
    const float low = __fmaf_rn(__fadd_rn(high, -shifter), -4194304.0f, term);            // term - that * 2^22: exact
    high_bits += __float_as_uint(high);
    low_bits += __float_as_uint(__fadd_rz(low, shifter));                                 // 2^23 + floor(low)
    ++terms;
  }
  // Exact while terms < 1024 (each part is below 2^22).
  [[nodiscard]] __device__ std::uint64_t join() const {
    return (static_cast<std::uint64_t>(high_bits - terms * 0x4b000000u) << 22) + (low_bits - terms * 0x4b000000u);
  }
};
#endif

// log(fixed_sum * 2^-43) for fixed_sum >= 2^43 (the row maximum alone contributes exactly 2^43).
XGR_HOST_DEVICE inline float log_fixed(std::uint64_t fixed_sum) noexcept {
#if XGR_DEVICE_PASS
  const float sum = __ull2float_rn(fixed_sum);
#else
  const float sum = static_cast<float>(fixed_sum);  // round to nearest, like __ull2float_rn
#endif
  const std::uint32_t bits = xgr::detail::bit_cast<std::uint32_t>(sum);
  int exponent = static_cast<int>(bits >> 23) - 127 - lse_fraction_bits;
  float m = xgr::detail::bit_cast<float>((bits & 0x007fffffu) | 0x3f800000u);  // mantissa in [1, 2)
  if (m > 1.41421356f) {  // keep m in [sqrt(1/2), sqrt(2)) so the polynomial argument stays small
    m = detail::mul_rn(m, 0.5f);
    ++exponent;
  }
  const float x = detail::add_rn(m, -1.0f);
  const float z = detail::mul_rn(x, x);
  float y = 7.0376836292e-2f;
  y = detail::fma_rn(y, x, -1.1514610310e-1f);
  y = detail::fma_rn(y, x, 1.1676998740e-1f);
  y = detail::fma_rn(y, x, -1.2420140846e-1f);
  y = detail::fma_rn(y, x, 1.4249322787e-1f);
  y = detail::fma_rn(y, x, -1.6668057665e-1f);
  y = detail::fma_rn(y, x, 2.0000714765e-1f);
  y = detail::fma_rn(y, x, -2.4999993993e-1f);
  y = detail::fma_rn(y, x, 3.3333331174e-1f);
  y = detail::mul_rn(detail::mul_rn(y, x), z);
  const auto e = static_cast<float>(exponent);
  y = detail::fma_rn(e, -2.12194440e-4f, y);
  y = detail::fma_rn(z, -0.5f, y);
  const float log_m = detail::add_rn(x, y);
  return detail::fma_rn(e, 0.693359375f, log_m);
}

// The contract's log-sum-exp of a row, given its maximum and its fixed-point sum.
// A row whose maximum is not finite has no finite log-sum-exp: the result is that maximum (-inf for
// an all -inf row, +inf or NaN otherwise), which makes every score of the row unselectable.
XGR_HOST_DEVICE inline float log_sum_exp(float row_max, std::uint64_t fixed_sum) noexcept {
  if (!(row_max > -__builtin_huge_valf() && row_max < __builtin_huge_valf())) return row_max;
  return detail::add_rn(row_max, log_fixed(fixed_sum));
}

// NaN-ignoring maximum (fmaxf semantics), identical on both sides.
XGR_HOST_DEVICE inline float max_ignoring_nan(float a, float b) noexcept { return (b > a || a != a) ? b : a; }

}  // namespace xgr::beam
