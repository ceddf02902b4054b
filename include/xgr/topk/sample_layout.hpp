// xgr/topk/sample_layout.hpp — where the CUDA early-exit path samples a group, and at which rank
// of the sample it takes its bound (see cuda.cuh and docs/topk.md). Plain arithmetic, callable on
// the host and the device, so that host tests check the layout the kernels use.
#pragma once

#include <cmath>
#include <cstdint>

#include "xgr/core/config.hpp"

namespace xgr::topk::cuda_detail {

inline constexpr int sample_threads = 256;
inline constexpr int sample_run = 16;     // consecutive positions a sampling thread reads; it keeps their best
// About one position in sample_stride is sampled (runs spread evenly). Sparser samples cost less to
// read (the sample's scattered 64-byte runs use the memory poorly: one in 16 took a fifth of a
// 32 x 512 x 8,192 call) and let about r x sample_stride candidates through the filter, a few
// thousand at most for k <= 512, which the select kernel stages in shared memory.
inline constexpr int sample_stride = 64;
inline constexpr std::uint32_t max_sample_runs = 16384;  // per group; at most 64 sample blocks

// The sample: a group of `positions` candidates is read in runs of sample_run consecutive positions,
// `runs` of them spread evenly. Run i lies in its own cell [i x positions / runs, (i + 1) x positions
// / runs) (bounds rounded down to multiples of sample_run, so that dense runs of aligned rows are
// aligned vectors) at a slot picked by hashing i: runs never overlap, so their best candidates are
// distinct candidates, and they do not sit at the same columns of every row (when vocab is a
// multiple of the cell width), where a token every beam scores highly would be sampled in every row.
XGR_HOST_DEVICE constexpr std::uint64_t sample_run_start(std::uint64_t run, std::uint64_t positions, std::uint64_t runs) {
  const std::uint64_t cell_begin = run * positions / runs / sample_run * sample_run;
  const std::uint64_t cell_end = (run + 1) * positions / runs / sample_run * sample_run;
  const std::uint64_t slots = (cell_end - cell_begin) / sample_run;  // >= 1: runs <= positions / sample_run
  const std::uint64_t slot = slots > 1 ? ((run * 0x9E3779B97F4A7C15ull) >> 40) % slots : 0;
  return cell_begin + slot * sample_run;
}

// Run slots per group for groups of at most `max_positions` and a given k: about one position in
// sample_stride, and at least 4k runs (the bound is the bound_rank-th best run, up to the k-th, so
// it needs many more than k); whole sample blocks, at most max_sample_runs.
XGR_HOST_DEVICE constexpr std::uint64_t sample_slots(std::uint64_t max_positions, std::uint64_t k) {
  const std::uint64_t spread = (max_positions + sample_run * sample_stride - 1) / (sample_run * sample_stride);
  const std::uint64_t wanted = spread > 4 * k ? spread : 4 * k;
  const std::uint64_t blocks = (wanted + sample_threads - 1) / sample_threads;
  return blocks * sample_threads < max_sample_runs ? (blocks > 0 ? blocks : 1) * sample_threads : max_sample_runs;
}

// Runs sampled from a group of `positions` with `slots` run slots launched (sized for the call's
// largest group): what sample_slots asks for this group, no more than fit without overlapping.
XGR_HOST_DEVICE constexpr std::uint64_t sampled_runs(std::uint64_t positions, std::uint64_t slots, std::uint64_t k) {
  const std::uint64_t wanted = sample_slots(positions, k) < slots ? sample_slots(positions, k) : slots;
  return positions / sample_run < wanted ? positions / sample_run : wanted;
}

// Runs each sample warp passes on to the bound: about 2k / warps (the k best runs spread evenly over
// the warps, twice over), at least 2. A warp holding more of the k best than it passes on only
// lowers the bound a little: it stays a bound.
XGR_HOST_DEVICE constexpr std::uint32_t sample_kept_per_warp(std::uint64_t blocks, std::uint64_t k) {
  const std::uint64_t warps = blocks * (sample_threads / 32);
  const std::uint64_t kept = (2 * k + warps - 1) / warps;
  return static_cast<std::uint32_t>(kept < 2 ? 2 : kept > 32 ? 32 : kept);
}

// The rank, among a group's sampled runs, at which the bound is taken. The k-th best run is a bound
// no input can defeat, but it lets about k x positions / sampled positions candidates through (64k
// for the usual 1-in-64 sample). Taking the r-th best run instead, with r = m + 6 sqrt(m) + 6 for
// the m = k x sampled / positions of the group's k best that the sample holds on average, lets
// about r x positions / sampled through: 1,408 instead of 16,384 for k = 256 over 256 x 8,192
// (r = 22). It is a bound with
// overwhelming probability, not always: fewer than k candidates reach it only if the sample holds
// at least r of fewer than k, more than six standard deviations above the mean (below 1e-9 for
// any k when the input's order is unrelated to the sample positions). The select kernel detects
// that (fewer than k survivors) and selects over the group's input instead. Small k and groups
// sampled whole get r = k.
XGR_HOST_DEVICE inline std::uint32_t bound_rank(std::uint64_t k, std::uint64_t runs, std::uint64_t positions) {
  if (positions == 0) return static_cast<std::uint32_t>(k);
  const double mean = static_cast<double>(k) * static_cast<double>(runs * sample_run) / static_cast<double>(positions);
  const double rank = ceil(mean + 6.0 * sqrt(mean) + 6.0);
  return rank >= static_cast<double>(k) ? static_cast<std::uint32_t>(k) : static_cast<std::uint32_t>(rank);
}

}  // namespace xgr::topk::cuda_detail
