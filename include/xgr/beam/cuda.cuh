// xgr/beam/cuda.cuh — the CUDA BeamSearcher (see beam.hpp for the contract, host.hpp for the
// reference it reproduces bit for bit).
//
// One step is a handful of launches on the caller's stream, none of which waits for the host:
//
//   1. allowed sets   from the trie, for every live beam (Filter policy): the CSR offsets (one
//                     small launch; normalize writes the tokens) or a dense bitset (one launch, the
//                     baseline).
//   2. normalize      one block per live beam (a warp per beam for rows of up to 1,024 columns)
//                     reads its logits row once (kept in registers for rows up to 8,192 columns)
//                     for the max and the fixed-point sum of exps; writes the beam's offset
//                     s_b - lse_b and its *score bound*: the best allowed logit plus the offset, an
//                     exact upper bound of every candidate of the beam. Walking the beam's children
//                     for that bound, it writes their tokens into the CSR mask. For EarlyExit it
//                     also writes a few score hints, scores of distinct candidates, from which
//                     MaskedTopK takes each request's bound instead of sampling the logits, and,
//                     where the selection is fused, each child's score beside its token.
//   3. select         MaskedTopK over each request's beams x vocab candidates with those offsets, the
//                     allowed sets as mask and the bounds for early exit: beams whose best candidate
//                     cannot beat the request's k-th bound are never read again.
//                     One clustered kernel per request reads the scores written beside the tokens
//                     where that pays (BeamSearcher::fused_selection_pays: few children a request,
//                     or many requests to share the GPU); otherwise the hint bound, a filter block
//                     per beam and the select.
//                     With a per-beam cap K < B, a per-row MaskedTopK first keeps each beam's K best.
//   4. update         per request, the winners become beams: parent, token, score, trie child
//                     (ItemTrieView::child), token history, ancestry. With EarlyExit and
//                     NoEarlyExit it is the selection's epilogue, run by the block that wrote the
//                     request's winners; otherwise a launch of its own.
//
// Normalize, the fused selection and a separate update are programmatic dependent launches of the
// kernel before them (detail::launch_overlapping): their blocks become resident while that kernel
// finishes and wait for it before reading its output. Every block of every such kernel waits, so
// each kernel's end implies its predecessors' too.
//
// State lives in two device buffers per quantity (current / next), flipped per step, so a step
// never reads what it writes. Every buffer and the selection workspace are allocated once, in the
// constructor, for BeamConfig's maxima.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "xgr/beam/beam.hpp"
#include "xgr/beam/host.hpp"  // the reference, so that one include gives both
#include "xgr/core/cuda.cuh"
#include "xgr/core/dtype.hpp"
#include "xgr/core/workspace.hpp"
#include "xgr/items/cuda.cuh"
#include "xgr/topk/cuda.cuh"

namespace xgr {
namespace beam::cuda_detail {

inline constexpr int normalize_threads = 256;
inline constexpr int update_threads = 256;
inline constexpr int small_kernel_threads = 256;  // begin and finalize
// Every kernel is a template (on its block size or element type) so that this header can be
// included by several translation units of one program without duplicate definitions.

template <class T>
__device__ __forceinline__ float load_logit(const T* row, std::uint32_t column) {
  return to_float(row[column]);
}

// A row is normalised by a block or, where the caller asks for rows of up to 1,024 columns, by a
// warp, 8 to a block (a block of 256 threads over a 4 KB row spends most of its life in barriers
// and fixed latencies). Either way a row's reductions go through row_partials slots: a block row's 8
// warps, or a warp row's 8 lane groups (lanes p, p + 8, p + 16, p + 24), each group one partial.
// The score hints below take the best-allowed reduction's partials, disjoint sets of children.
inline constexpr int row_partials = 8;
static_assert(normalize_threads / 32 == row_partials, "a block row's warps are its partials");

// The row's reduction of `value` under `combine` (max_ignoring_nan or +), with one barrier: `slots`
// must serve no other reduction of the row, since nothing waits for its readers before it could be
// written again. A row has slots of its own for each of its reductions, and no warp waits at a
// second barrier for the slowest to have read. Leaves each partial in slots[p].
template <int RowThreads, class V, class Combine>
__device__ __forceinline__ V row_reduce(V value, V* slots, Combine combine) {
  static_assert(RowThreads == 32 || RowThreads == normalize_threads, "a row is a warp or the block");
  constexpr int last_mask = RowThreads == 32 ? row_partials : 1;  // a warp row stops at its lane groups (lanes p mod 8)
  for (int lane_mask = 16; lane_mask >= last_mask; lane_mask /= 2) value = combine(value, __shfl_xor_sync(0xffffffffu, value, lane_mask));
  const unsigned lane = threadIdx.x % 32;
  if constexpr (RowThreads == 32) {
    if (lane < row_partials) slots[lane] = value;
    __syncwarp();
  } else {
    if (lane == 0) slots[threadIdx.x / 32] = value;
    __syncthreads();
  }
  V result = slots[0];
  for (int partial = 1; partial < row_partials; ++partial) result = combine(result, slots[partial]);  // sums are integers: order-free
  return result;
}

struct MaxIgnoringNan {
  __device__ float operator()(float a, float b) const { return max_ignoring_nan(a, b); }
};
struct FixedSum {
  __device__ std::uint64_t operator()(std::uint64_t a, std::uint64_t b) const { return a + b; }
};

// Score hints for the selection's bound, from what the normalisation sees anyway (EarlyExit without
// a binding per-beam cap): each row writes `per_row` hints, hint h the best candidate score among
// the children walked by partials h, h + per_row, ... (the best-allowed reduction leaves each
// partial's best in its slots), or -inf where those had none. They are scores of different
// candidates, so MaskedTopK takes the k-th best of a request's as a bound that k candidates reach
// (TopKProblem::row_score_hints) and samples nothing.
// Hints a row writes, for beams up to `max_beam_width` wide: one per partial, as many as a
// request's may number (max_group_score_hints).
[[nodiscard]] constexpr std::uint32_t score_hints_per_row(std::size_t max_beam_width) {
  const std::size_t fit = max_group_score_hints / max_beam_width;
  return static_cast<std::uint32_t>(fit >= row_partials ? row_partials : fit);
}

// Null `hints`: not wanted. The row's threads below `per_row` write; `partial_best` must be
// readable by all of them.
__device__ inline void write_score_hints(float* hints, std::uint32_t per_row, std::uint32_t row, std::uint32_t thread,
                                         const float* partial_best, float offset) {
  if (hints == nullptr || thread >= per_row) return;
  float best = -__builtin_huge_valf();
  for (std::uint32_t partial = thread; partial < row_partials; partial += per_row) best = max_ignoring_nan(best, partial_best[partial]);
  const float score = best + offset;  // the candidate's score exactly as MaskedTopK forms it
  hints[static_cast<std::size_t>(row) * per_row + thread] = topk::is_selectable(score) ? score : -__builtin_huge_valf();
}

// Per live beam: offset = s_b - lse_b and bound = best allowed logit + offset (-inf when nothing is
// selectable). Dead slots get bound -inf so the selection skips them without reading.
// A row is RowThreads threads (a warp or the block; normalize_threads / RowThreads rows a block).
// Rows of up to RowThreads x Cached normalised columns stay in registers between the max and the
// sum, so the logits are read from memory once; longer rows (Cached = 0) are read twice, the second
// time mostly from L2. With Vectorized, the normalised columns start 16-byte aligned and number a
// multiple of RowThreads x (16 / sizeof(T)): 16-byte loads, no per-element checks.
// Everything a row needs besides its logits (its beam score, its children's range and first
// tokens) is requested before them, so those round trips overlap the row's instead of following
// it: a block is short-lived and its fixed latencies are a good part of its life.
template <int RowThreads, int Cached, bool Vectorized, class T>
__global__ void __launch_bounds__(normalize_threads) normalize_kernel(MatrixView<const T> logits, ItemTrieView trie,
                                                                     const std::uint32_t* nodes, const float* beam_scores,
                                                                     std::uint32_t norm_begin, std::uint32_t norm_end,
                                                                     std::uint32_t token_offset, float* offsets, float* bounds,
                                                                     const std::uint32_t* row_ptr, std::uint32_t* columns,
                                                                     float* column_scores, float* score_hints,
                                                                     std::uint32_t hints_per_row, std::uint32_t rows) {
  constexpr int rows_per_block = normalize_threads / RowThreads;
  __shared__ float max_shared[rows_per_block][row_partials];  // the row's maximum
  __shared__ std::uint64_t sum_shared[rows_per_block][row_partials];
  __shared__ float best_shared[rows_per_block][row_partials];  // the best allowed logit, read again by the hints
  // (Spelt out for block rows: the compiler does not know that threadIdx.x < normalize_threads.)
  const std::uint32_t row_in_block = rows_per_block == 1 ? 0 : threadIdx.x / RowThreads;
  const std::uint32_t thread = rows_per_block == 1 ? threadIdx.x : threadIdx.x % RowThreads;  // the thread's place in its row
  const std::uint32_t row = blockIdx.x * rows_per_block + row_in_block;
  constexpr float negative_infinity = -__builtin_huge_valf();
  // Every row waits for the scan before it ends, so that this kernel's end implies the scan's: a
  // programmatic launch after it (NoEarlyExit's select) waits for this kernel only.
  if (RowThreads == 32 && row >= rows) {  // a warp past the last row (block rows: the grid is the rows)
    ::xgr::detail::wait_for_prior_grid();
    return;
  }
  const std::uint32_t node = nodes[row];
  if (node == no_trie_node) {
    if (thread == 0) {
      offsets[row] = 0.0f;
      bounds[row] = negative_infinity;
    }
    ::xgr::detail::wait_for_prior_grid();
    if (score_hints != nullptr && thread < hints_per_row) score_hints[row * hints_per_row + thread] = negative_infinity;
    return;
  }
  const float beam_score = beam_scores[row];
  const std::uint32_t first_child = trie.children_begin(node);
  const std::uint32_t child_count = trie.children_end(node) - first_child;
  const T* logit_row = logits.row(row);
  float local_max = negative_infinity;
  float cached[Cached > 0 ? Cached : 1];
  if constexpr (Vectorized) {
    constexpr int vector = 16 / sizeof(T);
    static_assert(Cached % vector == 0, "a thread caches whole vectors");
    const auto* source = reinterpret_cast<const ::xgr::detail::VectorOf<vector, T>*>(logit_row + norm_begin);
    const std::uint32_t row_vectors = (norm_end - norm_begin) / vector;  // a multiple of the row's threads: uniform checks
#pragma unroll
    for (int j = 0; j < Cached / vector; ++j) {
      const std::uint32_t index = j * RowThreads + thread;
      ::xgr::detail::VectorOf<vector, T> loaded{};
      if (index < row_vectors) loaded = source[index];
#pragma unroll
      for (int e = 0; e < vector; ++e) cached[j * vector + e] = index < row_vectors ? to_float(loaded.element[e]) : negative_infinity;
    }
  } else if constexpr (Cached > 0) {
#pragma unroll
    for (int i = 0; i < Cached; ++i) {
      const std::uint32_t column = norm_begin + thread + i * RowThreads;
      cached[i] = column < norm_end ? load_logit(logit_row, column) : negative_infinity;  // -inf adds 0 to the sum
    }
  }
  // The first child token of each thread, requested while the row is in flight.
  const std::uint32_t first_token = thread < child_count ? token_offset + trie.node_code[first_child + thread] : 0;
  if constexpr (Cached > 0) {
#pragma unroll
    for (int i = 0; i < Cached; ++i) local_max = fmaxf(local_max, cached[i]);  // = max_ignoring_nan up to the sign of a zero, which lse and the offset do not see
  } else {
    for (std::uint32_t column = norm_begin + thread; column < norm_end; column += RowThreads) {
      local_max = max_ignoring_nan(local_max, load_logit(logit_row, column));
    }
  }
  const float row_max = row_reduce<RowThreads>(local_max, max_shared[row_in_block], MaxIgnoringNan{});
  std::uint64_t local_sum = 0;
  if (row_max > negative_infinity && row_max < __builtin_huge_valf()) {
    if constexpr (Cached > 0) {
      ExpFixedSum sum;
#pragma unroll
      for (int i = 0; i < Cached; ++i) sum.add(cached[i] - row_max);
      local_sum = sum.join();
    } else {
      for (std::uint32_t column = norm_begin + thread; column < norm_end; column += RowThreads) {
        local_sum += exp_fixed(load_logit(logit_row, column) - row_max);
      }
    }
  }
  const std::uint64_t fixed_sum = row_reduce<RowThreads>(local_sum, sum_shared[row_in_block], FixedSum{});
  const float offset = beam_score - log_sum_exp(row_max, fixed_sum);

  // The children's logits were just read, so they come from L1. With a CSR buffer (row_ptr from
  // allowed_token_offsets), the row's allowed tokens are written on the way: the fill costs no pass.
  ::xgr::detail::wait_for_prior_grid();  // the CSR offsets: everything above overlaps their scan
  float best_allowed = negative_infinity;
  std::uint32_t* row_columns = nullptr;
  float* row_scores = nullptr;
  std::uint32_t column_capacity = 0;  // the scan clamps offsets to the buffer: a short buffer truncates
  if (columns != nullptr) {
    row_columns = columns + row_ptr[row];
    if (column_scores != nullptr) row_scores = column_scores + row_ptr[row];
    column_capacity = row_ptr[row + 1] - row_ptr[row];
  }
  const auto take_child = [&](std::uint32_t child, std::uint32_t token) {
    const float logit = load_logit(logit_row, token);
    best_allowed = max_ignoring_nan(best_allowed, logit);
    if (child < column_capacity) {
      row_columns[child] = token;
      if (row_scores != nullptr) row_scores[child] = logit + offset;  // the candidate's score as MaskedTopK forms it
    }
  };
  if constexpr (RowThreads == 32) {
    // A warp row walks up to 32 children a thread: their tokens are requested `walk` at a time, so
    // that the thread waits for one round trip per `walk` children, not one per child.
    constexpr int walk = 4;
    for (std::uint32_t base = thread; base < child_count; base += walk * RowThreads) {
      std::uint32_t tokens[walk];
#pragma unroll
      for (int w = 0; w < walk; ++w) {
        const std::uint32_t child = base + w * RowThreads;
        tokens[w] = child == thread ? first_token : child < child_count ? token_offset + trie.node_code[first_child + child] : 0;
      }
#pragma unroll
      for (int w = 0; w < walk; ++w) {
        if (base + w * RowThreads < child_count) take_child(base + w * RowThreads, tokens[w]);
      }
    }
  } else {
    for (std::uint32_t child = thread; child < child_count; child += RowThreads) {
      take_child(child, child == thread ? first_token : token_offset + trie.node_code[first_child + child]);
    }
  }
  best_allowed = row_reduce<RowThreads>(best_allowed, best_shared[row_in_block], MaxIgnoringNan{});  // leaves each partial's best
  if (thread == 0) {
    const float bound = best_allowed + offset;  // monotone in the logit: bounds every candidate's score
    offsets[row] = offset;
    bounds[row] = bound > negative_infinity ? bound : negative_infinity;  // NaN (inf - inf) -> nothing selectable
  }
  write_score_hints(score_hints, hints_per_row, row, thread, best_shared[row_in_block], offset);
}

// With `warp_rows`, rows of up to 1,024 normalised columns take a warp each (the caller's choice,
// BeamSearcher::warp_rows_pay); longer rows, and every row without it, a block.
template <class T>
void launch_normalize(MatrixView<const T> logits, const ItemTrieView& trie, const std::uint32_t* nodes, const float* beam_scores,
                      std::uint32_t norm_begin, std::uint32_t norm_end, std::uint32_t token_offset, float* offsets, float* bounds,
                      const std::uint32_t* row_ptr, std::uint32_t* columns, float* column_scores, float* score_hints,
                      std::uint32_t hints_per_row, std::uint32_t rows, bool warp_rows, cudaStream_t stream) {
  const std::uint32_t normalized = norm_end - norm_begin;
  constexpr std::uint32_t vector = 16 / sizeof(T);
  const bool aligned = reinterpret_cast<std::uintptr_t>(logits.data) % 16 == 0 && (logits.row_stride * sizeof(T)) % 16 == 0 &&
                       norm_begin % vector == 0;
  // A programmatic dependent launch: the rows' reads and sums overlap the offsets' scan before it.
  const auto launch = [&]<int RowThreads, int Cached>() {
    const std::uint32_t blocks = (rows + normalize_threads / RowThreads - 1) / (normalize_threads / RowThreads);
    const auto go = [&](auto kernel) {
      ::xgr::detail::launch_overlapping(kernel, blocks, normalize_threads, 0, stream, logits, trie, nodes, beam_scores, norm_begin, norm_end,
                                        token_offset, offsets, bounds, row_ptr, columns, column_scores, score_hints, hints_per_row, rows);
    };
    if constexpr (Cached > 0) {
      const bool vectorized = aligned && normalized % (vector * RowThreads) == 0;
      vectorized ? go(normalize_kernel<RowThreads, Cached, true, T>) : go(normalize_kernel<RowThreads, Cached, false, T>);
    } else {
      go(normalize_kernel<RowThreads, 0, false, T>);
    }
  };
  if (warp_rows && normalized <= 32 * 8) {
    launch.template operator()<32, 8>();
  } else if (warp_rows && normalized <= 32 * 32) {
    launch.template operator()<32, 32>();
  } else if (normalized <= normalize_threads * 8) {
    launch.template operator()<normalize_threads, 8>();
  } else if (normalized <= normalize_threads * 32) {
    launch.template operator()<normalize_threads, 32>();
  } else {
    launch.template operator()<normalize_threads, 0>();
  }
  XGR_CUDA_CHECK_LAUNCH();
}

struct UpdateArgs {
  ItemTrieView trie;
  const std::uint32_t* row_begin;   // requests + 1
  const float* winner_values;       // requests x winner_stride
  const std::uint32_t* winner_indices;
  const std::uint32_t* winner_counts;
  std::size_t winner_stride;
  const std::uint32_t* pool_tokens;  // with a per-beam cap: slots x pool_width tokens; else null
  std::uint32_t pool_width;
  std::uint32_t vocab;
  std::uint32_t level;
  std::uint32_t levels;
  std::uint32_t token_offset;
  const std::uint32_t* nodes;        // current state
  const std::uint32_t* tokens;
  std::uint32_t* next_nodes;         // next state
  float* next_scores;
  std::uint32_t* next_tokens;
  std::uint32_t* ancestry;           // this level's row of the ancestry table
  std::uint32_t* live;
};

// Request `request`'s winners turned into its next beams, by the whole block.
__device__ inline void update_request(const UpdateArgs& args, std::uint32_t request) {
  const std::uint32_t first_row = args.row_begin[request];
  const std::uint32_t width = args.row_begin[request + 1] - first_row;
  const std::uint32_t kept = min(args.winner_counts[request], width);
  for (std::uint32_t slot = threadIdx.x; slot < width; slot += blockDim.x) {
    const std::uint32_t row = first_row + slot;
    if (slot >= kept) {
      args.next_nodes[row] = no_trie_node;
      args.next_scores[row] = -__builtin_huge_valf();
      args.ancestry[row] = no_trie_node;
      continue;
    }
    const std::uint32_t flat = args.winner_indices[request * args.winner_stride + slot];
    std::uint32_t parent_row;
    std::uint32_t token;
    if (args.pool_tokens != nullptr) {
      parent_row = first_row + flat / args.pool_width;
      token = args.pool_tokens[static_cast<std::size_t>(parent_row) * args.pool_width + flat % args.pool_width];
    } else {
      parent_row = first_row + flat / args.vocab;
      token = flat % args.vocab;
    }
    args.next_scores[row] = args.winner_values[request * args.winner_stride + slot];
    args.next_nodes[row] = args.trie.child(args.nodes[parent_row], token - args.token_offset);
    for (std::uint32_t level = 0; level < args.level; ++level) {
      args.next_tokens[static_cast<std::size_t>(row) * args.levels + level] =
          args.tokens[static_cast<std::size_t>(parent_row) * args.levels + level];
    }
    args.next_tokens[static_cast<std::size_t>(row) * args.levels + args.level] = token;
    args.ancestry[row] = parent_row;
  }
  if (threadIdx.x == 0) args.live[request] = kept;
}

template <int BlockThreads>
__global__ void __launch_bounds__(BlockThreads) update_kernel(UpdateArgs args) {
  ::xgr::detail::wait_for_prior_grid();  // launched overlapping the selection, whose winners it reads
  update_request(args, blockIdx.x);
}

// The update as the selection's epilogue: the selection's last kernel runs it for each request in
// the block that wrote the request's winners (topk::cuda_detail::NoEpilogue), which saves the
// update's launch and its wait for the selection.
struct UpdateEpilogue {
  UpdateArgs args;
  __device__ void operator()(std::uint32_t request) const { update_request(args, request); }
};

template <int BlockThreads>
__global__ void __launch_bounds__(BlockThreads) begin_kernel(const std::uint32_t* row_begin, std::uint32_t* nodes, float* scores, std::uint32_t* live) {
  const std::uint32_t request = blockIdx.x;
  for (std::uint32_t row = row_begin[request] + threadIdx.x; row < row_begin[request + 1]; row += BlockThreads) {
    const bool first = row == row_begin[request];
    nodes[row] = first ? 0u : no_trie_node;
    scores[row] = first ? 0.0f : -__builtin_huge_valf();
  }
  if (threadIdx.x == 0) live[request] = 1;
}

struct FinalizeArgs {
  ItemTrieView trie;
  const std::uint32_t* row_begin;
  const std::uint32_t* live;
  const std::uint32_t* nodes;
  const float* scores;
  const std::uint32_t* tokens;
  const std::uint32_t* level_offsets;  // levels
  std::uint32_t levels;
  MatrixView<std::uint32_t> out_codes;  // BeamResults, as raw pointers for the device
  float* out_scores;
  ItemId* out_item_ids;
  std::uint32_t* out_item_counts;
  std::uint32_t* out_counts;
};

template <int BlockThreads>
__global__ void __launch_bounds__(BlockThreads) finalize_kernel(FinalizeArgs args) {
  const std::uint32_t request = blockIdx.x;
  const std::uint32_t first_row = args.row_begin[request];
  const std::uint32_t live = args.live[request];
  for (std::uint32_t row = first_row + threadIdx.x; row < args.row_begin[request + 1]; row += BlockThreads) {
    const bool is_live = row - first_row < live;
    for (std::uint32_t level = 0; level < args.levels; ++level) {
      args.out_codes(row, level) =
          is_live ? args.tokens[static_cast<std::size_t>(row) * args.levels + level] - args.level_offsets[level] : no_code;
    }
    args.out_scores[row] = args.scores[row];
    const std::uint32_t leaf = is_live ? args.nodes[row] - args.trie.first_leaf() : 0;
    args.out_item_ids[row] = is_live ? args.trie.item_ids[args.trie.leaf_item_begin[leaf]] : ItemId{0};
    args.out_item_counts[row] = is_live ? args.trie.leaf_item_begin[leaf + 1] - args.trie.leaf_item_begin[leaf] : 0;
  }
  if (threadIdx.x == 0) args.out_counts[request] = live;
}

}  // namespace beam::cuda_detail

template <class Normalize, class Select, class Filter>
class BeamSearcher<exec::cuda, Normalize, Select, Filter> {
  static constexpr bool dense_mask = std::is_same_v<Filter, beam::DenseMaskFilter>;
  static_assert(dense_mask || std::is_same_v<Filter, beam::SparseTrieFilter>, "unknown beam Filter policy");

 public:
  // The device trie must outlive the searcher. Allocates every buffer a batch within `config` needs.
  BeamSearcher(exec::cuda exec, const DeviceItemTrie& trie, const BeamConfig& config)
      : trie_(trie.view()),
        codebook_sizes_(trie.codebook_sizes().begin(), trie.codebook_sizes().end()),
        nodes_at_depth_(trie.levels() + 1),
        config_(config),
        level_offsets_(beam::detail::validate_config(config, trie.codebook_sizes())),
        max_slots_(config.max_requests * config.max_beam_width),
        pool_width_(config.top_k_per_beam != 0 && config.top_k_per_beam < config.max_beam_width ? config.top_k_per_beam : 0),
        mask_words_((config.vocab + 31) / 32),
        hints_per_row_(beam::cuda_detail::score_hints_per_row(config.max_beam_width)) {
    const std::size_t levels = codebook_sizes_.size();
    for (std::size_t depth = 0; depth <= levels; ++depth) nodes_at_depth_[depth] = trie.nodes_at_depth(depth);
    multiprocessors_ = ::xgr::detail::multiprocessor_count();
    for (int side = 0; side < 2; ++side) {
      scores_[side] = DeviceBuffer<float>(max_slots_);
      nodes_[side] = DeviceBuffer<std::uint32_t>(max_slots_);
      tokens_[side] = DeviceBuffer<std::uint32_t>(max_slots_ * levels);
    }
    ancestry_ = DeviceBuffer<std::uint32_t>(levels * max_slots_);
    live_ = DeviceBuffer<std::uint32_t>(config.max_requests);
    row_begin_device_ = DeviceBuffer<std::uint32_t>(config.max_requests + 1);
    row_begin_staging_ = PinnedBuffer<std::uint32_t>(config.max_requests + 1);
    row_begin_.reserve(config.max_requests + 1);
    level_offsets_device_ = to_device(std::span<const std::uint32_t>(level_offsets_));
    offsets_ = DeviceBuffer<float>(max_slots_);
    bounds_ = DeviceBuffer<float>(max_slots_);
    if constexpr (std::is_same_v<Select, topk::EarlyExit>) {
      score_hints_ = DeviceBuffer<float>(max_slots_ * hints_per_row_);
    }
    if constexpr (dense_mask) {
      mask_bits_ = DeviceBuffer<std::uint32_t>(max_slots_ * mask_words_);
    } else {
      // Level 0 has one live beam per request; deeper levels up to max_slots live beams.
      std::size_t capacity = config.max_requests * trie.max_children(0);
      for (std::size_t depth = 1; depth < levels; ++depth) capacity = std::max(capacity, max_slots_ * trie.max_children(depth));
      require_argument(capacity <= 0xffffffffu, "BeamSearcher(cuda)", "the allowed-token buffer exceeds 32-bit offsets");
      row_ptr_ = DeviceBuffer<std::uint32_t>(max_slots_ + 1);
      columns_ = DeviceBuffer<std::uint32_t>(std::max<std::size_t>(capacity, 1));
      if constexpr (std::is_same_v<Select, topk::EarlyExit>) column_scores_ = DeviceBuffer<float>(columns_.size());
    }
    winner_values_ = DeviceBuffer<float>(config.max_requests * config.max_beam_width);
    winner_indices_ = DeviceBuffer<std::uint32_t>(config.max_requests * config.max_beam_width);
    winner_counts_ = DeviceBuffer<std::uint32_t>(config.max_requests);
    std::size_t workspace_bytes = masked_topk_workspace_bytes<Select>(exec, select_limits());
    if (pool_width_ != 0) {
      pool_values_ = DeviceBuffer<float>(max_slots_ * pool_width_);
      pool_tokens_ = DeviceBuffer<std::uint32_t>(max_slots_ * pool_width_);
      pool_counts_ = DeviceBuffer<std::uint32_t>(max_slots_);
      workspace_bytes = std::max(workspace_bytes, masked_topk_workspace_bytes<Select>(exec, cap_limits()));
      workspace_bytes = std::max(workspace_bytes, masked_topk_workspace_bytes<Select>(exec, pool_limits()));
    }
    workspace_.reserve(workspace_bytes);
  }

  // Starts a batch (see the host searcher). Uploads the row layout through a pinned staging buffer;
  // waits only for the previous begin()'s upload, never for the device's other work.
  void begin(exec::cuda exec, std::span<const std::uint32_t> beam_widths) {
    beam::detail::plan_rows(config_, beam_widths, row_begin_);
    upload_done_.synchronize();  // the staging buffer may still feed the previous batch's copy
    std::copy(row_begin_.begin(), row_begin_.end(), row_begin_staging_.data());
    copy_async(row_begin_device_.span().first(row_begin_.size()),
               std::span<const std::uint32_t>(row_begin_staging_.data(), row_begin_.size()), exec.stream);
    upload_done_.record(exec.stream);
    max_width_ = 0;
    for (std::uint32_t width : beam_widths) max_width_ = std::max<std::size_t>(max_width_, width);
    step_ = 0;
    parity_ = 0;
    beam::cuda_detail::begin_kernel<beam::cuda_detail::small_kernel_threads><<<static_cast<unsigned>(request_count()), beam::cuda_detail::small_kernel_threads, 0, exec.stream>>>(
        row_begin_device_.data(), nodes_[0].data(), scores_[0].data(), live_.data());
    XGR_CUDA_CHECK_LAUNCH();
  }

  // One decoding step on exec.stream: logits (device) hold slot_count() rows of vocab columns.
  template <Element T>
  void step(exec::cuda exec, MatrixView<const T> logits) {
    beam::detail::validate_logits(logits, slot_count(), config_.vocab, step_, levels());
    const std::size_t level = step_;
    const std::uint32_t token_offset = level_offsets_[level];
    const auto [norm_begin, norm_end] =
        beam::detail::normalized_columns<Normalize>(config_.vocab, token_offset, codebook_sizes_[level]);
    const int now = parity_;
    const int next = parity_ ^ 1;
    const auto slots = static_cast<std::uint32_t>(slot_count());
    const std::span<const std::uint32_t> nodes(nodes_[now].data(), slots);

    TopKMask mask;
    if constexpr (dense_mask) {
      const MatrixView<std::uint32_t> bits{mask_bits_.data(), slots, mask_words_, mask_words_};
      allowed_mask(exec, trie_, nodes, token_offset, bits);
      mask = TopKMask::bitset(bits);
    } else {
      // The offsets now; normalize writes the columns while it reads each beam's children.
      allowed_token_offsets(exec, trie_, nodes, row_ptr_.span().first(slots + 1), columns_.size());
      mask = TopKMask::sparse(std::span<const std::uint32_t>(row_ptr_.data(), slots + 1), columns_.span());
    }

    // The cap binds only below this batch's widest request (K >= B_r changes nothing).
    const bool pooled = pool_width_ != 0 && pool_width_ < max_width_;
    const bool early_exit = std::is_same_v<Select, topk::EarlyExit> && !pooled;
    // For the fused selection, the normalisation writes each allowed entry's score next to its
    // token, so that the selection reads entries instead of gathering their logits.
    const bool fused = early_exit && !dense_mask && fused_selection_pays(level);
    // EarlyExit's bound for each request comes from the normalisation's score hints instead of a
    // sample of the logits. At level 0 a request has one live beam, whose few hints number k only
    // for narrow requests: the general path samples the logits then. The fused selection takes
    // the hints at every level: where they cannot bound it, it stages and selects all of a
    // request's entries, which at level 0 are the root's children alone.
    const bool hinted = early_exit && (fused || level > 0 || max_width_ <= hints_per_row_);
    float* const score_hints = hinted ? score_hints_.data() : nullptr;
    float* const column_scores = fused ? column_scores_.data() : nullptr;
    beam::cuda_detail::launch_normalize(logits, trie_, nodes_[now].data(), scores_[now].data(), static_cast<std::uint32_t>(norm_begin),
                                        static_cast<std::uint32_t>(norm_end), token_offset, offsets_.data(), bounds_.data(),
                                        dense_mask ? nullptr : row_ptr_.data(), dense_mask ? nullptr : columns_.data(), column_scores,
                                        score_hints, hints_per_row_, slots, warp_rows_pay(level, slots), exec.stream);

    const std::span<const std::uint32_t> groups(row_begin_device_.data(), request_count() + 1);
    const TopKResult winners{MatrixView<float>{winner_values_.data(), request_count(), max_width_, config_.max_beam_width},
                             MatrixView<std::uint32_t>{winner_indices_.data(), request_count(), max_width_, config_.max_beam_width},
                             std::span<std::uint32_t>(winner_counts_.data(), request_count())};
    // The update: the selection's epilogue (EarlyExit, NoEarlyExit) or a launch of its own after it.
    const beam::cuda_detail::UpdateArgs args{trie_,
                                             row_begin_device_.data(),
                                             winner_values_.data(),
                                             winner_indices_.data(),
                                             winner_counts_.data(),
                                             config_.max_beam_width,
                                             pooled ? pool_tokens_.data() : nullptr,
                                             static_cast<std::uint32_t>(pool_width_),
                                             static_cast<std::uint32_t>(config_.vocab),
                                             static_cast<std::uint32_t>(level),
                                             static_cast<std::uint32_t>(levels()),
                                             token_offset,
                                             nodes_[now].data(),
                                             tokens_[now].data(),
                                             nodes_[next].data(),
                                             scores_[next].data(),
                                             tokens_[next].data(),
                                             ancestry_.data() + level * max_slots_,
                                             live_.data()};
    TopKProblem<T> candidates;
    candidates.scores = MatrixView<const T>{logits.data, slots, logits.cols, logits.row_stride};
    candidates.row_offsets = std::span<const float>(offsets_.data(), slots);
    candidates.row_score_bounds = std::span<const float>(bounds_.data(), slots);
    candidates.mask = mask;
    bool updated = false;
    if (!pooled) {
      candidates.k = max_width_;
      candidates.group_row_offsets = groups;
      if (score_hints != nullptr) candidates.row_score_hints = MatrixView<const float>{score_hints, slots, hints_per_row_, hints_per_row_};
      // Every normalisation block waits for the kernel before it, so the selection's first kernel
      // may start overlapping the normalisation (topk::cuda_detail::FirstLaunch).
      const topk::cuda_detail::CallOptions options{.first_launch = topk::cuda_detail::FirstLaunch::overlapping,
                                                   .fuse_hinted = fused,
                                                   .column_scores = column_scores,
                                                   .hinted_blocks_per_group = fused_cluster_blocks(level),
                                                   .sparse_rows = sparse_filter_rows(level)};
      updated = topk::cuda_detail::enqueue_masked_topk<Select>(exec, candidates, winners, select_limits(), workspace_, options,
                                                               beam::cuda_detail::UpdateEpilogue{args});
    } else {
      // Each beam keeps its pool_width best candidates (a group per row), then the request selects
      // among its beams' pools. Pool slots past a beam's count hold -inf and are never selected.
      candidates.k = pool_width_;
      candidates.rows_per_group = 1;
      const TopKResult pool{MatrixView<float>{pool_values_.data(), slots, pool_width_, pool_width_},
                            MatrixView<std::uint32_t>{pool_tokens_.data(), slots, pool_width_, pool_width_},
                            std::span<std::uint32_t>(pool_counts_.data(), slots)};
      masked_topk<Select>(exec, candidates, pool, cap_limits(), workspace_);
      TopKProblem<float> pool_problem;
      pool_problem.scores = MatrixView<const float>{pool_values_.data(), slots, pool_width_, pool_width_};
      pool_problem.k = max_width_;
      pool_problem.group_row_offsets = groups;
      masked_topk<Select>(exec, pool_problem, winners, pool_limits(), workspace_);
    }
    if (!updated) {
      ::xgr::detail::launch_overlapping(beam::cuda_detail::update_kernel<beam::cuda_detail::update_threads>,
                                        static_cast<unsigned>(request_count()), beam::cuda_detail::update_threads, 0, exec.stream, args);
    }
    parity_ = next;
    ++step_;
  }

  // Sets the host side of the batch to `steps_done` steps after begin(): the level the next step()
  // decodes and the parity of the double-buffered beam state, the only host values step() changes.
  // For steps whose kernels reached the stream some other way — a CUDA graph captured from step()
  // calls on this searcher for a batch of the same shape (request count, row count, widest request),
  // then replayed — and for re-enqueueing steps whose first enqueue was abandoned.
  void resume_at(std::size_t steps_done) {
    require_argument(request_count() > 0 && steps_done <= levels(), "BeamSearcher::resume_at",
                     [&] { return "step " + std::to_string(steps_done) + " of a batch of " + std::to_string(levels()) +
                                      " levels" + (request_count() == 0 ? " before begin()" : ""); });
    step_ = steps_done;
    parity_ = static_cast<int>(steps_done & 1);
  }

  // Writes every request's results into device views (all levels must be decoded). One launch.
  void finalize(exec::cuda exec, const BeamResults& out) const {
    beam::detail::validate_results(out, slot_count(), request_count(), levels(), step_);
    const beam::cuda_detail::FinalizeArgs args{trie_,
                                               row_begin_device_.data(),
                                               live_.data(),
                                               nodes_[parity_].data(),
                                               scores_[parity_].data(),
                                               tokens_[parity_].data(),
                                               level_offsets_device_.data(),
                                               static_cast<std::uint32_t>(levels()),
                                               out.codes,
                                               out.scores.data(),
                                               out.item_ids.data(),
                                               out.item_counts.data(),
                                               out.counts.data()};
    beam::cuda_detail::finalize_kernel<beam::cuda_detail::small_kernel_threads><<<static_cast<unsigned>(request_count()), beam::cuda_detail::small_kernel_threads, 0, exec.stream>>>(args);
    XGR_CUDA_CHECK_LAUNCH();
  }

  [[nodiscard]] std::size_t levels() const noexcept { return codebook_sizes_.size(); }
  [[nodiscard]] std::size_t steps_done() const noexcept { return step_; }
  [[nodiscard]] std::size_t request_count() const noexcept { return row_begin_.empty() ? 0 : row_begin_.size() - 1; }
  [[nodiscard]] std::size_t slot_count() const noexcept { return row_begin_.empty() ? 0 : row_begin_.back(); }
  [[nodiscard]] std::size_t max_slots() const noexcept { return max_slots_; }
  [[nodiscard]] const BeamConfig& config() const noexcept { return config_; }
  [[nodiscard]] std::span<const std::uint32_t> level_token_offsets() const noexcept { return level_offsets_; }
  // Host copy of the batch's row layout (requests + 1 entries).
  [[nodiscard]] std::span<const std::uint32_t> row_begin() const noexcept { return row_begin_; }
  // Device views of the state (valid after the stream reaches them).
  [[nodiscard]] std::span<const std::uint32_t> live_beams() const noexcept { return {live_.data(), request_count()}; }
  [[nodiscard]] std::span<const float> beam_scores() const noexcept { return {scores_[parity_].data(), slot_count()}; }
  [[nodiscard]] std::span<const std::uint32_t> trie_nodes() const noexcept { return {nodes_[parity_].data(), slot_count()}; }
  [[nodiscard]] MatrixView<const std::uint32_t> tokens() const noexcept {
    return {tokens_[parity_].data(), slot_count(), levels(), levels()};
  }
  [[nodiscard]] std::span<const std::uint32_t> ancestry(std::size_t level) const {
    require_argument(level < step_, "BeamSearcher::ancestry",
                     [&] { return "level " + std::to_string(level) + " is not decoded yet"; });
    return {ancestry_.data() + level * max_slots_, slot_count()};
  }
  // The same row as the reorder a KV cache consumes (kv::record_parents, kv::reorder); device memory.
  [[nodiscard]] BeamParents parents(std::size_t level) const { return {ancestry(level), level}; }

 private:
  [[nodiscard]] std::size_t sparse_entries() const noexcept { return dense_mask ? 0 : columns_.size(); }
  // A request's live beams at this level, at most: the root alone at level 0, its width after.
  [[nodiscard]] std::size_t live_beams(std::size_t level) const noexcept { return level == 0 ? 1 : max_width_; }

  // A request's allowed entries at this level, on average (from the trie's node counts): its live
  // beams times a beam's mean children.
  [[nodiscard]] double request_entries(std::size_t level) const noexcept {
    return static_cast<double>(live_beams(level)) * static_cast<double>(nodes_at_depth_[level + 1]) /
           static_cast<double>(nodes_at_depth_[level]);
  }

  // Whether the normalisation gives each row of up to 1,024 columns a warp (8 rows a block) rather
  // than a block: where the rows' blocks fill every multiprocessor and a row has few enough children
  // for one warp to walk (256 on average, 8 a thread). A block's 256 threads finish one row sooner;
  // a warp a row wastes no barriers and threads on short rows (H100, docs/benchmarks/beam.md,
  // 2026-12-07: 32 x 512 beams x 1,024 columns, 97.8 -> 59.2 us; 128 rows alone, or rows of 600
  // children, slower).
  [[nodiscard]] bool warp_rows_pay(std::size_t level, std::size_t rows) const noexcept {
    constexpr double max_children = 256.0;
    return rows >= 8 * static_cast<std::size_t>(multiprocessors_) && mean_children(level) <= max_children;
  }

  // A beam's mean children at this level, from the trie's node counts (0 at a level without nodes,
  // where no beam is live). request_entries keeps its own arithmetic: it multiplies before it
  // divides, and fused_selection_pays compares its result against exact thresholds.
  [[nodiscard]] double mean_children(std::size_t level) const noexcept {
    return nodes_at_depth_[level] == 0 ? 0.0
                                       : static_cast<double>(nodes_at_depth_[level + 1]) / static_cast<double>(nodes_at_depth_[level]);
  }

  // The general path's sparse filter: a block or a warp a beam (topk::cuda_detail::
  // sparse_warp_rows_pay), from the beams live at this level and their mean children (H100,
  // docs/benchmarks/beam.md, 2026-12-07: 32 x 512 beams of about 630 children, 155 -> 137 us with
  // warps; one request, or 8 of 128 beams, 1.2-1.4x slower with warps).
  [[nodiscard]] topk::cuda_detail::SparseRows sparse_filter_rows(std::size_t level) const noexcept {
    const std::uint64_t live_rows = request_count() * live_beams(level);
    const auto children = static_cast<std::uint64_t>(mean_children(level));
    return topk::cuda_detail::sparse_warp_rows_pay(live_rows, children, static_cast<std::uint64_t>(multiprocessors_))
               ? topk::cuda_detail::SparseRows::warp
               : topk::cuda_detail::SparseRows::block;
  }

  // The fused selection's blocks per request: the largest portable cluster (8) while a request's
  // entries exceed what the cluster stages and the requests' clusters fit the GPU a block per
  // multiprocessor (8 x 256 beams of 122 children: 56.6 -> 53.6 us, docs/benchmarks/beam.md), else
  // the default 4 (with 8, 32 requests were slower and narrow levels gained nothing measurable).
  [[nodiscard]] unsigned fused_cluster_blocks(std::size_t level) const noexcept {
    constexpr unsigned wide = topk::cuda_detail::max_hinted_cluster_blocks;
    const bool fits = request_count() * wide <= static_cast<std::size_t>(multiprocessors_);
    return request_entries(level) > topk::cuda_detail::hinted_staged_capacity && fits ? wide : topk::cuda_detail::hinted_cluster_blocks;
  }

  // Whether the fused hinted selection (one cluster per request) beats the general path (the bound,
  // a filter block per beam, the select) at this level. The cluster reads a request's allowed
  // entries on its fused_cluster_blocks multiprocessors; the general path spreads every request's
  // over all of them but takes two launches more. Fused: while a request's entries (on average)
  // fit the cluster's stage, or while they are few enough and a cluster's share of them exceeds the
  // general path's share by no more than those launches cost, about 4,096 entries (H100,
  // docs/benchmarks/beam.md, 2026-12-07: 32 x 256 beams of 122 children each, 145 -> 134 us;
  // a single request, or 8 of 512 such beams, 6-13 % slower fused on clusters of 4).
  [[nodiscard]] bool fused_selection_pays(std::size_t level) const noexcept {
    constexpr double max_fused_entries = 65536.0;
    constexpr double launches_in_entries = 4096.0;
    const double entries = request_entries(level);
    const double cluster_share = entries / fused_cluster_blocks(level);
    const double spread_share = entries * static_cast<double>(request_count()) / static_cast<double>(multiprocessors_);
    return entries <= topk::cuda_detail::hinted_staged_capacity ||
           (entries <= max_fused_entries && cluster_share <= spread_share + launches_in_entries);
  }

  [[nodiscard]] TopKLimits select_limits() const noexcept {
    return {config_.max_requests, max_slots_, config_.max_beam_width, config_.vocab, config_.max_beam_width, sparse_entries()};
  }
  [[nodiscard]] TopKLimits cap_limits() const noexcept {
    return {max_slots_, max_slots_, 1, config_.vocab, pool_width_, sparse_entries()};
  }
  [[nodiscard]] TopKLimits pool_limits() const noexcept {
    return {config_.max_requests, max_slots_, config_.max_beam_width, pool_width_, config_.max_beam_width, 0};
  }

  ItemTrieView trie_;
  std::vector<std::uint32_t> codebook_sizes_;
  std::vector<std::size_t> nodes_at_depth_;  // of the trie, depth 0 (the root) to levels()
  BeamConfig config_;
  std::vector<std::uint32_t> level_offsets_;
  std::size_t max_slots_;
  std::size_t pool_width_;
  std::size_t mask_words_;
  std::uint32_t hints_per_row_;  // EarlyExit: score hints each normalisation block writes
  int multiprocessors_ = 0;      // of the device the searcher was built on (fused_selection_pays)
  DeviceBuffer<float> scores_[2];
  DeviceBuffer<std::uint32_t> nodes_[2];
  DeviceBuffer<std::uint32_t> tokens_[2];
  DeviceBuffer<std::uint32_t> ancestry_;
  DeviceBuffer<std::uint32_t> live_;
  DeviceBuffer<std::uint32_t> row_begin_device_;
  PinnedBuffer<std::uint32_t> row_begin_staging_;
  Event upload_done_{cudaEventDisableTiming};
  DeviceBuffer<std::uint32_t> level_offsets_device_;
  DeviceBuffer<float> offsets_;
  DeviceBuffer<float> bounds_;
  DeviceBuffer<float> score_hints_;  // EarlyExit: slots x hints_per_row_ (write_score_hints)
  DeviceBuffer<std::uint32_t> mask_bits_;
  DeviceBuffer<std::uint32_t> row_ptr_;
  DeviceBuffer<std::uint32_t> columns_;
  DeviceBuffer<float> column_scores_;  // EarlyExit: each allowed entry's score, parallel to columns_
  DeviceBuffer<float> winner_values_;
  DeviceBuffer<std::uint32_t> winner_indices_;
  DeviceBuffer<std::uint32_t> winner_counts_;
  DeviceBuffer<float> pool_values_;
  DeviceBuffer<std::uint32_t> pool_tokens_;
  DeviceBuffer<std::uint32_t> pool_counts_;
  DeviceWorkspace workspace_;
  std::vector<std::uint32_t> row_begin_;
  std::size_t max_width_ = 0;
  int parity_ = 0;
  std::size_t step_ = 0;
};

BeamSearcher(exec::cuda, const DeviceItemTrie&, const BeamConfig&) -> BeamSearcher<exec::cuda>;

}  // namespace xgr
