// xgr/core/dtype.hpp — the element types xgr computes on: float, half and bfloat16.
//
// `xgr::half` and `xgr::bfloat16` are 2-byte storage types with the same bit layout as CUDA's
// `__half` and `__nv_bfloat16`, usable from a plain C++20 compiler. Arithmetic always happens in
// float: convert with `to_float` / `from_float<T>`, which round to nearest-even and agree bit for
// bit between host and device for every non-NaN value (tests check all 65,536 bit patterns).
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>

#include "xgr/core/config.hpp"

namespace xgr {
namespace detail {

template <class To, class From>
XGR_HOST_DEVICE constexpr To bit_cast(const From& from) noexcept {
  static_assert(sizeof(To) == sizeof(From));
  return __builtin_bit_cast(To, from);
}

// IEEE binary16, round to nearest even. Overflow becomes infinity; NaN stays a quiet NaN.
XGR_HOST_DEVICE constexpr std::uint16_t float_to_half_bits(float value) noexcept {
  const std::uint32_t x = bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t exponent = (x >> 23) & 0xffu;
  std::uint32_t mantissa = x & 0x7fffffu;
  if (exponent == 0xffu) {
    return static_cast<std::uint16_t>(sign | 0x7c00u | (mantissa != 0 ? 0x200u | (mantissa >> 13) : 0u));
  }
  const int half_exponent = static_cast<int>(exponent) - 127 + 15;
  if (half_exponent >= 31) return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (half_exponent <= 0) {
    // Result is subnormal (or zero): value = m * 2^-24 with m = significand >> (14 - half_exponent).
    if (half_exponent < -10) return static_cast<std::uint16_t>(sign);
    mantissa |= 0x800000u;
    const unsigned shift = static_cast<unsigned>(14 - half_exponent);
    std::uint32_t half_mantissa = mantissa >> shift;
    const std::uint32_t remainder = mantissa & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (remainder > halfway || (remainder == halfway && (half_mantissa & 1u))) ++half_mantissa;
    return static_cast<std::uint16_t>(sign | half_mantissa);
  }
  std::uint32_t half = sign | (static_cast<std::uint32_t>(half_exponent) << 10) | (mantissa >> 13);
  const std::uint32_t remainder = mantissa & 0x1fffu;
  // A carry out of the mantissa correctly bumps the exponent, up to infinity.
  if (remainder > 0x1000u || (remainder == 0x1000u && (half & 1u))) ++half;
  return static_cast<std::uint16_t>(half);
}

XGR_HOST_DEVICE constexpr float half_bits_to_float(std::uint16_t bits) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  std::uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    if (mantissa == 0) return bit_cast<float>(sign);
    std::uint32_t float_exponent = 113;  // 127 - 14: the exponent of the smallest normal half
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --float_exponent;
    }
    return bit_cast<float>(sign | (float_exponent << 23) | ((mantissa & 0x3ffu) << 13));
  }
  if (exponent == 0x1fu) return bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// bfloat16 is the upper half of a float: widening is a shift, narrowing rounds to nearest even.
XGR_HOST_DEVICE constexpr std::uint16_t float_to_bfloat16_bits(float value) noexcept {
  const std::uint32_t x = bit_cast<std::uint32_t>(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

XGR_HOST_DEVICE constexpr float bfloat16_bits_to_float(std::uint16_t bits) noexcept {
  return bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

}  // namespace detail

// IEEE binary16 storage; layout-compatible with CUDA's __half.
struct alignas(2) half {
  std::uint16_t bits;

  half() = default;
  XGR_HOST_DEVICE constexpr explicit half(float value) noexcept : bits(detail::float_to_half_bits(value)) {}
  XGR_HOST_DEVICE static constexpr half from_bits(std::uint16_t raw) noexcept {
    half h{};
    h.bits = raw;
    return h;
  }
  XGR_HOST_DEVICE constexpr explicit operator float() const noexcept { return detail::half_bits_to_float(bits); }
};

// bfloat16 storage; layout-compatible with CUDA's __nv_bfloat16.
struct alignas(2) bfloat16 {
  std::uint16_t bits;

  bfloat16() = default;
  XGR_HOST_DEVICE constexpr explicit bfloat16(float value) noexcept : bits(detail::float_to_bfloat16_bits(value)) {}
  XGR_HOST_DEVICE static constexpr bfloat16 from_bits(std::uint16_t raw) noexcept {
    bfloat16 b{};
    b.bits = raw;
    return b;
  }
  XGR_HOST_DEVICE constexpr explicit operator float() const noexcept { return detail::bfloat16_bits_to_float(bits); }
};

static_assert(sizeof(half) == 2 && std::is_trivially_copyable_v<half>);
static_assert(sizeof(bfloat16) == 2 && std::is_trivially_copyable_v<bfloat16>);

enum class DType : std::uint8_t { f32, f16, bf16 };

[[nodiscard]] constexpr std::string_view to_string(DType dtype) noexcept {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
  }
  return "?";
}

template <class T>
struct dtype_traits;  // only the element types below are supported

template <>
struct dtype_traits<float> {
  static constexpr DType dtype = DType::f32;
  static constexpr std::string_view name = "f32";
};
template <>
struct dtype_traits<half> {
  static constexpr DType dtype = DType::f16;
  static constexpr std::string_view name = "f16";
};
template <>
struct dtype_traits<bfloat16> {
  static constexpr DType dtype = DType::bf16;
  static constexpr std::string_view name = "bf16";
};

// The element types a score, logit or activation may have.
template <class T>
concept Element = requires { dtype_traits<std::remove_cv_t<T>>::dtype; };

XGR_HOST_DEVICE constexpr float to_float(float value) noexcept { return value; }

XGR_HOST_DEVICE inline float to_float(half value) noexcept {
#if XGR_DEVICE_PASS
  float result;
  asm("cvt.f32.f16 %0, %1;" : "=f"(result) : "h"(value.bits));
  return result;
#else
  return detail::half_bits_to_float(value.bits);
#endif
}

XGR_HOST_DEVICE constexpr float to_float(bfloat16 value) noexcept { return detail::bfloat16_bits_to_float(value.bits); }

template <Element T>
XGR_HOST_DEVICE constexpr T from_float(float value) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return value;
  } else {
    return T(value);
  }
}

}  // namespace xgr
