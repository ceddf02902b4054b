// xgr/topk/keys.hpp — the total order of candidates, as one 64-bit integer.
//
// The contract orders candidates by score, higher first, ties broken by the lower flattened
// index. Packing (score, index) into one unsigned 64-bit key makes that order plain integer
// comparison: the high word is the score mapped to an order-preserving unsigned integer, the low
// word is the bit-inverted index (so a lower index compares larger). Keys of distinct candidates
// are distinct, hence "the k largest keys" is a unique set and every implementation — host
// reference, CUDA kernels, baselines — selects bit-identical results.
//
// Candidates that can never be selected (masked, NaN, -inf) have no key; key 0 is reserved as
// "no candidate" because every selectable score maps above it.
#pragma once

#include <cstdint>

#include "xgr/core/config.hpp"
#include "xgr/core/dtype.hpp"

namespace xgr::topk {

using CandidateKey = std::uint64_t;
inline constexpr CandidateKey no_candidate = 0;

// Monotone map float -> uint32 (IEEE total order for non-NaN values). -0.0 is folded into +0.0
// first so that the two zeros, which compare equal as scores, tie and fall back to the index.
XGR_HOST_DEVICE constexpr std::uint32_t ordered_bits(float score) noexcept {
  const std::uint32_t bits = detail::bit_cast<std::uint32_t>(score + 0.0f);
  return (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
}

XGR_HOST_DEVICE constexpr float score_of_ordered(std::uint32_t ordered) noexcept {
  const std::uint32_t bits = (ordered & 0x80000000u) != 0 ? (ordered & 0x7fffffffu) : ~ordered;
  return detail::bit_cast<float>(bits);
}

// A candidate can be selected unless its score is NaN or -inf (masked tokens score -inf).
XGR_HOST_DEVICE constexpr bool is_selectable(float score) noexcept { return score > -__builtin_huge_valf(); }

XGR_HOST_DEVICE constexpr CandidateKey make_key(float score, std::uint32_t flat_index) noexcept {
  return (static_cast<CandidateKey>(ordered_bits(score)) << 32) | static_cast<CandidateKey>(~flat_index);
}

XGR_HOST_DEVICE constexpr float key_score(CandidateKey key) noexcept { return score_of_ordered(static_cast<std::uint32_t>(key >> 32)); }
XGR_HOST_DEVICE constexpr std::uint32_t key_index(CandidateKey key) noexcept { return ~static_cast<std::uint32_t>(key); }

// Index written to output slots beyond a group's count (score -inf): never a valid flat index,
// because flat indices are checked to stay below it.
inline constexpr std::uint32_t empty_index = 0xffffffffu;

}  // namespace xgr::topk
