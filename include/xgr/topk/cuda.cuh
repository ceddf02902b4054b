// xgr/topk/cuda.cuh — MaskedTopK on the GPU (see topk.hpp for the contract, host.hpp for the
// reference, docs/topk.md for the algorithm and its bounds).
//
// Default policy, EarlyExit, in four launches batched over every group of the call:
//
//   1. sample         many blocks per group read about one position in 64, as runs of 16
//                     consecutive candidates (aligned 16-byte loads); each thread keeps the best
//                     score of its run, and each warp passes its best few runs on.
//   2. bound          one block per group selects (radix select, 8 bits a pass) a score reached by
//                     r of those runs (r = k for small k and groups sampled whole, else well below
//                     it). The runs are disjoint, so r distinct candidates reach it; for any input
//                     that does not crowd its best into the sample, at least k do (see bound_rank).
//                     Dense and bitset groups of at most 8 sample blocks take 1 and 2 as one
//                     sample_bound_kernel: a cluster per group, the kept runs in distributed
//                     shared memory.
//   3. filter         one streaming pass over all scores. A candidate whose key is below its
//                     group's bound cannot be in the top k and is dropped in registers; rows whose
//                     score bound (optional) is below it are not read at all. Survivors are
//                     appended to a per-group buffer with one atomic per block. Dense fp32 rows
//                     of a tile or more (no row bounds) are streamed through shared memory by
//                     persistent blocks whose first tiles are requested before the bound exists;
//                     others are read by short-lived blocks with 16-byte loads.
//   4. select         one block per group stages the survivors in shared memory, selects the k-th
//                     exactly by splitting their range [bound, max] into bins, and writes the
//                     winners in order (warp-sorted lists of 32, merged by binary search).
//   With score hints from the caller (TopKProblem::row_score_hints), launches 1 and 2 are one
//   hint_bound_kernel: the k-th best hint of each group, reached by k candidates whatever the input.
//   With hints, a sparse mask and row score bounds (the beam step's selection), all four are one
//   hinted_sparse_select_kernel: a thread block cluster per group bounds, gathers and selects.
//
// Launches 2-4 are programmatic dependent launches (detail::launch_overlapping): each starts while
// the one before it finishes, the filter's first tiles are loaded while the bound is selected, and
// the select's blocks are resident before the streamed filter's last blocks end.
// Expected survivors are about 64 r (some 1,400 for k = 256 over 256 x 8,192). A group whose
// survivors overflow their buffer (an adversarial order hiding the best from the sample) or number
// fewer than k (the sample held more than its share of the best) is detected in step 4, which then
// selects over the group's input directly: slower, still exact.
#pragma once

#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "xgr/core/cuda.cuh"
#include "xgr/core/workspace.hpp"
#include "xgr/topk/host.hpp"  // the reference, so that one include gives both
#include "xgr/topk/keys.hpp"
#include "xgr/topk/policies.hpp"
#include "xgr/topk/sample_layout.hpp"
#include "xgr/topk/topk.hpp"

namespace xgr {
namespace topk::cuda_detail {

// ---- tuning ------------------------------------------------------------------------------------
inline constexpr int bound_threads = 1024;
inline constexpr int small_bound_threads = 256;  // when the kept runs fit (k up to about 512)
inline constexpr int bound_values_per_thread = 4;  // the kept runs of a group, held in registers by the bound kernel
static_assert(bound_threads * bound_values_per_thread >= 2 * 1024 + max_sample_runs / 32,
              "the bound kernel must hold every kept run: warps x max(2, 2k / warps) for k <= max_topk_k");
inline constexpr int filter_threads = 256;
inline constexpr int filter_elements_per_thread = 32;  // one survivor bit each in a 32-bit mask
inline constexpr int filter_tile = filter_threads * filter_elements_per_thread;
inline constexpr int filter_blocks_per_sm = 4;  // resident filter blocks per SM the register budget is held to
inline constexpr int select_threads = 512;
// In-block selection splits the current key range [low, high] into split_bins bins of equal width
// per pass. Splitting the range actually occupied (not fixed digit positions of the key) spreads
// keys of similar scores over many bins, so plain shared-memory atomics do not pile up on a few.
inline constexpr int split_bits = 11;
inline constexpr int split_bins = 1 << split_bits;
inline constexpr std::uint32_t boundary_capacity = 8192;  // survivors of the boundary bin kept in shared memory

// ---- the problem as kernels see it ----------------------------------------------------------
// The last index i in [low, high) with offset_at(i) <= value, or low when there is none: a binary
// search over non-decreasing offsets (group offsets, CSR row offsets). high must exceed low.
template <class Value, class OffsetAt>
__device__ std::uint32_t last_offset_at_or_below(std::uint32_t low, std::uint32_t high, Value value, OffsetAt&& offset_at) {
  while (high - low > 1) {  // invariant: the answer is in [low, high)
    const std::uint32_t middle = (low + high) / 2;
    if (offset_at(middle) <= value) low = middle; else high = middle;
  }
  return low;
}

template <class T>
struct DeviceProblem {
  const T* scores;
  std::size_t row_stride;
  std::uint32_t rows;
  std::uint32_t vocab;
  std::uint32_t k;
  std::uint32_t groups;
  const std::uint32_t* group_offsets;  // null: uniform groups of rows_per_group
  std::uint32_t rows_per_group;
  const float* row_offsets;
  const float* row_bounds;
  MaskKind mask;
  const std::uint32_t* mask_bits;
  std::size_t mask_row_words;
  const std::uint32_t* row_ptr;
  const std::uint32_t* columns;

  __device__ std::uint32_t group_begin(std::uint32_t group) const {
    const std::uint32_t row = group_offsets != nullptr ? group_offsets[group] : group * rows_per_group;
    return row < rows ? row : rows;
  }
  __device__ std::uint32_t group_end(std::uint32_t group) const {
    const std::uint32_t begin = group_begin(group);
    const std::uint32_t end = group_begin(group + 1);
    return end > begin ? end : begin;
  }
  // The group owning `row`, or `groups` when no group does.
  __device__ std::uint32_t group_of_row(std::uint32_t row) const {
    if (group_offsets == nullptr) return row / rows_per_group;
    const std::uint32_t low = last_offset_at_or_below(0, groups, row, [&](std::uint32_t g) { return group_offsets[g]; });
    return (group_offsets[low] <= row && row < group_offsets[low + 1]) ? low : groups;
  }
  __device__ float offset(std::uint32_t row) const { return row_offsets != nullptr ? row_offsets[row] : 0.0f; }
  __device__ bool bit_allows(std::uint32_t row, std::uint32_t column) const {
    return (mask_bits[row * mask_row_words + column / 32] >> (column % 32)) & 1u;
  }
  // Candidate positions of a row: its columns, or its sparse entries.
  __device__ std::uint32_t row_length(std::uint32_t row) const {
    return mask == MaskKind::sparse ? row_ptr[row + 1] - row_ptr[row] : vocab;
  }
  // Key of position `position` of `row` (group starting at `first_row`), or no_candidate.
  __device__ CandidateKey key_at(std::uint32_t row, std::uint32_t position, std::uint32_t first_row) const {
    std::uint32_t column = position;
    if (mask == MaskKind::sparse) {
      column = columns[row_ptr[row] + position];
      if (column >= vocab) return no_candidate;  // malformed input never reads out of bounds
    } else if (mask == MaskKind::bitset && !bit_allows(row, column)) {
      return no_candidate;
    }
    const float score = to_float(scores[row * row_stride + column]) + offset(row);
    return candidate_key(score, (row - first_row) * vocab + column);
  }
  __device__ static CandidateKey candidate_key(float score, std::uint32_t flat_index) {
    return is_selectable(score) ? make_key(score, flat_index) : no_candidate;
  }
};

// ---- block-wide selection ------------------------------------------------------------------------
struct BinChoice {
  std::uint32_t bin;
  std::uint32_t above;    // keys in bins above the chosen one
  std::uint32_t in_bin;   // keys in the chosen bin
  std::uint32_t too_few;  // fewer than `rank` keys in all bins
};

// Sum of `value` over lanes 0..lane of the warp (all lanes must call it).
__device__ inline std::uint32_t warp_inclusive_sum(std::uint32_t value) {
  const unsigned lane = threadIdx.x % 32;
#pragma unroll
  for (int delta = 1; delta < 32; delta *= 2) {
    const std::uint32_t other = __shfl_up_sync(0xffffffffu, value, delta);
    if (lane >= static_cast<unsigned>(delta)) value += other;
  }
  return value;
}

// Histograms are stored with one padding word after every 32 bins. It served a scan in which each
// lane read its own run of consecutive bins; find_rank_bin now reads 32 adjacent bins of one
// aligned stretch per step, which no padding affects. Dropping it is a change to measure.
__device__ constexpr std::uint32_t histogram_slot(std::uint32_t bin) { return bin + (bin >> 5); }
inline constexpr int histogram_words = split_bins + split_bins / 32;

// The block finds the bin holding the rank-th largest key (rank >= 1) of a (padded) histogram. Each
// warp totals a stretch of consecutive bins (warp 0 the highest), reading 32 adjacent bins per step
// so that no two lanes share a bank; every warp scans the warp totals, and the one warp whose stretch
// crosses `rank` walks it 32 bins at a time. One warp scanning every bin alone kept the rest of the
// block waiting at the next barrier for about a third of the select kernel's time. All threads must
// call it; blockDim.x must be a multiple of 32 with Bins / warps a multiple of 32. It synchronises
// once; the caller synchronises before reading `choice`.
template <int Bins>
__device__ void find_rank_bin(const std::uint32_t* histogram, std::uint32_t rank, std::uint32_t* warp_totals, BinChoice& choice) {
  static_assert(Bins % 32 == 0);
  const unsigned lane = threadIdx.x % 32;
  const unsigned warp = threadIdx.x / 32;
  const unsigned warps = blockDim.x / 32;
  const unsigned bins_per_warp = Bins / warps;
  const int warp_top_bin = Bins - 1 - static_cast<int>(warp * bins_per_warp);
  const auto count_at = [&](unsigned offset) { return histogram[histogram_slot(static_cast<std::uint32_t>(warp_top_bin - static_cast<int>(offset)))]; };
  std::uint32_t lane_sum = 0;
  for (unsigned offset = lane; offset < bins_per_warp; offset += 32) lane_sum += count_at(offset);
  lane_sum = __reduce_add_sync(0xffffffffu, lane_sum);
  if (lane == 0) warp_totals[warp] = lane_sum;
  __syncthreads();
  const std::uint32_t inclusive = warp_inclusive_sum(lane < warps ? warp_totals[lane] : 0u);
  const std::uint32_t total = __shfl_sync(0xffffffffu, inclusive, 31);
  const std::uint32_t warp_inclusive = __shfl_sync(0xffffffffu, inclusive, static_cast<int>(warp));
  std::uint32_t above = warp_inclusive - warp_totals[warp];
  if (threadIdx.x == 0) choice.too_few = total < rank ? 1u : 0u;
  if (!(above < rank && rank <= warp_inclusive)) return;  // warp-uniform: only the crossing warp goes on
  for (unsigned base = 0; base < bins_per_warp; base += 32) {
    const std::uint32_t count = count_at(base + lane);
    const std::uint32_t running = above + warp_inclusive_sum(count);
    const unsigned reached = __ballot_sync(0xffffffffu, running >= rank);
    if (reached != 0) {
      if (lane == static_cast<unsigned>(__ffs(static_cast<int>(reached)) - 1)) {
        choice.bin = static_cast<std::uint32_t>(warp_top_bin - static_cast<int>(base + lane));
        choice.above = running - count;
        choice.in_bin = count;
      }
      return;
    }
    above = __shfl_sync(0xffffffffu, running, 31);
  }
}

struct SelectShared {
  std::uint32_t histogram[histogram_words];
  std::uint32_t warp_totals[32];
  BinChoice choice;
  unsigned long long low;
  unsigned long long high;
  std::uint32_t count;
};

// Block-wide minimum, maximum and count of the enumerated keys (no_candidate ignored).
template <class ForEachKey>
__device__ void key_range(ForEachKey&& for_each_key, SelectShared& shared) {
  if (threadIdx.x == 0) {
    shared.low = ~0ull;
    shared.high = 0;
    shared.count = 0;
  }
  __syncthreads();
  CandidateKey low = ~CandidateKey{0};
  CandidateKey high = 0;
  std::uint32_t count = 0;
  for_each_key([&](CandidateKey key) {
    if (key == no_candidate) return;
    low = key < low ? key : low;
    high = key > high ? key : high;
    ++count;
  });
#pragma unroll
  for (int delta = 16; delta > 0; delta /= 2) {
    const CandidateKey other_low = __shfl_xor_sync(0xffffffffu, low, delta);
    const CandidateKey other_high = __shfl_xor_sync(0xffffffffu, high, delta);
    low = other_low < low ? other_low : low;
    high = other_high > high ? other_high : high;
    count += __shfl_xor_sync(0xffffffffu, count, delta);
  }
  if (threadIdx.x % 32 == 0 && count != 0) {
    atomicMin(&shared.low, low);
    atomicMax(&shared.high, high);
    atomicAdd(&shared.count, count);
  }
  __syncthreads();
}

// split_bins equal-width bins over [low, high]; a key's bin is its offset from low, shifted.
struct SplitBins {
  CandidateKey low;
  int shift;
  __device__ SplitBins(CandidateKey low_key, CandidateKey high_key) : low(low_key) {
    const CandidateKey span = high_key - low_key;
    const int significant = span == 0 ? 0 : 64 - __clzll(static_cast<long long>(span));
    shift = significant > split_bits ? significant - split_bits : 0;
  }
  __device__ std::uint32_t operator()(CandidateKey key) const { return static_cast<std::uint32_t>((key - low) >> shift); }
};

// Returns a threshold T with at least k of the enumerated keys >= T, or 1 (every key) when there
// are fewer than k. With slack = 0 exactly k keys are >= T (keys are distinct); with slack > 0 the
// passes stop once at most k + slack keys are >= T: a cheaper, still valid lower bound of the k-th.
// Every key must lie in [low, high] (pass range_known = false to measure them first).
// `for_each_key(f)` calls f(key) on this thread's share of the keys, the same share on every call.
template <class ForEachKey>
__device__ CandidateKey select_threshold(ForEachKey&& for_each_key, std::uint32_t k, SelectShared& shared, std::uint32_t slack,
                                         bool range_known, CandidateKey low, CandidateKey high) {
  if (!range_known) {
    key_range(for_each_key, shared);
    const std::uint32_t count = shared.count;
    low = shared.low;
    high = shared.high;
    __syncthreads();
    if (count < k) return 1;  // fewer than k candidates: take them all
    if (count <= k + slack) return low;
  }
  std::uint32_t remaining = k;
  for (;;) {
    const SplitBins bins(low, high);
    const int shift = bins.shift;
    for (int word = static_cast<int>(threadIdx.x); word < histogram_words; word += static_cast<int>(blockDim.x)) shared.histogram[word] = 0;
    __syncthreads();
    for_each_key([&](CandidateKey key) {
      if (key != no_candidate && key >= low && key <= high) atomicAdd(&shared.histogram[histogram_slot(bins(key))], 1u);
    });
    __syncthreads();
    find_rank_bin<split_bins>(shared.histogram, remaining, shared.warp_totals, shared.choice);
    __syncthreads();
    const BinChoice choice = shared.choice;
    __syncthreads();  // everyone has read `shared` before the next pass reuses it
    if (choice.too_few != 0) return 1;  // only when the caller's count was wrong; take everything
    low += static_cast<CandidateKey>(choice.bin) << shift;
    remaining -= choice.above;
    // Keys >= low: those above this range (already taken), `above` in it, and the whole bin.
    if (choice.in_bin <= remaining + slack || shift == 0) return low;
    const CandidateKey bin_high = low + ((CandidateKey{1} << shift) - 1);
    high = bin_high < high ? bin_high : high;
  }
}

// A key array walked by the whole block.
struct KeyArray {
  const CandidateKey* keys;
  std::uint32_t count;
  // Loads a batch of keys per thread before visiting any: one block walks the whole array, so the
  // pass is bound by how many loads are in flight, not by one L2 latency per key.
  static constexpr int batch = 8;
  template <class Visit>
  __device__ void operator()(Visit&& visit) const {
    for (std::uint32_t base = threadIdx.x; base < count; base += batch * blockDim.x) {
      CandidateKey loaded[batch];
#pragma unroll
      for (int j = 0; j < batch; ++j) {
        const std::uint32_t i = base + j * blockDim.x;
        loaded[j] = i < count ? keys[i] : no_candidate;
      }
#pragma unroll
      for (int j = 0; j < batch; ++j) {
        if (base + j * blockDim.x < count) visit(loaded[j]);
      }
    }
  }
};

// A key array in shared memory, walked by the whole block.
struct SharedKeyArray {
  const CandidateKey* keys;
  std::uint32_t count;
  template <class Visit>
  __device__ void operator()(Visit&& visit) const {
    for (std::uint32_t i = threadIdx.x; i < count; i += blockDim.x) visit(keys[i]);
  }
};

// ---- kernel 1: a sample of the group -----------------------------------------------------------
// Positions of a group: rows x vocab (dense, bitset) or the group's sparse entries, in row order.
// Yields the (row, column) of a position; row = end_row for positions past the end, and for sparse
// entries whose column is out of range (malformed input is never read out of bounds).
template <class T>
__device__ void locate_group_position(const DeviceProblem<T>& problem, std::uint32_t first_row, std::uint32_t end_row,
                                      std::uint64_t position, std::uint32_t& row, std::uint32_t& column) {
  row = end_row;
  column = 0;
  if (problem.mask != MaskKind::sparse) {
    if (position >= static_cast<std::uint64_t>(end_row - first_row) * problem.vocab) return;
    const auto flat = static_cast<std::uint32_t>(position);  // < 2^32: flat indices are 32-bit (validated)
    row = first_row + flat / problem.vocab;
    column = flat % problem.vocab;
    return;
  }
  if (position >= problem.row_ptr[end_row] - problem.row_ptr[first_row]) return;
  const std::uint64_t entry = problem.row_ptr[first_row] + position;
  // The row r with row_ptr[r] <= entry < row_ptr[r + 1].
  const std::uint32_t low = last_offset_at_or_below(first_row, end_row, entry, [&](std::uint32_t r) { return problem.row_ptr[r]; });
  const std::uint32_t sparse_column = problem.columns[entry];
  if (sparse_column < problem.vocab) {
    row = low;
    column = sparse_column;
  }
}

template <class T>
__device__ std::uint64_t group_positions(const DeviceProblem<T>& problem, std::uint32_t first_row, std::uint32_t end_row) {
  if (problem.mask == MaskKind::sparse) return problem.row_ptr[end_row] - problem.row_ptr[first_row];
  return static_cast<std::uint64_t>(end_row - first_row) * problem.vocab;
}

// The ordered score of the best selectable candidate of the run starting at `start` (0: none).
// group_row_ptr[r - first_row] == problem.row_ptr[r] for the group's rows (sparse masks only): a
// copy in shared memory where the group is small enough, so the row searches below do not wait on
// memory probe after probe.
template <class T>
__device__ std::uint32_t run_best(const DeviceProblem<T>& problem, std::uint32_t first_row, std::uint32_t end_row, std::uint64_t start,
                                  const std::uint32_t* group_row_ptr) {
  std::uint32_t best = 0;
  const auto consider = [&](float score) {
    const std::uint32_t ordered = is_selectable(score) ? ordered_bits(score) : 0u;
    best = ordered > best ? ordered : best;
  };
  std::uint32_t run_row = end_row;
  std::uint32_t run_column = 0;
  if (problem.mask != MaskKind::sparse) locate_group_position(problem, first_row, end_row, start, run_row, run_column);
  T raw[sample_run];
  if (run_row < end_row && run_column + sample_run <= problem.vocab) {
    // The usual case: the run lies inside one row; aligned runs are read as 16-byte vectors.
    const T* source = problem.scores + static_cast<std::size_t>(run_row) * problem.row_stride + run_column;
    constexpr int vector = 16 / sizeof(T);
    if (reinterpret_cast<std::uintptr_t>(source) % 16 == 0) {
      ::xgr::detail::VectorOf<vector, T> loaded[sample_run / vector];
#pragma unroll
      for (int v = 0; v < sample_run / vector; ++v) loaded[v] = reinterpret_cast<const ::xgr::detail::VectorOf<vector, T>*>(source)[v];
#pragma unroll
      for (int i = 0; i < sample_run; ++i) raw[i] = loaded[i / vector].element[i % vector];
    } else {
#pragma unroll
      for (int i = 0; i < sample_run; ++i) raw[i] = source[i];
    }
    const float offset = problem.offset(run_row);
#pragma unroll
    for (int i = 0; i < sample_run; ++i) {
      if (problem.mask != MaskKind::bitset || problem.bit_allows(run_row, run_column + i)) consider(to_float(raw[i]) + offset);
    }
  } else {
    // Runs crossing rows (vocab not a multiple of sample_run) and sparse entries: position by position.
    std::uint32_t sample_row[sample_run];  // end_row: no candidate at this position
    std::uint32_t sample_column[sample_run];
    if (problem.mask != MaskKind::sparse) {
      std::uint32_t row = run_row;
      std::uint32_t column = run_column;
#pragma unroll
      for (int i = 0; i < sample_run; ++i) {
        sample_row[i] = row < end_row ? row : end_row;
        sample_column[i] = column;
        if (++column == problem.vocab) {
          column = 0;
          ++row;
        }
      }
    } else {
      // One search for the row of the run's first entry, then walk the row pointers.
      const std::uint64_t first_entry = group_row_ptr[0] + start;
      std::uint32_t row =
          last_offset_at_or_below(first_row, end_row, first_entry, [&](std::uint32_t r) { return group_row_ptr[r - first_row]; });
#pragma unroll
      for (int i = 0; i < sample_run; ++i) {
        const std::uint64_t entry = first_entry + i;  // inside the group: runs end before its last entry
        while (row + 1 < end_row && group_row_ptr[row + 1 - first_row] <= entry) ++row;
        const std::uint32_t column = problem.columns[entry];
        sample_row[i] = column < problem.vocab ? row : end_row;  // malformed input is never read out of bounds
        sample_column[i] = column;
      }
    }
#pragma unroll
    for (int i = 0; i < sample_run; ++i) {
      raw[i] = sample_row[i] < end_row ? problem.scores[static_cast<std::size_t>(sample_row[i]) * problem.row_stride + sample_column[i]]
                                       : T{};
    }
#pragma unroll
    for (int i = 0; i < sample_run; ++i) {
      if (sample_row[i] < end_row && (problem.mask != MaskKind::bitset || problem.bit_allows(sample_row[i], sample_column[i]))) {
        consider(to_float(raw[i]) + problem.offset(sample_row[i]));
      }
    }
  }
  return best;
}

// Sorts one value per lane into descending order across the warp (lane 0 the largest): a bitonic
// network over shuffles, no shared memory.
template <class Value>
__device__ Value warp_sort_descending(Value value) {
  const unsigned lane = threadIdx.x % 32;
#pragma unroll
  for (unsigned size = 2; size <= 32; size *= 2) {
#pragma unroll
    for (unsigned stride = size / 2; stride > 0; stride /= 2) {
      const Value other = __shfl_xor_sync(0xffffffffu, value, stride);
      const bool descending = (lane & size) == 0;  // runs of `size` alternate; the last one is whole
      const bool keeps_larger = ((lane & stride) == 0) == descending;
      value = keeps_larger ? (other > value ? other : value) : (other < value ? other : value);
    }
  }
  return value;
}

// Groups of up to this many rows have their sparse row offsets copied to shared memory (4 KB) by
// each sample block: one coalesced read instead of a chain of dependent probes per run.
inline constexpr std::uint32_t sample_staged_rows = 1024;

// Block `block` of a group's blocks_per_group sample blocks: one run per thread (its loads issued
// before any is used), sorted across the warp (lane 0 the warp's best). Runs are dealt to the
// group's warps round-robin (run = lane x warps + warp), so every warp samples the whole group
// evenly even when the best candidates crowd into a few rows (the beams of a high running score),
// and every warp has runs even when the group has fewer runs than threads. `staged_row_ptr` is the
// block's shared memory for the sparse row offsets. Every thread of the block must call it.
template <class T>
__device__ std::uint32_t sample_warp_sorted(const DeviceProblem<T>& problem, std::uint32_t group, std::uint32_t block,
                                            std::uint32_t blocks_per_group, std::uint32_t (&staged_row_ptr)[sample_staged_rows + 1]) {
  constexpr std::uint32_t warps = sample_threads / 32;
  const std::uint32_t warp_in_group = block * warps + threadIdx.x / 32;
  const std::uint32_t run = threadIdx.x % 32 * (blocks_per_group * warps) + warp_in_group;
  const std::uint32_t first_row = problem.group_begin(group);
  const std::uint32_t end_row = problem.group_end(group);
  const std::uint64_t positions = group_positions(problem, first_row, end_row);
  const std::uint64_t runs = sampled_runs(positions, std::uint64_t{blocks_per_group} * sample_threads, problem.k);
  const std::uint32_t* group_row_ptr = problem.mask == MaskKind::sparse ? problem.row_ptr + first_row : nullptr;
  if (group_row_ptr != nullptr && end_row - first_row <= sample_staged_rows) {  // uniform per block
    for (std::uint32_t r = threadIdx.x; r <= end_row - first_row; r += sample_threads) staged_row_ptr[r] = group_row_ptr[r];
    __syncthreads();
    group_row_ptr = staged_row_ptr;
  }
  const std::uint32_t best =
      run < runs ? run_best(problem, first_row, end_row, sample_run_start(run, positions, runs), group_row_ptr) : 0u;
  return warp_sort_descending(best);
}

// Many blocks per group (sample_warp_sorted). Each warp passes on its `kept_per_warp` best runs, so
// that bound_kernel selects among about 2k values, not among every run.
template <class T>
__global__ void __launch_bounds__(sample_threads) sample_kernel(DeviceProblem<T> problem, std::uint32_t blocks_per_group,
                                                                std::uint32_t kept_per_warp, std::uint32_t* sampled) {
  ::xgr::detail::allow_dependent_launch();  // the bound blocks may become resident and wait for the sample
  constexpr std::uint32_t warps = sample_threads / 32;
  __shared__ std::uint32_t staged_row_ptr[sample_staged_rows + 1];
  const std::uint32_t group = blockIdx.x / blocks_per_group;
  const std::uint32_t block = blockIdx.x % blocks_per_group;
  const std::uint32_t sorted = sample_warp_sorted(problem, group, block, blocks_per_group, staged_row_ptr);
  const std::uint32_t lane = threadIdx.x % 32;
  if (lane < kept_per_warp) {
    sampled[(static_cast<std::size_t>(group) * blocks_per_group * warps + block * warps + threadIdx.x / 32) * kept_per_warp + lane] = sorted;
  }
}

// ---- kernel 1b: the bound ------------------------------------------------------------------------
// A value v of the block's nonzero 32-bit values with at least `rank` of them >= v and at most
// rank + slack (v is the rank-th largest when slack is 0), or 0 when fewer than `rank` are nonzero.
// A radix select, eight bits per pass from the top: each pass histograms the next digit of the
// values that share the digits chosen so far, and one warp finds the digit holding the rank.
// The passes stop once the chosen digit's values all fit within the slack, so close values (sample
// bests of one group share their top bits) take three or four passes, each two barriers long.
template <int Threads, int PerThread>
__device__ std::uint32_t block_select_value(const std::uint32_t (&values)[PerThread], std::uint32_t rank, std::uint32_t slack) {
  // Bin b sits at b + b / 8: the scanning warp's lanes each read 8 adjacent bins, in distinct banks.
  constexpr int slots = 256 + 256 / 8;
  __shared__ std::uint32_t histograms[2][slots];  // passes alternate, so one barrier per pass clears the next
  __shared__ std::uint32_t chosen_digit;
  __shared__ std::uint32_t chosen_above;
  __shared__ std::uint32_t chosen_in_bin;
  __shared__ std::uint32_t nonzero;
  const unsigned lane = threadIdx.x % 32;
  for (int i = static_cast<int>(threadIdx.x); i < slots; i += Threads) histograms[0][i] = 0;
  __syncthreads();
  std::uint32_t prefix = 0;
  std::uint32_t remaining = rank;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    std::uint32_t* counts = histograms[pass & 1];
#pragma unroll
    for (int j = 0; j < PerThread; ++j) {
      const std::uint32_t value = values[j];
      if (value != 0 && (pass == 0 || value >> (shift + 8) == prefix >> (shift + 8))) {
        const std::uint32_t bin = (value >> shift) & 255u;
        atomicAdd(&counts[bin + bin / 8], 1u);
      }
    }
    for (int i = static_cast<int>(threadIdx.x); i < slots; i += Threads) histograms[(pass + 1) & 1][i] = 0;
    __syncthreads();
    if (threadIdx.x < 32) {
      const std::uint32_t base = 248 - 8 * lane;  // lane 0 holds the highest bins
      std::uint32_t bin_counts[8];
      std::uint32_t lane_sum = 0;
#pragma unroll
      for (std::uint32_t j = 0; j < 8; ++j) {
        bin_counts[j] = counts[base + j + (base + j) / 8];
        lane_sum += bin_counts[j];
      }
      const std::uint32_t inclusive = warp_inclusive_sum(lane_sum);
      if (lane == 31) nonzero = inclusive;
      std::uint32_t running = inclusive - lane_sum;
      if (running < remaining && remaining <= inclusive) {  // the one lane whose bins hold the rank
#pragma unroll
        for (int j = 7; j >= 0; --j) {
          if (running + bin_counts[j] >= remaining) {
            chosen_digit = base + static_cast<std::uint32_t>(j);
            chosen_above = running;
            chosen_in_bin = bin_counts[j];
            break;
          }
          running += bin_counts[j];
        }
      }
    }
    __syncthreads();
    if (pass == 0 && nonzero < rank) return 0;
    prefix |= chosen_digit << shift;
    remaining -= chosen_above;
    // Values >= prefix: those above the chosen digit (rank - remaining) and the digit's own.
    if (chosen_in_bin <= remaining + slack) return prefix;
  }
  return prefix;
}

// The bound of a group from the `count` runs its sample kept (`kept`, in device or shared memory): a
// value at least `rank` of them reach (block_select_value, stopping within rank / 8), written as the
// smallest key of that score, or 1 (every candidate) when fewer than `rank` runs hold a selectable
// candidate. Not fewer than k: under a sparse mask few runs hold one (a sixth of them at 1 %), and
// groups whose count fell short of k by chance let every selectable candidate through (some 10,000
// of 128 x 8,192 at 1 %), which cost the select a pass over device memory. The group's survivor
// count and maximum are reset for the filter. Block-wide: Threads threads, count <= Threads x
// PerThread.
template <int Threads, int PerThread>
__device__ void write_group_bound(const std::uint32_t* kept, std::uint32_t count, std::uint32_t rank, std::uint32_t group, CandidateKey* bounds,
                                  CandidateKey* survivor_max, std::uint32_t* survivor_counts) {
  std::uint32_t values[PerThread];
#pragma unroll
  for (int j = 0; j < PerThread; ++j) {
    const std::uint32_t i = j * Threads + threadIdx.x;
    values[j] = i < count ? kept[i] : 0u;
  }
  const std::uint32_t score = block_select_value<Threads>(values, rank, rank / 8);
  if (threadIdx.x == 0) {
    bounds[group] = score == 0 ? CandidateKey{1} : static_cast<CandidateKey>(score) << 32;
    survivor_max[group] = 0;
    survivor_counts[group] = 0;
  }
}

// One block per group selects, from the runs the sample blocks kept, a score s reached by at least
// bound_rank(...) of them (k when the whole group was sampled; see bound_rank). The runs are
// disjoint, so that many distinct candidates reach s, and (ordered(s) << 32) is the smallest key of
// score s. The selection stops once at most rank/8 more values than needed reach s, so s sits at or
// just below the rank-th best sampled run. With fewer than `rank` kept runs holding a selectable
// candidate the bound admits everything (1). A bound above 1 that fewer than k candidates reach
// (the sample held more than its share of the best, or the group has fewer than k selectable
// candidates, r of which the sample caught: as unlikely) sends the select to the group's input.
template <int Threads, class T>
__global__ void __launch_bounds__(Threads) bound_kernel(DeviceProblem<T> problem, std::uint32_t blocks_per_group,
                                                        const std::uint32_t* sampled, std::uint32_t sampled_per_group,
                                                        CandidateKey* bounds, CandidateKey* survivor_max, std::uint32_t* survivor_counts) {
  // The filter blocks may become resident now: they load their tiles while the bound is selected.
  ::xgr::detail::allow_dependent_launch();
  const std::uint32_t group = blockIdx.x;
  const std::uint32_t k = problem.k;
  // The group's shape is input, written before the sample kernel started: known before the wait.
  const std::uint64_t positions = group_positions(problem, problem.group_begin(group), problem.group_end(group));
  const std::uint64_t runs = sampled_runs(positions, std::uint64_t{blocks_per_group} * sample_threads, k);
  const std::uint32_t rank = bound_rank(k, runs, positions);
  ::xgr::detail::wait_for_prior_grid();
  write_group_bound<Threads, bound_values_per_thread>(sampled + static_cast<std::size_t>(group) * sampled_per_group, sampled_per_group,
                                                      rank, group, bounds, survivor_max, survivor_counts);
}

// Per-group hand-offs between the three kernels of the fused sample (sample_bound_kernel), the
// streamed filter and the select, in place of each kernel's wait for the whole grid before it.
// The grid-wide wait returned about 2 us after the last bound was written, while the filter's
// first rings sat full, and the select waited for the filter's last block whatever its group.
// With flags a filter block takes up a group's tiles once that group's bound is out, and a group's
// select starts once that group's tiles are filtered. Both counters are cleared by the sample's
// first block of the group before any block of the call can read them: the filter starts only
// after every sample block has called allow_dependent_launch(), which each calls after the clear.
struct GroupFlags {
  std::uint32_t* bound_ready = nullptr;     // per group: 1 once its bound, survivor count and maximum are written
  std::uint32_t* tiles_filtered = nullptr;  // per group: its tiles that filter blocks are done with, survivors written
  std::uint32_t tiles_per_row = 0;
  [[nodiscard]] __host__ __device__ bool on() const { return bound_ready != nullptr; }
};

// A filter block's last act: for each group its tiles [first_tile, end_tile) touch, publishes how
// many of them it filtered. Thread 0, after a block barrier that follows every survivor write.
template <class T>
__device__ void publish_filtered_tiles(const DeviceProblem<T>& problem, const GroupFlags& flags, std::uint32_t first_tile,
                                       std::uint32_t end_tile) {
  if (first_tile >= end_tile) return;
  const std::uint32_t first_row = first_tile / flags.tiles_per_row;
  // The group of the first row; rows of no group lie before the first group or after the last.
  std::uint32_t group = problem.group_of_row(first_row);
  if (group == problem.groups && first_row < problem.group_begin(0)) group = 0;
  for (; group < problem.groups; ++group) {
    const std::uint32_t group_first = problem.group_begin(group) * flags.tiles_per_row;
    if (group_first >= end_tile) break;
    const std::uint32_t group_end = problem.group_end(group) * flags.tiles_per_row;
    const std::uint32_t begin = group_first > first_tile ? group_first : first_tile;
    const std::uint32_t end = group_end < end_tile ? group_end : end_tile;
    if (end > begin) ::xgr::detail::publish_count(&flags.tiles_filtered[group], end - begin);
  }
}

// Sample and bound in one launch, for dense and bitset groups sampled by at most
// max_sample_cluster_blocks blocks (compute capability 9.0+): a thread block cluster per group,
// whose blocks sample as sample_kernel does and store the runs they keep into the first block's
// shared memory, which then selects the bound as bound_kernel does. The kept runs never travel
// through device memory, where the bound's reads of them queued behind the streamed filter's first
// tiles, and a launch and its wait are gone: 0-5 % faster on those rows (H100, H200). The other
// blocks exit at the cluster's barrier, which gives their multiprocessors to the filter.
inline constexpr std::uint32_t max_sample_cluster_blocks = 8;  // the portable cluster size
// A block's warps keep at most 32 runs each, sample_threads in all: the first block's threads hold
// one block's worth each.
inline constexpr int sample_cluster_values_per_thread = static_cast<int>(max_sample_cluster_blocks);

template <class T>
__global__ void __launch_bounds__(sample_threads) sample_bound_kernel(DeviceProblem<T> problem, std::uint32_t blocks_per_group,
                                                                      std::uint32_t kept_per_warp, CandidateKey* bounds,
                                                                      CandidateKey* survivor_max, std::uint32_t* survivor_counts,
                                                                      GroupFlags flags) {
  if (flags.on()) {
    if (blockIdx.x % blocks_per_group == 0 && threadIdx.x == 0) {
      flags.bound_ready[blockIdx.x / blocks_per_group] = 0;
      flags.tiles_filtered[blockIdx.x / blocks_per_group] = 0;
      __threadfence();  // cleared in device memory before this block lets the filter in
    }
    __syncthreads();
  }
  ::xgr::detail::allow_dependent_launch();  // the filter blocks may become resident and request their first tiles
  // The first block's shared memory takes the others' runs only once it has started: arrive now,
  // wait after the sample.
  if (blocks_per_group > 1) ::xgr::detail::cluster_arrive_relaxed();
  constexpr std::uint32_t warps = sample_threads / 32;
  constexpr int kept_capacity = sample_threads * sample_cluster_values_per_thread;
  static_assert(kept_capacity >= static_cast<int>(max_sample_cluster_blocks * warps * 32));
  __shared__ std::uint32_t staged_row_ptr[sample_staged_rows + 1];
  __shared__ std::uint32_t kept[kept_capacity];  // the first block's: every block's kept runs
  const std::uint32_t group = blockIdx.x / blocks_per_group;
  const std::uint32_t block = blockIdx.x % blocks_per_group;  // the block's rank in its cluster
  const std::uint32_t sorted = sample_warp_sorted(problem, group, block, blocks_per_group, staged_row_ptr);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const std::uint32_t lane = threadIdx.x % 32;
  const std::uint32_t slot = (block * warps + threadIdx.x / 32) * kept_per_warp + lane;
  if (blocks_per_group == 1) {
    if (lane < kept_per_warp) kept[slot] = sorted;
    __syncthreads();
  } else {
    ::xgr::detail::cluster_wait();  // the first block has started
    if (lane < kept_per_warp) ::xgr::detail::cluster_store(::xgr::detail::cluster_shared_address(&kept[slot], 0), sorted);
    ::xgr::detail::cluster_sync();  // every block's runs are in the first block
  }
#endif
  if (block != 0) return;
  const std::uint32_t k = problem.k;
  const std::uint64_t positions = group_positions(problem, problem.group_begin(group), problem.group_end(group));
  const std::uint64_t runs = sampled_runs(positions, std::uint64_t{blocks_per_group} * sample_threads, k);
  const std::uint32_t rank = bound_rank(k, runs, positions);
  write_group_bound<sample_threads, sample_cluster_values_per_thread>(kept, blocks_per_group * warps * kept_per_warp, rank, group, bounds,
                                                                     survivor_max, survivor_counts);
  if (flags.on() && threadIdx.x == 0) ::xgr::detail::publish_count(&flags.bound_ready[group], 1);  // the thread that wrote them
}

// Score hints as the kernels see them (TopKProblem::row_score_hints).
struct ScoreHints {
  const float* data = nullptr;  // rows x per_row, row stride `stride`; null: none
  std::size_t stride = 0;
  std::uint32_t per_row = 0;
  std::uint32_t max_per_group = 0;  // max_rows_per_group x per_row: sizes the bound block
};

// Instead of the sample and bound kernels, when the caller gives score hints: one block per group
// selects the k-th best of the group's hints. Each is the score of a different candidate, so at
// least k candidates reach it whatever the input: the bound kernel's promise (a bound above 1 means
// k selectable candidates), which the select checks all the same. Fewer than k selectable hints
// give no bound (1). The first launch of the call.
// The k-th best score hint of the group of rows [first_row, end_row) as a candidate key: the
// smallest key of that score, or 1 (every candidate) when fewer than k hints are selectable.
// Block-wide (Threads threads, every one must call it); the group's hints must number at most
// Threads x PerThread.
template <int Threads, int PerThread = bound_values_per_thread>
__device__ CandidateKey hinted_bound(const ScoreHints& hints, std::uint32_t first_row, std::uint32_t end_row, std::uint32_t k) {
  const std::uint32_t count = (end_row - first_row) * hints.per_row;  // <= max_group_score_hints (validated)
  std::uint32_t values[PerThread];
#pragma unroll
  for (int j = 0; j < PerThread; ++j) {
    const std::uint32_t i = j * Threads + threadIdx.x;
    const float hint =
        i < count ? hints.data[(first_row + i / hints.per_row) * hints.stride + i % hints.per_row] : -__builtin_huge_valf();
    values[j] = is_selectable(hint) ? ordered_bits(hint) : 0u;
  }
  const std::uint32_t score = block_select_value<Threads>(values, k, 0);
  return score == 0 ? CandidateKey{1} : static_cast<CandidateKey>(score) << 32;
}

template <int Threads, class T>
__global__ void __launch_bounds__(Threads) hint_bound_kernel(DeviceProblem<T> problem, ScoreHints hints, CandidateKey* bounds,
                                                             CandidateKey* survivor_max, std::uint32_t* survivor_counts) {
  // The filter blocks may become resident now: the streamed filter requests its first tiles
  // before its wait.
  ::xgr::detail::allow_dependent_launch();
  const std::uint32_t group = blockIdx.x;
  const CandidateKey bound = hinted_bound<Threads>(hints, problem.group_begin(group), problem.group_end(group), problem.k);
  if (threadIdx.x == 0) {
    bounds[group] = bound;
    survivor_max[group] = 0;
    survivor_counts[group] = 0;
  }
}

// ---- kernel 2: the filter pass -----------------------------------------------------------------

// Reserves `count` consecutive slots for this thread, with one reservation per warp:
// reserve(warp_total) returns the first of warp_total slots (an atomic add on some counter, called
// by one lane and only for a nonzero total). Returns this thread's first slot; the warp's total
// comes back in `warp_total`. All lanes must call it.
template <class Reserve>
__device__ std::uint32_t warp_reserve_with(Reserve&& reserve, std::uint32_t count, std::uint32_t& warp_total) {
  const std::uint32_t inclusive = warp_inclusive_sum(count);
  warp_total = __shfl_sync(0xffffffffu, inclusive, 31);
  std::uint32_t base = 0;
  if (threadIdx.x % 32 == 31 && warp_total != 0) base = reserve(warp_total);
  base = __shfl_sync(0xffffffffu, base, 31);
  return base + inclusive - count;
}

// The same at `counter` (global or shared memory).
__device__ inline std::uint32_t warp_reserve(std::uint32_t* counter, std::uint32_t count, std::uint32_t& warp_total) {
  return warp_reserve_with([counter](std::uint32_t total) { return atomicAdd(counter, total); }, count, warp_total);
}

__device__ inline std::uint32_t warp_reserve(std::uint32_t* counter, std::uint32_t count) {
  std::uint32_t warp_total = 0;
  return warp_reserve(counter, count, warp_total);
}

// Whether a row whose scores are all at most `best` has no candidate at or above `bound`.
__device__ inline bool score_bound_below(float best, CandidateKey bound) {
  if (best != best) return false;  // NaN bound: no information
  const CandidateKey best_key = (static_cast<CandidateKey>(ordered_bits(best)) << 32) | 0xffffffffu;
  return best_key < bound;
}

template <class T>
__device__ bool row_cannot_reach(const DeviceProblem<T>& problem, std::uint32_t row, CandidateKey bound) {
  return problem.row_bounds != nullptr && score_bound_below(problem.row_bounds[row], bound);
}

// The largest key of the warp, in every lane (__reduce_max_sync takes 32-bit values only).
__device__ inline CandidateKey warp_max(CandidateKey key) {
#pragma unroll
  for (int delta = 16; delta > 0; delta /= 2) {
    const CandidateKey other = __shfl_xor_sync(0xffffffffu, key, delta);
    key = other > key ? other : key;
  }
  return key;
}

// The largest survivor key of the warp, folded into the group's maximum with one atomic per warp.
__device__ inline void warp_max_into(CandidateKey* group_max, CandidateKey key) {
  key = warp_max(key);
  if (threadIdx.x % 32 == 0 && key != no_candidate) atomicMax(reinterpret_cast<unsigned long long*>(group_max), key);
}

struct BlockReserve {
  std::uint32_t count;
  std::uint32_t base;
  unsigned long long best;
};

// Appends the block's survivors with one global atomic per block (not per warp: every filter block
// of a group appends to the same counter) and folds their largest key into the group's maximum.
// Every thread of the block must call it; `best_key()` is called only by threads with survivors.
template <class BestKey>
__device__ std::uint32_t block_reserve(std::uint32_t* counter, CandidateKey* group_max, std::uint32_t count, BestKey&& best_key,
                                       BlockReserve& shared) {
  const unsigned lane = threadIdx.x % 32;
  std::uint32_t warp_total = 0;
  const std::uint32_t place = warp_reserve(&shared.count, count, warp_total);  // within the block's survivors
  if (warp_total != 0) {
    const CandidateKey best = warp_max(count != 0 ? best_key() : no_candidate);
    if (lane == 0) atomicMax(&shared.best, best);
  }
  __syncthreads();
  if (threadIdx.x == 0 && shared.count != 0) {
    shared.base = atomicAdd(counter, shared.count);
    atomicMax(reinterpret_cast<unsigned long long*>(group_max), shared.best);
  }
  __syncthreads();
  return shared.base + place;
}

// Dense and bitset masks. A tile is filter_tile columns of one row, filtered by one block.
struct FilterTile {
  std::uint32_t row;
  std::uint32_t first_column;
  std::uint32_t group;
  bool live;  // false past the last tile, for rows of no group, and for rows that cannot reach the bound
};

template <class T>
__device__ FilterTile locate_filter_tile(const DeviceProblem<T>& problem, std::uint32_t tiles_per_row, std::uint32_t tile) {
  FilterTile where{0, 0, problem.groups, false};
  where.row = tile / tiles_per_row;
  where.first_column = tile % tiles_per_row * filter_tile;
  where.group = problem.group_of_row(where.row);
  where.live = where.group < problem.groups;
  return where;
}

template <int Vector, class T>
using FilterValues = ::xgr::detail::VectorOf<Vector, T>[filter_elements_per_thread / Vector];

// Issues the tile's loads, branch-free for whole vectors; the rare partial vector at the end of a
// row is patched with scalar loads.
template <int Vector, class T>
__device__ void load_filter_tile(const DeviceProblem<T>& problem, const FilterTile& where, FilterValues<Vector, T>& values) {
  constexpr int vectors_per_thread = filter_elements_per_thread / Vector;
  if (!where.live) return;
  const T* row_scores = problem.scores + where.row * problem.row_stride;
#pragma unroll
  for (int v = 0; v < vectors_per_thread; ++v) {
    const std::uint32_t column0 = where.first_column + (v * filter_threads + threadIdx.x) * Vector;
    values[v] = ::xgr::detail::VectorOf<Vector, T>{};
    if (column0 + Vector <= problem.vocab) values[v] = *reinterpret_cast<const ::xgr::detail::VectorOf<Vector, T>*>(row_scores + column0);
  }
#pragma unroll
  for (int v = 0; v < vectors_per_thread; ++v) {
    const std::uint32_t column0 = where.first_column + (v * filter_threads + threadIdx.x) * Vector;
    if (column0 < problem.vocab && column0 + Vector > problem.vocab) {
      for (int i = 0; i < Vector; ++i) {
        if (column0 + i < problem.vocab) values[v].element[i] = row_scores[column0 + i];
      }
    }
  }
}

// What a tile's exact checks need: its row's place in the group and the group's bound.
struct TileBound {
  CandidateKey bound;       // the group's bound (1: every selectable candidate)
  float bound_score;        // a key >= bound needs a score >= bound_score
  float offset;             // the row's offset
  std::uint32_t flat_base;  // the row's first flat index in its group
};

__device__ inline TileBound tile_bound(CandidateKey group_bound, float offset, std::uint32_t flat_base) {
  TileBound tile{group_bound, 0.0f, offset, flat_base};
  // A key >= bound needs a score >= the bound's score (keys order by score first); bound 1 admits
  // every selectable candidate. High word ordered(-0.0) belongs to no key (scores fold -0.0 into
  // +0.0): such a bound is lifted to the first +0.0 key, an equivalent bound whose score compares
  // correctly as a float.
  if ((tile.bound >> 32) == 0x7fffffffu) tile.bound = CandidateKey{0x80000000u} << 32;
  tile.bound_score = tile.bound <= 1 ? -__builtin_huge_valf() : key_score(tile.bound);
  return tile;
}

template <class T>
__device__ TileBound tile_bound(const DeviceProblem<T>& problem, const FilterTile& where, CandidateKey group_bound) {
  return tile_bound(group_bound, problem.offset(where.row), (where.row - problem.group_begin(where.group)) * problem.vocab);
}

// The column of bit `bit` of a thread's filter values (bit v x Vector + i: vector v, element i).
template <int Vector>
__device__ std::uint32_t tile_column(const FilterTile& where, int bit) {
  return where.first_column + (static_cast<std::uint32_t>(bit / Vector) * filter_threads + threadIdx.x) * Vector +
         static_cast<std::uint32_t>(bit % Vector);
}

// The thread's elements of a loaded tile whose key reaches the bound, as bits (see tile_column).
// The hot loop only marks elements whose score reaches the bound's score: one add and one compare
// per element, so that the pass streams at memory speed. The few marked elements are then checked
// exactly (index tie-break, mask, row end), each re-read by its column through `score_at`: a loop
// over the set bits, not an unrolled pass over all of them. `allowed` holds the elements a bitset
// mask allows when the caller has the tile's mask words at hand (`mask_applied`); otherwise it is
// all ones and marked elements read their mask bit from global memory.
template <int Vector, class T, class ScoreAt>
__device__ std::uint32_t tile_survivors(const DeviceProblem<T>& problem, const FilterTile& where, const FilterValues<Vector, T>& values,
                                        const TileBound& tile, std::uint32_t allowed, bool mask_applied, ScoreAt&& score_at) {
  constexpr int vectors_per_thread = filter_elements_per_thread / Vector;
  std::uint32_t marked = 0;
#pragma unroll
  for (int v = 0; v < vectors_per_thread; ++v) {
#pragma unroll
    for (int i = 0; i < Vector; ++i) {
      const float score = to_float(values[v].element[i]) + tile.offset;
      marked |= score >= tile.bound_score ? 1u << (v * Vector + i) : 0u;
    }
  }
  std::uint32_t kept = 0;
  for (std::uint32_t rest = marked & allowed; rest != 0; rest &= rest - 1) {
    const int bit = __ffs(static_cast<int>(rest)) - 1;
    const std::uint32_t column = tile_column<Vector>(where, bit);
    if (column >= problem.vocab) continue;
    if (problem.mask == MaskKind::bitset && !mask_applied && !problem.bit_allows(where.row, column)) continue;
    const float score = score_at(column) + tile.offset;
    if (is_selectable(score) && make_key(score, tile.flat_base + column) >= tile.bound) kept |= 1u << bit;
  }
  return kept;
}

// The largest key among the kept bits (no_candidate when none).
template <int Vector, class ScoreAt>
__device__ CandidateKey best_survivor(const FilterTile& where, const TileBound& tile, std::uint32_t kept, ScoreAt&& score_at) {
  CandidateKey best = no_candidate;
  for (std::uint32_t rest = kept; rest != 0; rest &= rest - 1) {
    const std::uint32_t column = tile_column<Vector>(where, __ffs(static_cast<int>(rest)) - 1);
    const CandidateKey key = make_key(score_at(column) + tile.offset, tile.flat_base + column);
    best = key > best ? key : best;
  }
  return best;
}

// Filters one loaded tile: appends its candidates whose key reaches the group's bound. All threads
// of the block call it (it synchronises the block), with the same `where`.
template <int Vector, class T>
__device__ void filter_loaded_tile(const DeviceProblem<T>& problem, const FilterTile& where, const FilterValues<Vector, T>& values,
                            const CandidateKey* bounds, CandidateKey* survivor_max, std::uint32_t* survivor_counts,
                            CandidateKey* survivors, std::size_t capacity, BlockReserve& reserve) {
  const T* row_scores = problem.scores + where.row * problem.row_stride;
  const auto score_at = [&](std::uint32_t column) { return to_float(row_scores[column]); };  // from L1: the tile was just loaded
  const TileBound tile = tile_bound(problem, where, bounds[where.group]);
  const std::uint32_t kept = tile_survivors<Vector>(problem, where, values, tile, ~0u, false, score_at);
  if (threadIdx.x == 0) {
    reserve.count = 0;
    reserve.best = no_candidate;
  }
  __syncthreads();
  std::uint32_t slot = block_reserve(&survivor_counts[where.group], &survivor_max[where.group], static_cast<std::uint32_t>(__popc(kept)),
                                     [&] { return best_survivor<Vector>(where, tile, kept, score_at); }, reserve);
  CandidateKey* out = survivors + where.group * capacity;
  for (std::uint32_t rest = kept; rest != 0; rest &= rest - 1) {
    const std::uint32_t column = tile_column<Vector>(where, __ffs(static_cast<int>(rest)) - 1);
    if (slot < capacity) out[slot] = make_key(score_at(column) + tile.offset, tile.flat_base + column);
    ++slot;
  }
  __syncthreads();  // `reserve` is reset for the next tile only after every thread has read its base
}

// One tile per block. Blocks are short-lived (load, mark, append, exit): how much is in flight per
// SM is set by how many are resident, hence the register budget of MinBlocks blocks per SM.
template <int Vector, class T, int MinBlocks = 1>
__global__ void __launch_bounds__(filter_threads, MinBlocks) filter_dense_kernel(DeviceProblem<T> problem, std::uint32_t tiles_per_row,
                                                                       const CandidateKey* bounds, CandidateKey* survivor_max,
                                                                       std::uint32_t* survivor_counts, CandidateKey* survivors,
                                                                       std::size_t capacity) {
  // No allow_dependent_launch: letting the select's blocks in once the last wave had started was
  // measured 2-5 % slower (they take SMs while these blocks still run); they come in at the end.
  __shared__ BlockReserve reserve;
  FilterTile where = locate_filter_tile(problem, tiles_per_row, blockIdx.x);
  // The tile does not depend on the bound: its loads are in flight while the bound kernel finishes
  // (launched overlapping it), unless row score bounds may spare reading the row at all.
  FilterValues<Vector, T> values;
  const bool load_early = problem.row_bounds == nullptr;
  if (load_early) load_filter_tile<Vector>(problem, where, values);
  ::xgr::detail::wait_for_prior_grid();
  // Early exit: a row whose score bound is below the group's k-th bound is not read at all.
  if (!where.live || row_cannot_reach(problem, where.row, bounds[where.group])) return;
  if (!load_early) load_filter_tile<Vector>(problem, where, values);
  filter_loaded_tile<Vector>(problem, where, values, bounds, survivor_max, survivor_counts, survivors, capacity, reserve);
}

// Dense fp32 rows streamed through shared memory (no row score bounds: run_early_exit picks this
// kernel only then). Persistent blocks each filter a contiguous range of tiles and keep a ring of
// them in flight, one thread issuing one 32 KB bulk copy per tile, so the copy engine, not a wave of
// short-lived blocks, keeps the memory busy. The first ring of tiles is requested before the bound
// is known, since it does not depend on it: 192 KB per SM, about 25 MB on an H100 (over a third of
// 8 x 256 x 8,192 fp32 scores), is read while the sample and the bound kernels run.
//
// The warps of a block share the tiles but not their pace: each warp filters its part of a staged
// tile and signals the stage consumed on its own; the stage is refilled once all of them have, and
// no block barrier is taken per tile. A barrier per tile had every warp wait for the slowest one and
// kept each stage from being refilled until the whole block was done with it; the filter then ran
// at about 2.4 TB/s after the bound on an H100, paced by its own per-tile work. Nothing in a tile's
// path waits on global memory either: the thread that requests a tile writes where it lies next to
// the stage (no warp divides to locate it), with the row's offset loaded one tile ahead; marked
// elements are re-read from the stage, a bitset mask's words arrive with the tile, and the group's
// bound is loaded once per group. Each warp collects its survivors in its own buffer in shared
// memory, appended to the groups' buffers (one atomic per group present) only when it fills or the
// block ends. Rows must be 16-byte aligned and a multiple of 16 bytes long; before compute
// capability 9.0 (no bulk copies) the blocks load their tiles directly.
inline constexpr int stream_blocks_per_sm = 2;
inline constexpr std::uint32_t stream_max_stages = 16;
inline constexpr std::size_t stream_ring_budget = 192 * 1024 / stream_blocks_per_sm;  // shared memory per block for its ring
inline constexpr std::uint32_t warp_buffered_keys = 128;  // a warp's survivors held before they are appended
inline constexpr std::uint32_t warp_buffered_runs = 16;   // runs of one group among them (at most 32: a lane each)

template <class T>
inline constexpr std::uint32_t stream_stages =
    static_cast<std::uint32_t>(std::min<std::size_t>(stream_ring_budget / (filter_tile * sizeof(T)), stream_max_stages));

// Where the survivors of all groups go.
struct SurvivorOutputs {
  CandidateKey* group_max;      // per group, the largest survivor key
  std::uint32_t* group_counts;  // per group, survivors found (may exceed capacity: overflow)
  CandidateKey* keys;           // per group, `capacity` slots
  std::size_t capacity;
};

// A warp's survivors in shared memory, in runs of one group each (consecutive tiles of one group
// share a run), appended to their groups' buffers together.
struct WarpSurvivors {
  CandidateKey keys[warp_buffered_keys];
  std::uint32_t run_end[warp_buffered_runs];  // one past each run's last key
  std::uint32_t run_group[warp_buffered_runs];
};

static_assert(warp_buffered_runs <= 32);

// How full a warp's buffer is: held in registers, the same in every lane.
struct WarpSurvivorCount {
  std::uint32_t keys = 0;
  std::uint32_t runs = 0;
  std::uint32_t last_group = 0;  // the group of the last run, when there is one
};

// Appends a warp's buffered survivors to their groups' buffers and empties it: one atomic per run,
// a lane per run, all issued at once. The group maxima are taken here, once per run, rather than
// on every tile. All lanes of the warp call it.
__device__ inline void flush_warp_survivors(WarpSurvivors& buffer, WarpSurvivorCount& buffered, const SurvivorOutputs& out) {
  __syncwarp();  // every lane's keys and lane 0's run ends are written
  const unsigned lane = threadIdx.x % 32;
  std::uint32_t base = 0;
  if (lane < buffered.runs) {
    const std::uint32_t begin = lane == 0 ? 0 : buffer.run_end[lane - 1];
    base = atomicAdd(&out.group_counts[buffer.run_group[lane]], buffer.run_end[lane] - begin);
  }
  std::uint32_t begin = 0;
  for (std::uint32_t run = 0; run < buffered.runs; ++run) {
    const std::uint32_t end = buffer.run_end[run];
    const std::uint32_t group = buffer.run_group[run];
    const std::uint32_t run_base = __shfl_sync(0xffffffffu, base, static_cast<int>(run));
    CandidateKey* group_keys = out.keys + group * out.capacity;
    CandidateKey best = no_candidate;
    for (std::uint32_t i = begin + lane; i < end; i += 32) {
      const CandidateKey key = buffer.keys[i];
      best = key > best ? key : best;
      const std::uint32_t slot = run_base + (i - begin);
      if (slot < out.capacity) group_keys[slot] = key;
    }
    warp_max_into(&out.group_max[group], best);
    begin = end;
  }
  __syncwarp();  // every lane has read the buffer before it is refilled
  buffered.keys = 0;
  buffered.runs = 0;
}

// The elements of a thread's filter values (bits as in tile_column) that the tile's bitset words
// allow; `words` are the tile's mask words, word 0 for its first column.
template <int Vector>
__device__ std::uint32_t staged_allowed(const std::uint32_t* words) {
  static_assert(32 % Vector == 0);
  std::uint32_t allowed = 0;
#pragma unroll
  for (int v = 0; v < filter_elements_per_thread / Vector; ++v) {
    const std::uint32_t element = (static_cast<std::uint32_t>(v) * filter_threads + threadIdx.x) * Vector;  // within the tile
    allowed |= ((words[element / 32] >> (element % 32)) & ((1u << Vector) - 1u)) << (v * Vector);
  }
  return allowed;
}

// A staged tile as its requester describes it to the warps.
struct StagedTile {
  FilterTile where;         // where.live false: nothing was copied (a row of no group, or the end)
  float offset;             // the row's offset
  std::uint32_t flat_base;  // the row's first flat index in its group
  bool end;                 // past the block's last tile
};

// Filters the warp's part of one staged tile (with its mask words when `words` is not null), adding
// its survivors to the warp's buffer. All lanes of the warp call it; the other warps are not waited for.
template <int Vector, class T>
__device__ void filter_staged_tile_by_warp(const DeviceProblem<T>& problem, const StagedTile& staged, const T* stage,
                                           const std::uint32_t* words, CandidateKey group_bound, WarpSurvivors& buffer,
                                           WarpSurvivorCount& buffered, const SurvivorOutputs& out) {
  const FilterTile& where = staged.where;
  const auto* vectors = reinterpret_cast<const ::xgr::detail::VectorOf<Vector, T>*>(stage);
  FilterValues<Vector, T> values;
#pragma unroll
  for (int v = 0; v < filter_elements_per_thread / Vector; ++v) values[v] = vectors[v * filter_threads + threadIdx.x];
  const auto score_at = [&](std::uint32_t column) { return to_float(stage[column - where.first_column]); };
  const TileBound tile = tile_bound(group_bound, staged.offset, staged.flat_base);
  const std::uint32_t allowed = words != nullptr ? staged_allowed<Vector>(words) : ~0u;
  const std::uint32_t kept = tile_survivors<Vector>(problem, where, values, tile, allowed, words != nullptr, score_at);
  if (!__any_sync(0xffffffffu, kept != 0)) return;  // most warps of most tiles, once the bound is tight
  const auto count = static_cast<std::uint32_t>(__popc(kept));
  const unsigned lane = threadIdx.x % 32;
  const std::uint32_t inclusive = warp_inclusive_sum(count);
  const std::uint32_t total = __shfl_sync(0xffffffffu, inclusive, 31);
  const std::uint32_t place = inclusive - count;  // within the warp's survivors of this tile
  bool new_run = buffered.runs == 0 || buffered.last_group != where.group;
  if (buffered.keys + total > warp_buffered_keys || (new_run && buffered.runs == warp_buffered_runs)) {
    flush_warp_survivors(buffer, buffered, out);
    new_run = true;
  }
  if (total <= warp_buffered_keys) {
    std::uint32_t slot = buffered.keys + place;
    for (std::uint32_t rest = kept; rest != 0; rest &= rest - 1) {
      const std::uint32_t column = tile_column<Vector>(where, __ffs(static_cast<int>(rest)) - 1);
      buffer.keys[slot++] = make_key(score_at(column) + tile.offset, tile.flat_base + column);
    }
    if (new_run) {
      ++buffered.runs;
      buffered.last_group = where.group;
    }
    buffered.keys += total;
    if (lane == 0) {
      buffer.run_end[buffered.runs - 1] = buffered.keys;
      buffer.run_group[buffered.runs - 1] = where.group;
    }
    return;
  }
  // More survivors than the buffer holds (a bound that admits nearly everything): straight to the
  // group's buffer.
  std::uint32_t slot = warp_reserve(&out.group_counts[where.group], count);
  CandidateKey* group_keys = out.keys + where.group * out.capacity;
  CandidateKey best = no_candidate;
  for (std::uint32_t rest = kept; rest != 0; rest &= rest - 1) {
    const std::uint32_t column = tile_column<Vector>(where, __ffs(static_cast<int>(rest)) - 1);
    const CandidateKey key = make_key(score_at(column) + tile.offset, tile.flat_base + column);
    best = key > best ? key : best;
    if (slot < out.capacity) group_keys[slot] = key;
    ++slot;
  }
  warp_max_into(&out.group_max[where.group], best);
}

template <class T>
__global__ void __launch_bounds__(filter_threads, stream_blocks_per_sm) filter_stream_kernel(
    DeviceProblem<T> problem, std::uint32_t tiles_per_row, std::uint32_t tiles, bool stage_mask, const CandidateKey* bounds,
    CandidateKey* survivor_max, std::uint32_t* survivor_counts, CandidateKey* survivors, std::size_t capacity, GroupFlags flags) {
  // The select's blocks may become resident on an SM as soon as one of its two filter blocks ends
  // (the last filter blocks end several us after the first), and wait there for the whole grid.
  ::xgr::detail::allow_dependent_launch();
  constexpr int vector = 16 / sizeof(T);
  const auto end_tile = static_cast<std::uint32_t>((std::uint64_t{blockIdx.x} + 1) * tiles / gridDim.x);
  const auto first_tile = static_cast<std::uint32_t>(std::uint64_t{blockIdx.x} * tiles / gridDim.x);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr std::uint32_t stages = stream_stages<T>;
  constexpr std::uint32_t stage_bytes = filter_tile * sizeof(T);
  constexpr std::uint32_t warps = filter_threads / 32;
  extern __shared__ __align__(128) unsigned char ring[];  // stages x stage_bytes
  __shared__ __align__(16) std::uint32_t ring_words[stages][filter_tile / 32];  // bitset masks: each stage's mask words
  __shared__ std::uint64_t filled[stages];    // a phase per tile: its copy has landed (or there was none)
  __shared__ std::uint64_t consumed[stages];  // a phase per tile: every warp is done with it
  __shared__ StagedTile staged[stages];
  __shared__ WarpSurvivors warp_survivors[warps];
  const SurvivorOutputs out{survivor_max, survivor_counts, survivors, capacity};
  WarpSurvivors& buffer = warp_survivors[threadIdx.x / 32];
  WarpSurvivorCount buffered;
  // The bound of the group last seen: a block's tiles span one or a few groups.
  std::uint32_t bound_group = problem.groups;
  CandidateKey group_bound = 0;
  // Thread 0 requests the block's tiles in order. The offset of the next tile's row is loaded one
  // request ahead, so that no request waits on it.
  std::uint32_t next_tile = first_tile;
  float next_offset = next_tile < end_tile ? problem.offset(next_tile / tiles_per_row) : 0.0f;
  // Thread 0 requests the block's next tile into `stage`. The barrier's phase completes when the
  // copy has landed, or at once when there is nothing to copy.
  const auto request = [&](std::uint32_t stage) {
    StagedTile record{};
    record.end = next_tile >= end_tile;
    if (!record.end) {
      record.where = locate_filter_tile(problem, tiles_per_row, next_tile);
      record.offset = next_offset;
      if (record.where.live) record.flat_base = (record.where.row - problem.group_begin(record.where.group)) * problem.vocab;
      if (++next_tile < end_tile) next_offset = problem.offset(next_tile / tiles_per_row);
    }
    staged[stage] = record;  // published by the barrier's arrival (release), read after its wait (acquire)
    if (!record.where.live) {
      ::xgr::detail::mbarrier_arrive(&filled[stage]);
      return;
    }
    const FilterTile& where = record.where;
    const std::uint32_t columns = problem.vocab - where.first_column < filter_tile ? problem.vocab - where.first_column : filter_tile;
    const std::uint32_t word_bytes = stage_mask ? columns / 8 : 0;  // columns is a multiple of 128 when masks are staged
    ::xgr::detail::mbarrier_arrive_expect_bytes(&filled[stage], columns * static_cast<std::uint32_t>(sizeof(T)) + word_bytes);
    ::xgr::detail::bulk_copy_to_shared(ring + stage * stage_bytes, problem.scores + where.row * problem.row_stride + where.first_column,
                                       columns * static_cast<std::uint32_t>(sizeof(T)), &filled[stage]);
    if (stage_mask) {
      ::xgr::detail::bulk_copy_to_shared(ring_words[stage], problem.mask_bits + where.row * problem.mask_row_words + where.first_column / 32,
                                         word_bytes, &filled[stage]);
    }
  };
  if (threadIdx.x == 0) {
    for (std::uint32_t stage = 0; stage < stages; ++stage) {
      ::xgr::detail::mbarrier_init(&filled[stage], 1);
      ::xgr::detail::mbarrier_init(&consumed[stage], warps);
    }
    ::xgr::detail::fence_barrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (std::uint32_t stage = 0; stage < stages; ++stage) request(stage);
  }
  // Launched overlapping the bound's kernel: with flags, each group's bound is awaited where its
  // first tile is filtered.
  if (!flags.on()) ::xgr::detail::wait_for_prior_grid();
  // Tiles are consumed in the order they were requested, so the first stage marked `end` ends the
  // block. Thread 0 refills the stage of tile i - 1 before it waits for tile i: at most one tile
  // after the slowest warp, and never ahead of a warp that is still reading it.
  for (std::uint32_t i = 0;; ++i) {
    const std::uint32_t stage = i % stages;
    if (threadIdx.x == 0 && i != 0) {
      const std::uint32_t previous = (i - 1) % stages;
      ::xgr::detail::mbarrier_wait(&consumed[previous], ((i - 1) / stages) & 1u);
      request(previous);
    }
    ::xgr::detail::mbarrier_wait(&filled[stage], (i / stages) & 1u);
    const StagedTile record = staged[stage];
    if (record.end) break;
    if (record.where.live) {
      if (record.where.group != bound_group) {
        bound_group = record.where.group;
        if (flags.on()) ::xgr::detail::await_count(&flags.bound_ready[bound_group], 1);
        group_bound = bounds[bound_group];
      }
      filter_staged_tile_by_warp<vector>(problem, record, reinterpret_cast<const T*>(ring + stage * stage_bytes),
                                         stage_mask ? ring_words[stage] : nullptr, group_bound, buffer, buffered, out);
    }
    __syncwarp();  // every lane has read the stage
    if (threadIdx.x % 32 == 0) ::xgr::detail::mbarrier_arrive(&consumed[stage]);
  }
  flush_warp_survivors(buffer, buffered, out);
#else
  (void)stage_mask;
  __shared__ BlockReserve reserve;
  ::xgr::detail::wait_for_prior_grid();  // ordinary stream order on these devices: every bound is out
  for (std::uint32_t tile = first_tile; tile < end_tile; ++tile) {
    const FilterTile where = locate_filter_tile(problem, tiles_per_row, tile);
    if (!where.live) continue;
    FilterValues<vector, T> values;
    load_filter_tile<vector>(problem, where, values);
    filter_loaded_tile<vector>(problem, where, values, bounds, survivor_max, survivor_counts, survivors, capacity, reserve);
  }
#endif
  if (flags.on()) {
    __syncthreads();  // every warp's survivors are written
    if (threadIdx.x == 0) publish_filtered_tiles(problem, flags, first_tile, end_tile);
  }
}

// Sparse masks: each row's allowed entries, gathered by RowThreads threads: the block, or a warp
// (8 rows a block) where rows are short or many (sparse_warp_rows_pay, below). A block a row kept
// 3 of its 8 warps busy on a row of 82 entries, and had 8 rows a multiprocessor in flight. Each
// thread requests the columns of sparse_batch entries together, then their scores: two dependent
// round trips per sparse_batch x RowThreads entries, where one entry a thread took two per
// RowThreads.
inline constexpr int sparse_batch = 4;

template <int RowThreads, class T>
__global__ void __launch_bounds__(filter_threads) filter_sparse_kernel(DeviceProblem<T> problem, const CandidateKey* bounds,
                                                                        CandidateKey* survivor_max, std::uint32_t* survivor_counts,
                                                                        CandidateKey* survivors, std::size_t capacity) {
  static_assert(RowThreads == 32 || RowThreads == filter_threads, "a row is a warp or the block");
  constexpr std::uint32_t rows_per_block = filter_threads / RowThreads;
  // (Spelt out for block rows: the compiler does not know that threadIdx.x < filter_threads.)
  const std::uint32_t row = blockIdx.x * rows_per_block + (rows_per_block == 1 ? 0 : threadIdx.x / RowThreads);
  const std::uint32_t thread = rows_per_block == 1 ? threadIdx.x : threadIdx.x % RowThreads;
  // The row's own inputs were written before the call's first kernel started: they are requested
  // before the wait for the bound kernel (launched overlapping it, no early trigger: see
  // filter_dense_kernel).
  const std::uint32_t group = row < problem.rows ? problem.group_of_row(row) : problem.groups;
  std::uint32_t begin = 0;
  std::uint32_t length = 0;
  float offset = 0.0f;
  float row_bound = 0.0f;
  if (group < problem.groups) {
    begin = problem.row_ptr[row];
    length = problem.row_ptr[row + 1] - begin;
    offset = problem.offset(row);
    if (problem.row_bounds != nullptr) row_bound = problem.row_bounds[row];
  }
  ::xgr::detail::wait_for_prior_grid();
  if (group >= problem.groups) return;  // a whole row: warp-uniform
  const CandidateKey bound = bounds[group];
  if (problem.row_bounds != nullptr && score_bound_below(row_bound, bound)) return;
  const T* scores = problem.scores + row * problem.row_stride;
  const std::uint32_t flat_base = (row - problem.group_begin(group)) * problem.vocab;
  CandidateKey* out = survivors + group * capacity;
  for (std::uint32_t base = 0; base < length; base += sparse_batch * RowThreads) {  // uniform trip count: whole warps reserve
    std::uint32_t columns[sparse_batch];
#pragma unroll
    for (int b = 0; b < sparse_batch; ++b) {
      const std::uint32_t position = base + b * RowThreads + thread;
      columns[b] = position < length ? problem.columns[begin + position] : problem.vocab;  // vocab: no entry
    }
    CandidateKey keys[sparse_batch];
    std::uint32_t kept = 0;
    CandidateKey best = no_candidate;
#pragma unroll
    for (int b = 0; b < sparse_batch; ++b) {
      // A column past the vocabulary is malformed input: never read, never a candidate.
      keys[b] = columns[b] < problem.vocab ? problem.candidate_key(to_float(scores[columns[b]]) + offset, flat_base + columns[b])
                                           : no_candidate;
      if (keys[b] != no_candidate && keys[b] >= bound) {
        ++kept;
        best = keys[b] > best ? keys[b] : best;
      }
    }
    if (!__any_sync(0xffffffffu, kept != 0)) continue;  // most batches, once the bound is tight
    std::uint32_t slot = warp_reserve(&survivor_counts[group], kept);
    warp_max_into(&survivor_max[group], best);
#pragma unroll
    for (int b = 0; b < sparse_batch; ++b) {
      if (keys[b] != no_candidate && keys[b] >= bound) {
        if (slot < capacity) out[slot] = keys[b];
        ++slot;
      }
    }
  }
}

// The sparse filter's layout (CallOptions::sparse_rows): a block a row or a warp a row.
enum class SparseRows : std::uint8_t { block, warp };

// Whether a warp a row is the sparse filter's faster layout for `rows` rows of `entries` allowed
// entries each (on average). It counts what a multiprocessor waits for: dependent round trips, two
// a batch of a row's entries, times the waves of rows it holds at once (2,048 threads' worth). A
// block row takes 1,024 entries a batch and 8 rows a wave; a warp row 128 entries and 64 rows.
// So warps win where rows are short or many, blocks where a few rows are long. Ties go to warps.
[[nodiscard]] inline bool sparse_warp_rows_pay(std::uint64_t rows, std::uint64_t entries, std::uint64_t multiprocessors) {
  constexpr std::uint64_t resident_threads = 2048;  // a multiprocessor's, on compute capability 8.0 to 9.0
  const auto at_least_one = [](std::uint64_t value, std::uint64_t per) { return value == 0 ? 1 : (value + per - 1) / per; };
  const std::uint64_t block_cost = at_least_one(rows, multiprocessors * (resident_threads / filter_threads)) *
                                   at_least_one(entries, std::uint64_t{sparse_batch} * filter_threads);
  const std::uint64_t warp_cost =
      at_least_one(rows, multiprocessors * (resident_threads / 32)) * at_least_one(entries, std::uint64_t{sparse_batch} * 32);
  return warp_cost <= block_cost;
}

// ---- kernel 3: exact selection -----------------------------------------------------------------
struct FinalShared {
  SelectShared select;
  std::uint32_t winners_found;
  std::uint32_t boundary_found;
  CandidateKey winners[max_topk_k];
};

// Writes the gathered winners (exactly min(k, candidates) distinct keys) in order. Each warp sorts
// lists of 32 winners in registers (warp_sort_descending); a winner's output slot is then the
// number of winners above it, which is the sum over the sorted lists of a binary search in each:
// about (k / 32) x 6 shared loads per winner instead of k comparisons. Teams of lanes (blockDim / k
// of them, a power of two up to 32) split the lists and add their counts.
__device__ inline void write_ranked(FinalShared& shared, std::uint32_t k, std::uint32_t group, float* values,
                                    std::size_t values_stride, std::uint32_t* indices, std::size_t indices_stride,
                                    std::uint32_t* counts) {
  __syncthreads();
  const std::uint32_t gathered = shared.winners_found < k ? shared.winners_found : k;
  const std::uint32_t lists = (gathered + 31) / 32;  // lists * 32 <= max_topk_k: the padding fits in `winners`
  for (std::uint32_t list = threadIdx.x / 32; list < lists; list += blockDim.x / 32) {
    const std::uint32_t i = list * 32 + threadIdx.x % 32;
    shared.winners[i] = warp_sort_descending(i < gathered ? shared.winners[i] : no_candidate);  // padding sorts last
  }
  __syncthreads();
  std::uint32_t team = 1;
  while (team < 32 && team * 2 * k <= blockDim.x) team *= 2;
  const std::uint32_t member = threadIdx.x % team;
  const std::uint32_t teams = blockDim.x / team;
  for (std::uint32_t i = threadIdx.x / team; i < (k + teams - 1) / teams * teams; i += teams) {  // uniform trip count: whole teams shuffle together
    const CandidateKey key = i < gathered ? shared.winners[i] : no_candidate;
    std::uint32_t rank = 0;
    if (i < gathered) {
#pragma unroll 4
      for (std::uint32_t list = member; list < lists; list += team) {
        // Winners of this list above `key`: the list is descending, so that many lead it.
        const CandidateKey* sorted = shared.winners + list * 32;
        std::uint32_t above = 0;
#pragma unroll
        for (std::uint32_t step = 16; step > 0; step /= 2) above += sorted[above + step - 1] > key ? step : 0u;
        rank += above + (sorted[above] > key ? 1u : 0u);
      }
    }
    for (std::uint32_t delta = 1; delta < team; delta *= 2) rank += __shfl_xor_sync(0xffffffffu, rank, delta);
    if (member == 0 && i < k) {
      values[group * values_stride + (i < gathered ? rank : i)] = i < gathered ? key_score(key) : -__builtin_huge_valf();
      indices[group * indices_stride + (i < gathered ? rank : i)] = i < gathered ? key_index(key) : empty_index;
    }
  }
  if (threadIdx.x == 0) counts[group] = gathered;
}

// The k best of staged keys, ranked without finding the k-th first: one histogram of split_bins
// equal-width bins over [low, high], a scan of it that gives every bin the number of keys above it,
// a counting sort of the keys of the bins that can hold a winner (behind the staged keys), and a
// key's output slot is its bin's start plus the keys of its own bin above it. That is three
// barrier-separated steps where finding the k-th and then ordering the winners took about ten.
// Comparing within a bin costs each key its bin's crowd, so a crowded bin (more than
// max_binned_crowd keys among those that can win: equal scores of nearby indices) or sorted keys
// that do not fit in `capacity` return false, having written no result; the caller then selects
// as before (its first step clears the histogram again).
// Requires: k < count <= capacity, distinct keys, every key within [low, high], the histogram all
// zero, and a barrier between the keys' staging and the call. All threads (Threads) call it.
inline constexpr std::uint32_t max_binned_crowd = 128;

template <int Threads>
__device__ bool write_binned_top_k(CandidateKey* staged, std::uint32_t count, std::uint32_t capacity, std::uint32_t k, CandidateKey low,
                                   CandidateKey high, SelectShared& shared, std::uint32_t group, float* values, std::size_t values_stride,
                                   std::uint32_t* indices, std::size_t indices_stride, std::uint32_t* counts) {
  constexpr int warps = Threads / 32;
  constexpr int bins_per_thread = split_bins / Threads;
  static_assert(Threads % 32 == 0 && warps <= 32 && split_bins % Threads == 0);
  const unsigned lane = threadIdx.x % 32;
  const unsigned warp = threadIdx.x / 32;
  const SplitBins bins(low, high);
  if (threadIdx.x == 0) {
    shared.count = 0;  // the largest crowd of a bin that can hold a winner
    shared.choice = BinChoice{0, 0, 0, 1};
  }
  for (std::uint32_t i = threadIdx.x; i < count; i += Threads) atomicAdd(&shared.histogram[histogram_slot(bins(staged[i]))], 1u);
  __syncthreads();

  // Thread t scans bins_per_thread consecutive bins downwards from the top: thread 0 holds the highest.
  const int top = split_bins - 1 - static_cast<int>(threadIdx.x) * bins_per_thread;
  std::uint32_t crowd[bins_per_thread];
  std::uint32_t total = 0;
#pragma unroll
  for (int j = 0; j < bins_per_thread; ++j) {
    crowd[j] = shared.histogram[histogram_slot(static_cast<std::uint32_t>(top - j))];
    total += crowd[j];
  }
  const std::uint32_t inclusive = warp_inclusive_sum(total);
  if (lane == 31) shared.warp_totals[warp] = inclusive;
  __syncthreads();
  const std::uint32_t warp_sums = warp_inclusive_sum(lane < static_cast<unsigned>(warps) ? shared.warp_totals[lane] : 0u);
  std::uint32_t above = inclusive - total + (warp == 0 ? 0u : __shfl_sync(0xffffffffu, warp_sums, static_cast<int>(warp) - 1));
  std::uint32_t busiest = 0;
#pragma unroll
  for (int j = 0; j < bins_per_thread; ++j) {
    const auto bin = static_cast<std::uint32_t>(top - j);
    if (above < k) {
      busiest = crowd[j] > busiest ? crowd[j] : busiest;
      if (above + crowd[j] >= k) shared.choice = BinChoice{bin, above, crowd[j], 0};  // the one bin that holds the k-th
    }
    shared.histogram[histogram_slot(bin)] = above;  // the bin's first slot in the sorted keys
    above += crowd[j];
  }
  busiest = __reduce_max_sync(0xffffffffu, busiest);
  if (lane == 0 && busiest != 0) atomicMax(&shared.count, busiest);
  __syncthreads();
  const BinChoice split = shared.choice;
  const std::uint32_t sorted_count = split.above + split.in_bin;  // the keys of the split bin and above
  if (split.too_few != 0 || shared.count > max_binned_crowd || sorted_count > capacity - count) return false;  // uniform

  CandidateKey* sorted = staged + count;
  for (std::uint32_t i = threadIdx.x; i < count; i += Threads) {
    const CandidateKey key = staged[i];
    const std::uint32_t bin = bins(key);
    if (bin >= split.bin) sorted[atomicAdd(&shared.histogram[histogram_slot(bin)], 1u)] = key;
  }
  __syncthreads();
  // Each bin from the split bin up now ends where the bin above it began: its keys lie in
  // sorted[end of the bin above, its own end).
  for (std::uint32_t i = threadIdx.x; i < sorted_count; i += Threads) {
    const CandidateKey key = sorted[i];
    const std::uint32_t bin = bins(key);
    const std::uint32_t begin = bin + 1 < static_cast<std::uint32_t>(split_bins) ? shared.histogram[histogram_slot(bin + 1)] : 0u;
    const std::uint32_t end = shared.histogram[histogram_slot(bin)];
    std::uint32_t rank = begin;
    for (std::uint32_t j = begin; j < end; ++j) rank += sorted[j] > key ? 1u : 0u;
    if (rank < k) {
      values[group * values_stride + rank] = key_score(key);
      indices[group * indices_stride + rank] = key_index(key);
    }
  }
  if (threadIdx.x == 0) counts[group] = k;
  return true;
}

__device__ inline void add_winner(FinalShared& shared, CandidateKey key, std::uint32_t k) {
  const std::uint32_t slot = atomicAdd(&shared.winners_found, 1u);
  if (slot < k) shared.winners[slot] = key;
}

// Generic exact selection over any re-enumerable key set (the input itself, or a key array).
template <class ForEachKey>
__device__ void select_exact(ForEachKey&& for_each_key, std::uint32_t k, FinalShared& shared) {
  const CandidateKey threshold = select_threshold(for_each_key, k, shared.select, 0, false, 0, 0);
  for_each_key([&](CandidateKey key) {
    if (key != no_candidate && key >= threshold) add_winner(shared, key, k);  // exactly min(k, valid) qualify
  });
}

// Every candidate of the group, straight from the input (the fallback and the NoEarlyExit baseline).
template <class T>
struct GroupInputKeys {
  const DeviceProblem<T>& problem;
  std::uint32_t first_row;
  std::uint32_t end_row;
  template <class Visit>
  __device__ void operator()(Visit&& visit) const {
    for (std::uint32_t row = first_row; row < end_row; ++row) {
      const std::uint32_t length = problem.row_length(row);
      for (std::uint32_t position = threadIdx.x; position < length; position += blockDim.x) {
        visit(problem.key_at(row, position, first_row));
      }
    }
  }
};


// What runs after a group's results are written, in the block that wrote them (all its threads;
// the results in global memory are visible to them). The select kernels take one, so that a
// caller's use of the winners needs no launch of its own (the beam step's update).
struct NoEpilogue {
  __device__ void operator()(std::uint32_t /*group*/) const {}
};

template <class Epilogue>
__device__ void run_epilogue(const Epilogue& epilogue, std::uint32_t group) {
  if constexpr (!std::is_same_v<Epilogue, NoEpilogue>) {
    __syncthreads();  // the group's results, written by this block, are visible to all of it
    epilogue(group);
  }
}

// The low end of the range a select of filter survivors splits into bins: the group's bound, or,
// without one (1: the sample or the hints held fewer than the rank they need, so every candidate
// survived), the survivors' lowest key, measured by a pass over them. Split from 1, the whole key
// range, they fell into one or two bins (see hinted_sparse_select_kernel). Block-wide.
template <class ForEachKey>
__device__ CandidateKey survivors_low(CandidateKey bound, ForEachKey&& survivors, SelectShared& shared) {
  if (bound > 1) return bound;
  key_range(survivors, shared);
  return shared.low;
}

enum class SelectSource : std::uint8_t {
  input,              // select over the group's input (NoEarlyExit)
  survivors,          // filter survivors, all within [bounds[g], survivor_max[g]]
  candidate_buffer,   // an arbitrary key buffer (RowTopKThenMerge's row winners)
};

// One block per group. For filter survivors (all keys in [bound, max]) two passes suffice: the first
// histograms the top split_bits significant bits of (key - bound), which spreads the survivors over
// split_bins bins; the second takes every key above the bin of the k-th as a winner and keeps the
// boundary bin's few keys in shared memory, where the remaining rank is selected.
template <class T, class Epilogue>
__global__ void __launch_bounds__(select_threads, 1) select_kernel(DeviceProblem<T> problem, SelectSource source,
                                                                 const CandidateKey* bounds, const CandidateKey* survivor_max,
                                                                 const std::uint32_t* survivor_counts, const CandidateKey* survivors,
                                                                 std::size_t capacity, float* values, std::size_t values_stride,
                                                                 std::uint32_t* indices, std::size_t indices_stride,
                                                                 std::uint32_t* counts, GroupFlags flags, Epilogue epilogue) {
  ::xgr::detail::allow_dependent_launch();  // a consumer launched overlapping this kernel waits for it itself
  extern __shared__ CandidateKey boundary[];  // boundary_capacity keys
  __shared__ FinalShared shared;
  const std::uint32_t group = blockIdx.x;
  const std::uint32_t k = problem.k;
  if (threadIdx.x == 0) {
    shared.winners_found = 0;
    shared.boundary_found = 0;
  }
  for (int word = static_cast<int>(threadIdx.x); word < histogram_words; word += static_cast<int>(blockDim.x)) {
    shared.select.histogram[word] = 0;
  }
  if (!flags.on()) {
    ::xgr::detail::wait_for_prior_grid();  // launched overlapping the kernel that wrote its input
  } else if (threadIdx.x == 0) {
    // Only this group's inputs: its bound (for a group of no tiles too), then its tiles. A filter
    // block publishes its tiles as its last act, so once all of the group's are in, every write
    // of the call to the group's buffers is done and visible. When every group's select has
    // returned, every filter block has written all it writes, though some may not have exited.
    ::xgr::detail::await_count(&flags.bound_ready[group], 1);
    ::xgr::detail::await_count(&flags.tiles_filtered[group], (problem.group_end(group) - problem.group_begin(group)) * flags.tiles_per_row);
  }
  __syncthreads();

  // The usual case needs the survivors' count, bound and maximum and then the keys: the first
  // KeyArray::batch keys of each thread are requested together with the three (speculatively, up
  // to the buffer's capacity), so that they cost one round trip, not three in a row.
  const bool from_survivors = source == SelectSource::survivors;
  const std::uint32_t found = source == SelectSource::input ? 0 : survivor_counts[group];
  const CandidateKey bound = from_survivors ? bounds[group] : 0;
  const CandidateKey highest = from_survivors ? survivor_max[group] : 0;
  CandidateKey first_keys[KeyArray::batch];
#pragma unroll
  for (int j = 0; j < KeyArray::batch; ++j) {
    const std::size_t i = threadIdx.x + std::size_t{blockDim.x} * j;
    first_keys[j] = from_survivors && i < capacity ? survivors[group * capacity + i] : no_candidate;
  }
  // Fewer than k survivors under a bound above 1: the sample held more of the group's best than its
  // share and the bound overreached (or the group has fewer than k selectable candidates, of which
  // the sample still caught bound_rank: as unlikely; see bound_kernel).
  const bool overreached = from_survivors && found < k && bound > 1;
  bool written = false;  // the results are out (the binned ranking of staged survivors)
  if (source == SelectSource::input || found > capacity || overreached) {
    // No bound (baseline), survivors that overflowed their buffer, or too few of them: select over
    // the input itself.
    select_exact(GroupInputKeys<T>{problem, problem.group_begin(group), problem.group_end(group)}, k, shared);
  } else if (source == SelectSource::candidate_buffer) {
    select_exact(KeyArray{survivors + group * capacity, found}, k, shared);
  } else {
    const KeyArray keys{survivors + group * capacity, found};
    if (found <= k) {
      keys([&](CandidateKey key) { add_winner(shared, key, k); });
    } else if (found <= boundary_capacity) {
      // The usual case: few enough survivors to stage in shared memory, read from global once.
#pragma unroll
      for (int j = 0; j < KeyArray::batch; ++j) {
        const std::uint32_t i = threadIdx.x + j * blockDim.x;
        if (i < found) boundary[i] = first_keys[j];
      }
      for (std::uint32_t base = threadIdx.x + KeyArray::batch * blockDim.x; base < found; base += KeyArray::batch * blockDim.x) {
        CandidateKey loaded[KeyArray::batch];
#pragma unroll
        for (int j = 0; j < KeyArray::batch; ++j) {
          const std::uint32_t i = base + j * blockDim.x;
          loaded[j] = i < found ? keys.keys[i] : no_candidate;
        }
#pragma unroll
        for (int j = 0; j < KeyArray::batch; ++j) {
          if (base + j * blockDim.x < found) boundary[base + j * blockDim.x] = loaded[j];
        }
      }
      __syncthreads();
      const SharedKeyArray staged{boundary, found};
      const CandidateKey low = survivors_low(bound, staged, shared.select);
      // The histogram is still as the kernel's start cleared it.
      written = write_binned_top_k<select_threads>(boundary, found, boundary_capacity, k, low, highest, shared.select, group, values,
                                                   values_stride, indices, indices_stride, counts);
      if (!written) {
        const CandidateKey threshold = select_threshold(staged, k, shared.select, 0, true, low, highest);
        staged([&](CandidateKey key) {
          if (key >= threshold) add_winner(shared, key, k);
        });
      }
    } else {
      const CandidateKey low = survivors_low(bound, keys, shared.select);
      const CandidateKey high = highest;
      const SplitBins bins(low, high);
      const int shift = bins.shift;
      keys([&](CandidateKey key) { atomicAdd(&shared.select.histogram[histogram_slot(bins(key))], 1u); });
      __syncthreads();
      find_rank_bin<split_bins>(shared.select.histogram, k, shared.select.warp_totals, shared.select.choice);
      __syncthreads();
      const BinChoice split = shared.select.choice;
      __syncthreads();
      keys([&](CandidateKey key) {
        const std::uint32_t bin = bins(key);
        if (bin > split.bin) {
          add_winner(shared, key, k);
        } else if (bin == split.bin) {
          const std::uint32_t slot = atomicAdd(&shared.boundary_found, 1u);
          if (slot < boundary_capacity) boundary[slot] = key;
        }
      });
      __syncthreads();
      const std::uint32_t rank = k - split.above;
      const CandidateKey bin_low = low + (static_cast<CandidateKey>(split.bin) << shift);
      const CandidateKey bin_high = bin_low + ((CandidateKey{1} << shift) - 1) < high ? bin_low + ((CandidateKey{1} << shift) - 1) : high;
      if (split.in_bin <= boundary_capacity) {
        const KeyArray boundary_keys{boundary, split.in_bin};
        const CandidateKey threshold =
            split.in_bin == rank ? bin_low : select_threshold(boundary_keys, rank, shared.select, 0, true, bin_low, bin_high);
        boundary_keys([&](CandidateKey key) {
          if (key >= threshold) add_winner(shared, key, k);
        });
      } else {
        // A crowded boundary bin: exact select over that bin's keys in global memory.
        const auto in_boundary = [&](auto&& visit) {
          keys([&](CandidateKey key) { visit(key >= bin_low && key <= bin_high ? key : no_candidate); });
        };
        const CandidateKey threshold = select_threshold(in_boundary, rank, shared.select, 0, true, bin_low, bin_high);
        in_boundary([&](CandidateKey key) {
          if (key != no_candidate && key >= threshold) add_winner(shared, key, k);
        });
      }
    }
  }
  if (!written) write_ranked(shared, k, group, values, values_stride, indices, indices_stride, counts);
  run_epilogue(epilogue, group);
}

// ---- with score hints and a sparse mask: one kernel ------------------------------------------------
// The beam step's selection (hints, row score bounds, the allowed tokens as CSR) needs no sample,
// so one cluster of hinted_cluster_blocks blocks per group does it all, where the general path
// takes three launches and two trips through global memory (bound -> filter -> select):
//   1. the bound: every block selects the k-th best of the group's hints, as hint_bound_kernel;
//   2. the gather: the allowed entries of the rows whose score bound reaches it form one flat list
//      (a block-wide prefix sum over the rows' entry counts), split evenly over the cluster's
//      blocks; each thread finds an entry's row by a binary search (unrolled halving steps) over
//      the rows' first entries in shared memory, hinted_gather_batch entries in flight at once.
//      An entry's score is read beside its column where the caller wrote it there
//      (CallOptions::column_scores), else gathered from the scores row: one round trip or two.
//      Survivors are appended to the first block's shared memory (distributed shared memory;
//      hinted_staged_capacity keys), then to the workspace's survivor buffer;
//   3. after a cluster barrier, the first block selects the exact k-th and writes the winners in
//      order, as select_kernel.
// A cluster, not one block, for groups with many entries to gather: one block of 1,024 threads took
// a beam step over 1 x 512 beams of 1,220 children each from 52 to 289 us, a cluster of 8 to 95 us
// (H100). The general path's block per row is still faster there, so the beam step fuses only
// levels whose requests have few entries, or many requests that share the GPU (the scores beside
// the columns, BeamSearcher::fused_selection_pays). For those, 4 blocks gather a round trip's
// 16,384 entries, and clusters of 4 fit 32 requests at once where 8 did not. Too few survivors
// under a bound (hints that overreach) or more than both buffers hold (hints far below the k-th)
// fall back to a selection over the group's input: slower, still exact.
inline constexpr int hinted_threads = 512;
// Blocks a cluster, unless the caller picks (CallOptions::hinted_blocks_per_group, at most 8: the
// portable cluster size).
inline constexpr unsigned hinted_cluster_blocks = 4;  // 8 left 32 requests 2-13 % slower (H100)
inline constexpr unsigned max_hinted_cluster_blocks = 8;
inline constexpr int hinted_gather_batch = 8;
inline constexpr std::uint32_t hinted_staged_capacity = boundary_capacity;
static_assert(max_group_score_hints % hinted_threads == 0, "every block holds a group's hints");
static_assert((hinted_threads & (hinted_threads - 1)) == 0, "a chunk row is found by halving steps");

// Warp scans, then a scan of their sums: little shared memory.
using HintedScan = cub::BlockScan<std::uint32_t, hinted_threads, cub::BLOCK_SCAN_WARP_SCANS>;

struct HintedShared {
  FinalShared final;
  std::uint32_t entry_begin[hinted_threads];  // per row of the current chunk: its first entry in the flat list
  std::uint32_t row_entries[hinted_threads];  // ... and in the CSR columns (row_ptr)
  float row_offset[hinted_threads];
  HintedScan::TempStorage scan;
  std::uint32_t survivors;       // the first block's: the cluster's count
  std::uint32_t highest_score;   // the first block's: the largest survivor's ordered score
  std::uint32_t lowest_score;    // the first block's: the smallest one's, taken only without a bound
};

template <class T, class Epilogue>
__global__ void __launch_bounds__(hinted_threads, 2) hinted_sparse_select_kernel(DeviceProblem<T> problem, ScoreHints hints,
                                                                                 CandidateKey* spilled, std::size_t capacity,
                                                                                 float* values, std::size_t values_stride,
                                                                                 std::uint32_t* indices, std::size_t indices_stride,
                                                                                 std::uint32_t* counts, const float* column_scores,
                                                                                 Epilogue epilogue) {
  ::xgr::detail::allow_dependent_launch();  // a consumer launched overlapping this kernel waits for it itself
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace device = ::xgr::detail;
  extern __shared__ CandidateKey staged[];  // hinted_staged_capacity keys (used in the first block)
  __shared__ HintedShared shared;
  const unsigned rank = device::cluster_block_rank();
  const unsigned cluster_blocks = device::cluster_block_count();
  const std::uint32_t group = blockIdx.x / cluster_blocks;
  const std::uint32_t k = problem.k;
  const std::uint32_t first_row = problem.group_begin(group);
  const std::uint32_t end_row = problem.group_end(group);
  // The first block's survivor count, highest score and keys, as every block of the cluster sees them.
  const std::uint32_t leader_survivors = device::cluster_shared_address(&shared.survivors, 0);
  const std::uint32_t leader_highest = device::cluster_shared_address(&shared.highest_score, 0);
  const std::uint32_t leader_lowest = device::cluster_shared_address(&shared.lowest_score, 0);
  const std::uint32_t leader_staged = device::cluster_shared_address(staged, 0);
  if (rank == 0 && threadIdx.x == 0) {
    shared.final.winners_found = 0;
    shared.survivors = 0;
    shared.highest_score = 0;
    shared.lowest_score = ~0u;
  }
  if (rank == 0) {  // the select's first histogram (write_binned_top_k) expects it cleared
    for (int word = static_cast<int>(threadIdx.x); word < histogram_words; word += hinted_threads) shared.final.select.histogram[word] = 0;
  }
  device::wait_for_prior_grid();  // returns at once unless launched overlapping (FirstLaunch::overlapping)
  // A row's score bound, offset and entries: for the first chunk requested with the hints, so that
  // both round trips overlap.
  struct RowSpan {
    float best = -__builtin_huge_valf();
    float offset = 0.0f;
    std::uint32_t begin = 0;
    std::uint32_t length = 0;
  };
  const auto load_row = [&](std::uint32_t row) {
    RowSpan span;
    if (row < end_row) {
      span.best = problem.row_bounds[row];
      span.offset = problem.offset(row);
      span.begin = problem.row_ptr[row];
      span.length = problem.row_ptr[row + 1] - span.begin;
    }
    return span;
  };
  RowSpan span = load_row(first_row + threadIdx.x);
  const CandidateKey bound = hinted_bound<hinted_threads, max_group_score_hints / hinted_threads>(hints, first_row, end_row, k);
  device::cluster_sync();  // the first block's counters are set before any block appends

  const unsigned lane = threadIdx.x % 32;
  CandidateKey* const spill = spilled + group * capacity;
  // The chunk row holding flat entry e: the last row whose first entry is at or below e (rows
  // without entries share their successor's first entry). A fixed number of halving steps, so the
  // searches of a thread's batch overlap instead of running one loop after another, and none for
  // slots past the slice: at 8 x 256 beams a search loop per slot took 3.1 of the gather's 5.9 us
  // on an H100, these take 0.8.
  const auto chunk_row_of = [&](std::uint32_t e, std::uint32_t chunk_rows) {
    std::uint32_t row = 0;
#pragma unroll
    for (std::uint32_t step = hinted_threads / 2; step > 0; step /= 2) {
      if (row + step < chunk_rows && shared.entry_begin[row + step] <= e) row += step;
    }
    return row;
  };
  for (std::uint32_t chunk = first_row; chunk < end_row; chunk += hinted_threads) {
    if (chunk != first_row) span = load_row(chunk + threadIdx.x);
    const std::uint32_t length = score_bound_below(span.best, bound) ? 0u : span.length;
    std::uint32_t entry = 0;
    std::uint32_t chunk_entries = 0;  // every thread gets the total
    HintedScan(shared.scan).ExclusiveSum(length, entry, chunk_entries);
    shared.entry_begin[threadIdx.x] = entry;
    shared.row_entries[threadIdx.x] = span.begin;
    shared.row_offset[threadIdx.x] = span.offset;
    __syncthreads();
    const std::uint32_t chunk_rows = min(end_row - chunk, static_cast<std::uint32_t>(hinted_threads));
    // This block's slice of the chunk's entries.
    const std::uint64_t entries = chunk_entries;
    const auto slice_begin = static_cast<std::uint32_t>(entries * rank / cluster_blocks);
    const auto slice_end = static_cast<std::uint32_t>(entries * (rank + 1) / cluster_blocks);
    for (std::uint32_t base = slice_begin; base < slice_end; base += hinted_threads * hinted_gather_batch) {  // uniform trip count
      std::uint32_t slot[hinted_gather_batch];
      std::uint32_t column[hinted_gather_batch];
      float score[hinted_gather_batch];
#pragma unroll
      for (int j = 0; j < hinted_gather_batch; ++j) {
        const std::uint32_t e = base + j * hinted_threads + threadIdx.x;
        slot[j] = e < slice_end ? chunk_row_of(e, chunk_rows) : 0u;
        const std::uint32_t entry = shared.row_entries[slot[j]] + (e - shared.entry_begin[slot[j]]);
        column[j] = e < slice_end ? problem.columns[entry] : problem.vocab;
        if (column_scores != nullptr) score[j] = e < slice_end ? column_scores[entry] : 0.0f;
      }
      if (column_scores == nullptr) {
#pragma unroll
        for (int j = 0; j < hinted_gather_batch; ++j) {
          score[j] = column[j] < problem.vocab
                         ? to_float(problem.scores[(chunk + slot[j]) * problem.row_stride + column[j]]) + shared.row_offset[slot[j]]
                         : 0.0f;
        }
      }
#pragma unroll
      for (int j = 0; j < hinted_gather_batch; ++j) {
        if (base + j * hinted_threads >= slice_end) break;  // block-uniform: no thread has entry j or later
        const std::uint32_t row = chunk + slot[j];
        const CandidateKey key = column[j] < problem.vocab
                                     ? DeviceProblem<T>::candidate_key(score[j], (row - first_row) * problem.vocab + column[j])
                                     : no_candidate;
        const bool keep = key != no_candidate && key >= bound;
        // The warp's survivors take consecutive places, reserved with one atomic in the first block.
        std::uint32_t warp_total = 0;
        const std::uint32_t place = warp_reserve_with(
            [&](std::uint32_t total) { return device::cluster_atomic_add(leader_survivors, total); }, keep ? 1u : 0u, warp_total);
        if (warp_total == 0) continue;
        // The range the select splits needs an upper end: the largest ordered score (the key's
        // upper half) is enough. A 64-bit maximum of whole keys, from the other blocks of the
        // cluster, lost values on an H100.
        const std::uint32_t warp_highest = __reduce_max_sync(0xffffffffu, keep ? static_cast<std::uint32_t>(key >> 32) : 0u);
        if (lane == 0) device::cluster_atomic_max(leader_highest, warp_highest);
        if (bound <= 1) {  // cluster-uniform
          const std::uint32_t warp_lowest = __reduce_min_sync(0xffffffffu, keep ? static_cast<std::uint32_t>(key >> 32) : ~0u);
          if (lane == 0) device::cluster_atomic_min(leader_lowest, warp_lowest);
        }
        if (keep && place < hinted_staged_capacity) {
          device::cluster_store(leader_staged + place * static_cast<std::uint32_t>(sizeof(CandidateKey)), key);
        } else if (keep && place - hinted_staged_capacity < capacity) {
          spill[place - hinted_staged_capacity] = key;
        }
      }
    }
    __syncthreads();  // the chunk's rows are read before the next chunk overwrites them
  }
  device::cluster_sync();  // every survivor is in the first block (or the spill buffer)
  if (rank != 0) return;

  const std::uint32_t found = shared.survivors;
  bool written = false;  // the results are out (the binned ranking of staged survivors)
  // A bound above 1 promises k selectable candidates; fewer survivors mean the hints overreached.
  if ((found < k && bound > 1) || found > hinted_staged_capacity + capacity) {
    select_exact(GroupInputKeys<T>{problem, first_row, end_row}, k, shared.final);
  } else {
    const auto survivors = [&](auto&& visit) {
      SharedKeyArray{staged, min(found, hinted_staged_capacity)}(visit);
      if (found > hinted_staged_capacity) KeyArray{spill, found - hinted_staged_capacity}(visit);
    };
    const CandidateKey highest = (static_cast<CandidateKey>(shared.highest_score) << 32) | 0xffffffffu;
    // The range the bins split. Without a bound (hints that cannot number k, as a request's one
    // live beam at level 0 has) it is the survivors' own scores: split from 1, the whole key range,
    // every key fell into one or two bins, which kept the binned ranking out (a crowded bin) and
    // made the passes' shared atomics collide (H100, a level-0 step of 8 x 512 beams over 1,024
    // root children: 31.4 -> 24.5 us).
    const CandidateKey low = bound > 1 ? bound : static_cast<CandidateKey>(shared.lowest_score) << 32;  // found > k: a survivor's
    // Survivors all in shared memory: ranked by bins (the histogram was cleared at the start).
    written = found > k && found <= hinted_staged_capacity &&
              write_binned_top_k<hinted_threads>(staged, found, hinted_staged_capacity, k, low, highest, shared.final.select, group,
                                                 values, values_stride, indices, indices_stride, counts);
    if (!written) {
      const CandidateKey threshold = found <= k ? 0 : select_threshold(survivors, k, shared.final.select, 0, true, low, highest);
      survivors([&](CandidateKey key) {
        if (key >= threshold) add_winner(shared.final, key, k);
      });
    }
  }
  if (!written) write_ranked(shared.final, k, group, values, values_stride, indices, indices_stride, counts);
  run_epilogue(epilogue, group);
#endif
}

// ---- FullSort baseline kernels -----------------------------------------------------------------
// Writes every candidate position's key (no_candidate where none), group after group.
template <class T>
__global__ void segment_bounds_kernel(DeviceProblem<T> problem, std::size_t group_stride, std::uint32_t* segment_begin,
                                      std::uint32_t* segment_end) {
  for (std::uint32_t group = threadIdx.x; group < problem.groups; group += blockDim.x) {
    const std::uint32_t rows = problem.group_end(group) - problem.group_begin(group);
    segment_begin[group] = static_cast<std::uint32_t>(group * group_stride);
    segment_end[group] = static_cast<std::uint32_t>(group * group_stride + static_cast<std::size_t>(rows) * problem.vocab);
  }
}

template <class T>
__global__ void materialize_keys_kernel(DeviceProblem<T> problem, std::size_t group_stride, CandidateKey* keys) {
  const std::uint32_t group = blockIdx.y;
  const std::uint32_t first_row = problem.group_begin(group);
  const std::uint32_t end_row = problem.group_end(group);
  const std::uint64_t positions = static_cast<std::uint64_t>(end_row - first_row) * problem.vocab;
  CandidateKey* out = keys + group * group_stride;
  for (std::uint64_t position = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; position < positions;
       position += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const auto row = first_row + static_cast<std::uint32_t>(position / problem.vocab);
    const auto column = static_cast<std::uint32_t>(position % problem.vocab);
    CandidateKey key = no_candidate;
    if (problem.mask != MaskKind::bitset || problem.bit_allows(row, column)) {
      key = DeviceProblem<T>::candidate_key(to_float(problem.scores[row * problem.row_stride + column]) + problem.offset(row),
                                            static_cast<std::uint32_t>(position));
    }
    out[position] = key;
  }
}

// Sparse masks: scatter the allowed entries' keys into a no_candidate-filled key array.
template <class T>
__global__ void materialize_sparse_keys_kernel(DeviceProblem<T> problem, std::size_t group_stride, CandidateKey* keys) {
  const std::uint32_t row = blockIdx.x;
  const std::uint32_t group = problem.group_of_row(row);
  if (group >= problem.groups) return;
  const std::uint32_t first_row = problem.group_begin(group);
  const std::uint32_t length = problem.row_length(row);
  for (std::uint32_t position = threadIdx.x; position < length; position += blockDim.x) {
    const std::uint32_t column = problem.columns[problem.row_ptr[row] + position];
    if (column < problem.vocab) {
      keys[group * group_stride + (row - first_row) * problem.vocab + column] = problem.key_at(row, position, first_row);
    }
  }
}

// A template (like every kernel here) so that the header can be included by several translation units.
template <class Key>
__global__ void take_sorted_kernel(const Key* sorted, std::size_t group_stride, std::uint32_t k, float* values,
                                          std::size_t values_stride, std::uint32_t* indices, std::size_t indices_stride,
                                          std::uint32_t* counts, const std::uint32_t* segment_begin, const std::uint32_t* segment_end) {
  __shared__ std::uint32_t valid;
  const std::uint32_t group = blockIdx.x;
  if (threadIdx.x == 0) valid = 0;
  __syncthreads();
  const std::uint32_t length = segment_end[group] - segment_begin[group];
  for (std::uint32_t slot = threadIdx.x; slot < k; slot += blockDim.x) {
    const CandidateKey key = slot < length ? sorted[group * group_stride + slot] : no_candidate;
    const bool filled = key != no_candidate;
    values[group * values_stride + slot] = filled ? key_score(key) : -__builtin_huge_valf();
    indices[group * indices_stride + slot] = filled ? key_index(key) : empty_index;
    if (filled) atomicAdd(&valid, 1u);
  }
  __syncthreads();
  if (threadIdx.x == 0) counts[group] = valid;
}

// ---- workspace layouts -------------------------------------------------------------------------
[[nodiscard]] inline std::size_t group_candidates(const TopKLimits& limits) { return limits.max_rows_per_group * limits.max_vocab; }

// Sampling runs per group that a workspace for `limits` holds.
[[nodiscard]] inline std::size_t sample_slots(const TopKLimits& limits) { return sample_slots(group_candidates(limits), limits.max_k); }

// Survivor buffer per group. The bound sits near the sample's bound_rank-th best run, so about
// 5.5k candidates survive on usual inputs (k = 256); the buffer holds 4x what even the k-th best
// run would let through, k x (group / sampled positions) (at least what the select kernel stages
// in shared memory, at most the whole group, where it cannot overflow).
[[nodiscard]] inline std::size_t survivor_capacity(const TopKLimits& limits) {
  const std::size_t candidates = group_candidates(limits);
  const std::size_t sampled = std::max<std::size_t>(1, sample_slots(limits) * sample_run);
  const std::size_t expected = limits.max_k * ((candidates + sampled - 1) / sampled);
  return std::min(candidates, std::max(std::size_t{16384}, 4 * expected));
}

struct EarlyExitScratch {
  std::uint32_t* sampled;  // per group: the runs the sample blocks kept, for the bound
  CandidateKey* bounds;
  CandidateKey* survivor_max;
  std::uint32_t* survivor_counts;
  CandidateKey* survivors;
  std::uint32_t* bound_ready;     // GroupFlags, per group
  std::uint32_t* tiles_filtered;  // GroupFlags, per group
};

template <class Arena>
EarlyExitScratch carve(Arena& arena, const TopKLimits& limits, EarlyExit) {
  return {arena.template take<std::uint32_t>(limits.max_groups * bound_threads * bound_values_per_thread),
          arena.template take<CandidateKey>(limits.max_groups),
          arena.template take<CandidateKey>(limits.max_groups),
          arena.template take<std::uint32_t>(limits.max_groups),
          arena.template take<CandidateKey>(limits.max_groups * survivor_capacity(limits)),
          arena.template take<std::uint32_t>(limits.max_groups),
          arena.template take<std::uint32_t>(limits.max_groups)};
}

template <class Arena>
int carve(Arena&, const TopKLimits&, NoEarlyExit) {
  return 0;
}

struct FullSortScratch {
  CandidateKey* keys;
  CandidateKey* sorted;
  std::uint32_t* segment_begin;
  std::uint32_t* segment_end;
  void* cub_storage;
  std::size_t cub_bytes;
};

[[nodiscard]] inline std::size_t full_sort_cub_bytes(const TopKLimits& limits) {
  std::size_t bytes = 0;
  const std::size_t items = limits.max_groups * group_candidates(limits);
  XGR_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeysDescending(
      nullptr, bytes, static_cast<const CandidateKey*>(nullptr), static_cast<CandidateKey*>(nullptr), static_cast<int>(items),
      static_cast<int>(limits.max_groups), static_cast<const std::uint32_t*>(nullptr), static_cast<const std::uint32_t*>(nullptr)));
  return bytes;
}

template <class Arena>
FullSortScratch carve(Arena& arena, const TopKLimits& limits, FullSort) {
  const std::size_t items = limits.max_groups * group_candidates(limits);
  FullSortScratch scratch{arena.template take<CandidateKey>(items), arena.template take<CandidateKey>(items),
                          arena.template take<std::uint32_t>(limits.max_groups), arena.template take<std::uint32_t>(limits.max_groups),
                          nullptr, full_sort_cub_bytes(limits)};
  scratch.cub_storage = arena.template take<std::byte>(scratch.cub_bytes);
  return scratch;
}

struct RowMergeScratch {
  float* row_values;
  std::uint32_t* row_indices;
  std::uint32_t* row_counts;
  CandidateKey* merged;
  std::uint32_t* merged_counts;
  EarlyExitScratch per_row;
};

[[nodiscard]] inline TopKLimits per_row_limits(const TopKLimits& limits) {
  return {limits.max_rows, limits.max_rows, 1, limits.max_vocab, limits.max_k, limits.max_sparse_entries};
}

template <class Arena>
RowMergeScratch carve(Arena& arena, const TopKLimits& limits, RowTopKThenMerge) {
  return {arena.template take<float>(limits.max_rows * limits.max_k),
          arena.template take<std::uint32_t>(limits.max_rows * limits.max_k),
          arena.template take<std::uint32_t>(limits.max_rows),
          arena.template take<CandidateKey>(limits.max_groups * limits.max_rows_per_group * limits.max_k),
          arena.template take<std::uint32_t>(limits.max_groups),
          carve(arena, per_row_limits(limits), EarlyExit{})};
}

// Row winners of each group -> candidate keys of the group (flat index = row-in-group x vocab + column).
template <class T>
__global__ void gather_row_winners_kernel(DeviceProblem<T> problem, const float* row_values, const std::uint32_t* row_indices,
                                          const std::uint32_t* row_counts, std::size_t group_stride, CandidateKey* merged,
                                          std::uint32_t* merged_counts) {
  const std::uint32_t group = blockIdx.x;
  const std::uint32_t first_row = problem.group_begin(group);
  const std::uint32_t end_row = problem.group_end(group);
  const std::uint32_t k = problem.k;
  for (std::uint32_t slot = threadIdx.x; slot < (end_row - first_row) * k; slot += blockDim.x) {
    const std::uint32_t row = first_row + slot / k;
    const std::uint32_t rank = slot % k;
    CandidateKey key = no_candidate;
    if (rank < row_counts[row]) {
      key = make_key(row_values[row * k + rank], (row - first_row) * problem.vocab + row_indices[row * k + rank]);
    }
    merged[group * group_stride + slot] = key;
  }
  if (threadIdx.x == 0) merged_counts[group] = (end_row - first_row) * k;
}

template <class T>
DeviceProblem<T> device_problem(const TopKProblem<T>& problem) {
  return {problem.scores.data,
          problem.scores.row_stride,
          static_cast<std::uint32_t>(problem.rows()),
          static_cast<std::uint32_t>(problem.vocab()),
          static_cast<std::uint32_t>(problem.k),
          static_cast<std::uint32_t>(problem.groups()),
          problem.group_row_offsets.empty() ? nullptr : problem.group_row_offsets.data(),
          static_cast<std::uint32_t>(problem.group_row_offsets.empty() ? problem.rows_per_group : 0),
          problem.row_offsets.empty() ? nullptr : problem.row_offsets.data(),
          problem.row_score_bounds.empty() ? nullptr : problem.row_score_bounds.data(),
          problem.mask.kind,
          problem.mask.bits.data,
          problem.mask.bits.row_stride,
          problem.mask.row_ptr.empty() ? nullptr : problem.mask.row_ptr.data(),
          problem.mask.columns.empty() ? nullptr : problem.mask.columns.data()};
}

template <class T, class Epilogue = NoEpilogue>
void launch_select(const DeviceProblem<T>& problem, SelectSource source, const CandidateKey* bounds, const CandidateKey* survivor_max,
                   const std::uint32_t* survivor_counts, const CandidateKey* survivors, std::size_t capacity,
                   const TopKResult& result, cudaStream_t stream, const GroupFlags& flags = {}, const Epilogue& epilogue = {}) {
  constexpr std::size_t boundary_bytes = boundary_capacity * sizeof(CandidateKey);
  // Set on every launch, not once per process: without relocatable device code every translation
  // unit holds its own copy of select_kernel<T>, while a function-local static guard would be shared
  // by all of them and leave the other copies at the 48 KB default. The call is a cheap host call.
  XGR_CUDA_CHECK(
      cudaFuncSetAttribute(select_kernel<T, Epilogue>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(boundary_bytes)));
  ::xgr::detail::launch_overlapping(select_kernel<T, Epilogue>, problem.groups, select_threads, boundary_bytes, stream, problem, source, bounds,
                                    survivor_max, survivor_counts, survivors, capacity, result.values.data, result.values.row_stride,
                                    result.indices.data, result.indices.row_stride, result.counts.data(), flags, epilogue);
}

// The most candidate positions any group of this call can have (sizes the sample's grid).
template <class T>
[[nodiscard]] std::uint64_t max_group_positions(const TopKProblem<T>& problem, const TopKLimits& limits) {
  const std::uint64_t rows = problem.group_row_offsets.empty() ? problem.rows_per_group : limits.max_rows_per_group;
  const std::uint64_t positions = rows * problem.vocab();
  return problem.mask.kind == MaskKind::sparse ? std::min<std::uint64_t>(positions, problem.mask.columns.size()) : positions;
}

// Launches the sample and the bound. Returns `flags` where the one kernel of clusters takes them
// and hands each group's bound on through them, else no flags (every later kernel waits for the
// grid before it).
template <class T>
GroupFlags sample_and_bound(const DeviceProblem<T>& problem, std::uint64_t max_positions, const EarlyExitScratch& scratch,
                            cudaStream_t stream, bool fuse, const GroupFlags& flags) {
  const auto blocks_per_group = static_cast<std::uint32_t>(sample_slots(max_positions, problem.k) / sample_threads);
  const std::uint32_t kept_per_warp = sample_kept_per_warp(blocks_per_group, problem.k);
  // blocks x 8 warps x kept <= max(2 x 512, 2k + 512) for k <= 1024: within what the bound kernel holds.
  const std::uint32_t sampled_per_group = blocks_per_group * (sample_threads / 32) * kept_per_warp;
  // An ordinary launch: it starts after everything before it in the stream has finished, as a
  // caller of an asynchronous call expects. A programmatic launch would wait only for the kernel
  // just before it; had that kernel been let in early by its own predecessor without waiting for
  // it in every block, that predecessor could still be writing this call's input.
  // Sparse masks keep two kernels: one kernel was 1-6 % slower on their rows (H100, H200; not
  // profiled), where the dense rows it serves were 0-5 % faster.
  if (fuse && problem.mask != MaskKind::sparse && blocks_per_group <= max_sample_cluster_blocks &&
      ::xgr::detail::cluster_launch_supported()) {
    ::xgr::detail::launch_with(::xgr::detail::LaunchOptions{.cluster_blocks = blocks_per_group}, sample_bound_kernel<T>,
                               problem.groups * blocks_per_group, sample_threads, 0, stream, problem, blocks_per_group, kept_per_warp,
                               scratch.bounds, scratch.survivor_max, scratch.survivor_counts, flags);
    XGR_CUDA_CHECK_LAUNCH();
    return flags;
  }
  sample_kernel<T><<<problem.groups * blocks_per_group, sample_threads, 0, stream>>>(problem, blocks_per_group, kept_per_warp,
                                                                                    scratch.sampled);
  XGR_CUDA_CHECK_LAUNCH();
  // The bound, filter and select kernels start overlapping the kernel before them (see
  // launch_overlapping): launch latency is hidden, the filter's first tiles load during the bound,
  // and the select's blocks are resident before the streamed filter's last blocks end. A kernel
  // lets the next one in early (allow_dependent_launch) where that was measured to pay; every
  // block of every one of them waits for the kernel before it before reading its output, so each
  // kernel's end implies its predecessors' too.
  // A block just large enough to hold the kept runs: the bound is a handful of block-wide passes,
  // and idle warps only add to every barrier and histogram sweep.
  const bool small_bound = sampled_per_group <= small_bound_threads * bound_values_per_thread;
  ::xgr::detail::launch_overlapping(small_bound ? bound_kernel<small_bound_threads, T> : bound_kernel<bound_threads, T>, problem.groups,
                                    small_bound ? small_bound_threads : bound_threads, 0, stream, problem, blocks_per_group,
                                    scratch.sampled, sampled_per_group, scratch.bounds, scratch.survivor_max, scratch.survivor_counts);
  return {};
}

// Whether the dense or bitset filter of this call streams its tiles through shared memory
// (filter_stream_kernel). It pays where its early ring hides the sample and the bound: fp32 rows
// of at least a whole tile and no row score bounds (which would make the ring wait for the bound).
// With shorter tiles (bf16 / fp16, short rows) and with rows skipped by their score bound,
// short-lived blocks were faster.
template <class T>
[[nodiscard]] bool filter_streams(const DeviceProblem<T>& problem) {
  if constexpr (sizeof(T) != 4) {
    return false;
  } else {
    const bool aligned = reinterpret_cast<std::uintptr_t>(problem.scores) % 16 == 0 && (problem.row_stride * sizeof(T)) % 16 == 0;
    return problem.mask != MaskKind::sparse && aligned && problem.vocab >= filter_tile && problem.vocab % 4 == 0 &&
           problem.row_bounds == nullptr && ::xgr::detail::overlapping_launch_supported();
  }
}

// The filter and the select, launched overlapping the kernel that wrote the bounds. `flags` (only
// where the filter streams) hand the bounds and the survivors on group by group.
template <class T, class Epilogue = NoEpilogue>
void launch_filter_and_select(const DeviceProblem<T>& problem, const EarlyExitScratch& scratch, std::size_t capacity,
                              const TopKResult& result, cudaStream_t stream, SparseRows sparse_rows, const GroupFlags& flags,
                              const Epilogue& epilogue = {}) {
  bool streamed = false;
  if (problem.mask == MaskKind::sparse) {
    const auto launch = [&](auto kernel, std::uint32_t rows_per_block) {
      ::xgr::detail::launch_overlapping(kernel, (problem.rows + rows_per_block - 1) / rows_per_block, filter_threads, 0, stream, problem,
                                        scratch.bounds, scratch.survivor_max, scratch.survivor_counts, scratch.survivors, capacity);
    };
    if (sparse_rows == SparseRows::warp) {
      launch(filter_sparse_kernel<32, T>, filter_threads / 32);
    } else {
      launch(filter_sparse_kernel<filter_threads, T>, 1);
    }
  } else {
    const std::uint32_t tiles_per_row = (problem.vocab + filter_tile - 1) / filter_tile;
    const std::uint32_t tiles = problem.rows * tiles_per_row;
    const bool aligned = reinterpret_cast<std::uintptr_t>(problem.scores) % 16 == 0 && (problem.row_stride * sizeof(T)) % 16 == 0;
    if constexpr (sizeof(T) == 4) {
      if (filter_streams(problem)) {
        const int multiprocessors = ::xgr::detail::multiprocessor_count();
        constexpr std::size_t ring_bytes = stream_stages<T> * filter_tile * sizeof(T);
        // Set on every launch, like select_kernel's (see launch_select).
        XGR_CUDA_CHECK(
            cudaFuncSetAttribute(filter_stream_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(ring_bytes)));
        const std::uint32_t blocks = std::min<std::uint32_t>(tiles, static_cast<std::uint32_t>(multiprocessors * stream_blocks_per_sm));
        // A bitset's words for a tile come with its scores when they can be bulk-copied: 16-byte
        // aligned rows of words, and whole 16-byte pieces of them per tile (vocab a multiple of 128).
        const bool stage_mask = problem.mask == MaskKind::bitset && reinterpret_cast<std::uintptr_t>(problem.mask_bits) % 16 == 0 &&
                                problem.mask_row_words % 4 == 0 && problem.vocab % 128 == 0;
        ::xgr::detail::launch_overlapping(filter_stream_kernel<T>, blocks, filter_threads, ring_bytes, stream, problem, tiles_per_row,
                                          tiles, stage_mask, scratch.bounds, scratch.survivor_max, scratch.survivor_counts,
                                          scratch.survivors, capacity, flags);
        streamed = true;
      }
    }
    if (!streamed && aligned) {
      ::xgr::detail::launch_overlapping(filter_dense_kernel<16 / sizeof(T), T, filter_blocks_per_sm>, tiles, filter_threads, 0, stream,
                                        problem, tiles_per_row, scratch.bounds, scratch.survivor_max, scratch.survivor_counts,
                                        scratch.survivors, capacity);
    } else if (!streamed) {
      ::xgr::detail::launch_overlapping(filter_dense_kernel<1, T>, tiles, filter_threads, 0, stream, problem, tiles_per_row, scratch.bounds,
                                        scratch.survivor_max, scratch.survivor_counts, scratch.survivors, capacity);
    }
  }
  // Only the streamed filter publishes its tiles: a select waiting on flags behind any other
  // filter would never start.
  if (flags.on() && !streamed) throw Error(ErrorKind::internal, "masked_topk(cuda)", "group flags without the streamed filter");
  launch_select(problem, SelectSource::survivors, scratch.bounds, scratch.survivor_max, scratch.survivor_counts, scratch.survivors,
                capacity, result, stream, flags, epilogue);
}

// How a call's first kernel follows the work before it in the stream. `ordered` (every public
// call): after all of it has finished. `overlapping`: as a programmatic dependent launch of the
// kernel just before it, for a caller whose previous kernel waits for its own predecessors in every
// block (so that its end implies theirs); the fused hinted kernel takes it, the others start ordered.
enum class FirstLaunch : std::uint8_t { ordered, overlapping };

// What a caller inside the library may choose beyond masked_topk's arguments (its defaults are
// masked_topk's).
struct CallOptions {
  FirstLaunch first_launch = FirstLaunch::ordered;
  // Calls with hints, a sparse mask and row bounds: the fused kernel (hinted_sparse_select_kernel)
  // or the general path. The fused kernel gathers a group's entries with one cluster, the general
  // filter with a block per row: a caller that expects many entries per group (long rows of
  // allowed columns) passes false.
  bool fuse_hinted = true;
  // Groups sampled by at most max_sample_cluster_blocks blocks: sample and bound in one kernel of
  // clusters (sample_bound_kernel), or in two kernels (false: the path of larger groups, for tests).
  bool fuse_sample_bound = true;
  // The fused sample, the streamed filter and the select hand each group's bound and survivors on
  // through flags in the workspace (GroupFlags, true), or wait for the whole kernel before them.
  // Off until it has been measured on a GPU (docs/benchmarks/topk.md, 2026-12-08).
  bool group_flags = false;
  // With the sparse mask: each allowed entry's score, the row's offset included, at the entry's
  // place in the CSR columns (exactly scores[row][column] + offset[row] as a float addition). The
  // fused kernel then reads a survivor's score next to its column instead of gathering it from the
  // scores row, one round trip instead of two. Null: gathered.
  const float* column_scores = nullptr;
  // The fused kernel's blocks per group (its cluster's size), 1 to max_hinted_cluster_blocks.
  unsigned hinted_blocks_per_group = hinted_cluster_blocks;
  // The general path's sparse filter: a block or a warp a row. A caller that knows its live rows and
  // their entries picks with sparse_warp_rows_pay (the beam step does). masked_topk keeps blocks:
  // with warps wherever that rule picks them, its sparse benchmark rows of 8,192 or more rows of 82
  // entries, and of 4,096 or more of 328, took 1.05-1.09x the time (H100, docs/benchmarks/topk.md,
  // 2026-12-07; not profiled).
  SparseRows sparse_rows = SparseRows::block;
};

// The call's last kernel runs `epilogue`.
template <class T, class Epilogue = NoEpilogue>
void run_early_exit(const DeviceProblem<T>& problem, std::uint64_t max_positions, const ScoreHints& hints,
                    const EarlyExitScratch& scratch, std::size_t capacity, const TopKResult& result, cudaStream_t stream,
                    const CallOptions& options = {}, const Epilogue& epilogue = {}) {
  if (options.fuse_hinted && hints.data != nullptr && problem.mask == MaskKind::sparse && problem.row_bounds != nullptr &&
      ::xgr::detail::cluster_launch_supported()) {
    require_argument(options.hinted_blocks_per_group >= 1 && options.hinted_blocks_per_group <= max_hinted_cluster_blocks,
                     "masked_topk(cuda)", "the fused kernel's cluster takes 1 to 8 blocks");
    // Hints, a sparse mask and row bounds: one kernel of clusters (compute capability 9.0+).
    constexpr std::size_t staged_bytes = hinted_staged_capacity * sizeof(CandidateKey);
    // Set on every launch, like select_kernel's (see launch_select).
    XGR_CUDA_CHECK(cudaFuncSetAttribute(hinted_sparse_select_kernel<T, Epilogue>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(staged_bytes)));
    const ::xgr::detail::LaunchOptions launch{.overlapping = options.first_launch == FirstLaunch::overlapping,
                                              .cluster_blocks = options.hinted_blocks_per_group};
    ::xgr::detail::launch_with(launch, hinted_sparse_select_kernel<T, Epilogue>, problem.groups * options.hinted_blocks_per_group, hinted_threads,
                               staged_bytes, stream, problem, hints, scratch.survivors, capacity, result.values.data,
                               result.values.row_stride, result.indices.data, result.indices.row_stride, result.counts.data(),
                               options.column_scores, epilogue);
    XGR_CUDA_CHECK_LAUNCH();
    return;
  }
  GroupFlags flags{};
  if (hints.data != nullptr) {
    // The caller's hints replace the sample and the bound kernels. An ordinary launch, like the
    // sample kernel's (see sample_and_bound).
    static_assert(bound_threads * bound_values_per_thread >= max_group_score_hints);
    const bool small_bound = hints.max_per_group <= small_bound_threads * bound_values_per_thread;
    const auto kernel = small_bound ? hint_bound_kernel<small_bound_threads, T> : hint_bound_kernel<bound_threads, T>;
    kernel<<<problem.groups, small_bound ? small_bound_threads : bound_threads, 0, stream>>>(problem, hints, scratch.bounds,
                                                                                         scratch.survivor_max, scratch.survivor_counts);
    XGR_CUDA_CHECK_LAUNCH();
  } else {
    GroupFlags wanted{};
    if (options.group_flags && filter_streams(problem)) {
      wanted = GroupFlags{scratch.bound_ready, scratch.tiles_filtered, (problem.vocab + filter_tile - 1) / filter_tile};
    }
    flags = sample_and_bound(problem, max_positions, scratch, stream, options.fuse_sample_bound, wanted);
  }
  launch_filter_and_select(problem, scratch, capacity, result, stream, options.sparse_rows, flags, epilogue);
}

}  // namespace topk::cuda_detail

// Scratch bytes the CUDA implementation needs for any problem within `limits`.
template <class Policy = topk::EarlyExit>
[[nodiscard]] std::size_t masked_topk_workspace_bytes(exec::cuda, const TopKLimits& limits) {
  detail::validate_limits(limits);
  return workspace_bytes_of([&](WorkspaceArena& arena) { (void)topk::cuda_detail::carve(arena, limits, Policy{}); });
}

namespace topk::cuda_detail {

// masked_topk(exec::cuda, ...) with CallOptions and an epilogue (see NoEpilogue). Returns whether
// the epilogue ran on the device, in the kernel that wrote the results (EarlyExit, NoEarlyExit); if
// not, the caller runs it.
template <class Policy, Element T, class Epilogue = NoEpilogue>
bool enqueue_masked_topk(exec::cuda exec, const TopKProblem<T>& problem, const TopKResult& result, const TopKLimits& limits,
                         DeviceWorkspace& workspace, const CallOptions& options, const Epilogue& epilogue = {});

}  // namespace topk::cuda_detail

// Enqueues MaskedTopK on `exec.stream`; returns without synchronising. Inputs, outputs and the
// workspace live in device memory. Preconditions the device cannot check cheaply (group offsets
// non-decreasing, sparse columns unique within a row) are the caller's; violating them never
// reads or writes out of bounds, but the results are then unspecified. The host reference checks them.
template <class Policy = topk::EarlyExit, Element T>
void masked_topk(exec::cuda exec, const TopKProblem<T>& problem, const TopKResult& result, const TopKLimits& limits,
                 DeviceWorkspace& workspace) {
  topk::cuda_detail::enqueue_masked_topk<Policy>(exec, problem, result, limits, workspace, topk::cuda_detail::CallOptions{});
}

template <class Policy, Element T, class Epilogue>
bool topk::cuda_detail::enqueue_masked_topk(exec::cuda exec, const TopKProblem<T>& problem, const TopKResult& result,
                                            const TopKLimits& limits, DeviceWorkspace& workspace, const CallOptions& options,
                                            const Epilogue& epilogue) {
  ::xgr::detail::validate_shape(problem, result, limits);
  workspace.require(masked_topk_workspace_bytes<Policy>(exec, limits), "masked_topk(cuda)");
  const std::size_t groups = problem.groups();
  if (groups == 0) return false;
  const auto device = topk::cuda_detail::device_problem(problem);
  WorkspaceArena arena = workspace.arena();
  const auto scratch = topk::cuda_detail::carve(arena, limits, Policy{});
  cudaStream_t stream = exec.stream;

  if constexpr (std::is_same_v<Policy, topk::EarlyExit>) {
    const topk::cuda_detail::ScoreHints hints{
        problem.row_score_hints.cols != 0 ? problem.row_score_hints.data : nullptr, problem.row_score_hints.row_stride,
        static_cast<std::uint32_t>(problem.row_score_hints.cols),
        static_cast<std::uint32_t>(limits.max_rows_per_group * problem.row_score_hints.cols)};
    topk::cuda_detail::run_early_exit(device, topk::cuda_detail::max_group_positions(problem, limits), hints, scratch,
                                      topk::cuda_detail::survivor_capacity(limits), result, stream, options, epilogue);
    return true;
  } else if constexpr (std::is_same_v<Policy, topk::NoEarlyExit>) {
    topk::cuda_detail::launch_select(device, topk::cuda_detail::SelectSource::input, nullptr, nullptr, nullptr, nullptr, 0, result,
                                     stream, {}, epilogue);
    return true;
  } else if constexpr (std::is_same_v<Policy, topk::FullSort>) {
    const std::size_t group_stride = topk::cuda_detail::group_candidates(limits);
    require_argument(groups * group_stride <= static_cast<std::size_t>(std::numeric_limits<int>::max()), "masked_topk(cuda, FullSort)",
                     "CUB's segmented sort takes at most 2^31 - 1 keys");
    topk::cuda_detail::segment_bounds_kernel<T><<<1, 256, 0, stream>>>(device, group_stride, scratch.segment_begin, scratch.segment_end);
    XGR_CUDA_CHECK_LAUNCH();
    if (problem.mask.kind == MaskKind::sparse) {
      XGR_CUDA_CHECK(cudaMemsetAsync(scratch.keys, 0, groups * group_stride * sizeof(topk::CandidateKey), stream));
      topk::cuda_detail::materialize_sparse_keys_kernel<T><<<device.rows, 256, 0, stream>>>(device, group_stride, scratch.keys);
    } else {
      const dim3 grid(static_cast<unsigned>(std::min<std::size_t>((group_stride + 255) / 256, 4096)), static_cast<unsigned>(groups));
      topk::cuda_detail::materialize_keys_kernel<T><<<grid, 256, 0, stream>>>(device, group_stride, scratch.keys);
    }
    XGR_CUDA_CHECK_LAUNCH();
    std::size_t cub_bytes = scratch.cub_bytes;
    XGR_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeysDescending(
        scratch.cub_storage, cub_bytes, scratch.keys, scratch.sorted, static_cast<int>(groups * group_stride), static_cast<int>(groups),
        scratch.segment_begin, scratch.segment_end, 0, 64, stream));
    topk::cuda_detail::take_sorted_kernel<topk::CandidateKey><<<static_cast<unsigned>(groups), 256, 0, stream>>>(
        scratch.sorted, group_stride, device.k, result.values.data, result.values.row_stride, result.indices.data,
        result.indices.row_stride, result.counts.data(), scratch.segment_begin, scratch.segment_end);
    XGR_CUDA_CHECK_LAUNCH();
  } else {
    static_assert(std::is_same_v<Policy, topk::RowTopKThenMerge>, "unknown MaskedTopK policy");
    // 1) each row its own group: exact top-k per row.
    TopKProblem<T> per_row = problem;
    per_row.group_row_offsets = {};
    per_row.rows_per_group = 1;
    const TopKLimits row_limits = topk::cuda_detail::per_row_limits(limits);
    const std::size_t k = problem.k;
    const TopKResult row_result{MatrixView<float>{scratch.row_values, problem.rows(), k, k},
                                MatrixView<std::uint32_t>{scratch.row_indices, problem.rows(), k, k},
                                std::span<std::uint32_t>(scratch.row_counts, problem.rows())};
    topk::cuda_detail::run_early_exit(topk::cuda_detail::device_problem(per_row),
                                      topk::cuda_detail::max_group_positions(per_row, row_limits), {}, scratch.per_row,
                                      topk::cuda_detail::survivor_capacity(row_limits), row_result, stream);
    // 2) merge: the group's top-k among its rows' winners.
    const std::size_t group_stride = limits.max_rows_per_group * limits.max_k;
    topk::cuda_detail::gather_row_winners_kernel<T><<<static_cast<unsigned>(groups), 256, 0, stream>>>(
        device, scratch.row_values, scratch.row_indices, scratch.row_counts, group_stride, scratch.merged, scratch.merged_counts);
    XGR_CUDA_CHECK_LAUNCH();
    topk::cuda_detail::launch_select(device, topk::cuda_detail::SelectSource::candidate_buffer, nullptr, nullptr, scratch.merged_counts,
                                     scratch.merged, group_stride, result, stream);
  }
  return false;
}

}  // namespace xgr
