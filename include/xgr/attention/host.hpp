// xgr/attention/host.hpp — the reference attention over a KvPool: prefill and decode.
//
// What the CUDA kernels must compute (within the tolerance stated in docs/attention.md), written for
// a reader: one query at a time, scores in double, a two-pass softmax. No tiling, no staging: the
// staged decode of xgr/attention/cuda.cuh is checked against this plain definition.
//
//   prefill   query token t of a prompt attends causally to prompt tokens 0..t (GQA: query head h
//             reads kv head h / (q_heads / kv_heads)); K/V are first written into the pool's pages.
//   decode    at step s, beam row j of a request attends to the whole prompt and to its own decode
//             tokens: the token chosen at step s in row j, then its parent's at step s-1, and so on
//             back to step 0 along the ancestry table (a dead link ends the walk).
//   decode over a CopyOnForkKvCache: row j attends to tokens 0..prompt+s of its own pages.
//
// Tensors are packed row-major: queries and outputs [rows][q_heads][head_dim], keys/values
// [rows][kv_heads][head_dim]; rows are prompt tokens (prefill) or beam rows (decode) as described
// by the KvBatch.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <string>

#include "xgr/core/dtype.hpp"
#include "xgr/core/error.hpp"
#include "xgr/core/exec.hpp"
#include "xgr/core/workspace.hpp"
#include "xgr/kv/copy_on_fork.hpp"
#include "xgr/kv/host.hpp"
#include "xgr/kv/pool.hpp"

namespace xgr::attention {

struct Options {
  std::size_t q_heads = 0;     // query heads: a positive multiple of the pool's kv_heads
  float softmax_scale = 0.0f;  // 0 means 1 / sqrt(head_dim)
  // CUDA decode: use the Hopper (wgmma) prefix kernel where the device and the build have it
  // (sm_90a code on a compute-capability 9.0 device, head_dim 128). false forces the mma.sync kernel,
  // which runs everywhere; the host reference ignores it.
  bool allow_wgmma = true;
};

// Limits the CUDA decode's workspace is sized for (declared here so that host code can size it; the
// host decode needs no workspace).
struct DecodeLimits {
  std::size_t max_total_beams = 0;  // beam rows of the largest batch
  std::size_t q_heads = 0;
  std::size_t head_dim = 128;
  std::size_t max_splits = 8;       // prompt chunks per request when the batch is small
};

// Split-K partials of stage 1, carved from a workspace (sizing and use share this function).
struct DecodeScratch {
  float* partial_o = nullptr;
  float* partial_lse = nullptr;
  template <class Arena>
  static DecodeScratch carve(Arena& arena, const DecodeLimits& limits) {
    const std::size_t rows = limits.max_splits * limits.max_total_beams * limits.q_heads;
    return {arena.template take<float>(rows * limits.head_dim), arena.template take<float>(rows)};
  }
};

[[nodiscard]] inline std::size_t decode_workspace_bytes(const DecodeLimits& limits) {
  return workspace_bytes_of([&](WorkspaceArena& arena) { (void)DecodeScratch::carve(arena, limits); });
}

namespace detail {

inline float scale_of(const Options& options, std::size_t head_dim) {
  return options.softmax_scale != 0.0f ? options.softmax_scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

inline std::size_t group_of(const Options& options, std::size_t kv_heads, const char* op) {
  require_argument(options.q_heads > 0 && options.q_heads % kv_heads == 0, op,
                   [&] { return std::to_string(options.q_heads) + " query heads is not a positive multiple of " +
                                    std::to_string(kv_heads) + " kv heads"; });
  require_argument(std::isfinite(options.softmax_scale), op, "softmax_scale must be finite");
  return options.q_heads / kv_heads;
}

inline void require_elements(std::size_t elements, std::size_t rows, std::size_t heads, std::size_t head_dim, const char* op,
                             const char* what) {
  require_argument(elements == rows * heads * head_dim, op,
                   [&] { return std::string(what) + " holds " + std::to_string(elements) + " elements, expected " +
                                    std::to_string(rows) +
                                    " rows x " + std::to_string(heads) + " heads x " + std::to_string(head_dim); });
}

// softmax(q . k_n * scale) . v_n over n < count, in double. key(n) / value(n) return the n-th vectors.
template <class T, class Key, class Value>
void attend(const T* query, std::size_t head_dim, double scale, std::size_t count, Key&& key, Value&& value, T* out) {
  auto score = [&](std::size_t n) {
    const T* k = key(n);
    double dot = 0.0;
    for (std::size_t d = 0; d < head_dim; ++d) dot += static_cast<double>(static_cast<float>(query[d])) * static_cast<float>(k[d]);
    return dot * scale;
  };
  double max_score = -std::numeric_limits<double>::infinity();
  for (std::size_t n = 0; n < count; ++n) max_score = std::max(max_score, score(n));
  double accumulated[256] = {};
  double total = 0.0;
  for (std::size_t n = 0; n < count; ++n) {
    const double weight = std::exp(score(n) - max_score);
    total += weight;
    const T* v = value(n);
    for (std::size_t d = 0; d < head_dim; ++d) accumulated[d] += weight * static_cast<float>(v[d]);
  }
  for (std::size_t d = 0; d < head_dim; ++d) out[d] = T(static_cast<float>(accumulated[d] / total));
}

}  // namespace detail

namespace detail {

// Prefill over either cache: write the prompts' K/V (kv::write_prompt), then causal attention, with
// prompt token n of request `slot` at token_vector(view, slot, n, kv head, K|V).
template <class T, class Cache, class TokenVector>
void causal_prefill(Cache& cache, const KvBatch<MemorySpace::host>& batch, std::size_t layer, const Options& options, RowSpan<const T> q,
                    RowSpan<const T> k, RowSpan<const T> v, RowSpan<T> out, TokenVector&& token_vector) {
  const char* op = "attention::prefill";
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  const std::size_t group = group_of(options, view.kv_heads, op);
  require_elements(q.size(), b.total_tokens, options.q_heads, view.head_dim, op, "q");
  require_elements(out.size(), b.total_tokens, options.q_heads, view.head_dim, op, "out");
  kv::write_prompt(exec::host, cache, batch, layer, k, v);
  const double scale = scale_of(options, view.head_dim);
  for (std::size_t i = 0; i < b.count; ++i) {
    const std::uint32_t slot = b.slots[i];
    for (std::size_t t = 0; t < view.prompt_tokens[slot]; ++t) {
      for (std::size_t h = 0; h < options.q_heads; ++h) {
        const std::size_t row = ((b.token_begin[i] + t) * options.q_heads + h) * view.head_dim;
        attend(
            q.data() + row, view.head_dim, scale, t + 1, [&](std::size_t n) { return token_vector(view, slot, n, h / group, kv::key); },
            [&](std::size_t n) { return token_vector(view, slot, n, h / group, kv::value); }, out.data() + row);
      }
    }
  }
}

}  // namespace detail

// Writes the prompts' K/V into the pool (kv::write_prompt) and computes causal attention for every
// prompt token. q and out are [total_tokens][q_heads][head_dim]; k and v [total_tokens][kv_heads][head_dim].
template <class T, class Layout>
void prefill(exec::host_t, KvPool<T, Layout, MemorySpace::host>& pool, const KvBatch<MemorySpace::host>& batch,
             std::size_t layer, const Options& options, RowSpan<const T> q, RowSpan<const T> k, RowSpan<const T> v,
             RowSpan<T> out) {
  detail::causal_prefill<T>(pool, batch, layer, options, q, k, v, out,
                            [&](const auto& view, std::size_t slot, std::size_t n, std::size_t head, std::size_t kv_index) {
                              return view.prefix_token(slot, n, layer, head, kv_index);
                            });
}

// Prefill over the copy-on-fork baseline: the prompts' K/V go to beam 0's pages (kv::fork copies them
// to the other beams once every layer is written), and the attention is the same causal attention.
template <class T>
void prefill(exec::host_t, CopyOnForkKvCache<T, MemorySpace::host>& cache, const KvBatch<MemorySpace::host>& batch, std::size_t layer,
             const Options& options, RowSpan<const T> q, RowSpan<const T> k, RowSpan<const T> v, RowSpan<T> out) {
  detail::causal_prefill<T>(cache, batch, layer, options, q, k, v, out,
                            [&](const auto& view, std::size_t slot, std::size_t n, std::size_t head, std::size_t kv_index) {
                              return view.token(slot, 0, n, layer, head, kv_index);
                            });
}

// Decode step `step`: every beam row attends to its request's prompt and to its own decode tokens
// 0..step found through the ancestry table. The step's K/V must already be written (kv::write_step)
// and its parents recorded (kv::record_parents). q and out are [total_beams][q_heads][head_dim].
template <class T, class Layout>
void decode(exec::host_t, KvPool<T, Layout, MemorySpace::host>& pool, const KvBatch<MemorySpace::host>& batch,
            std::size_t layer, std::size_t step, const Options& options, RowSpan<const T> q, RowSpan<T> out) {
  const char* op = "attention::decode";
  const auto view = pool.view();
  const KvBatchView& b = batch.view();
  const std::size_t group = detail::group_of(options, view.kv_heads, op);
  kv::detail::require_layer(layer, view.layers, op);
  kv::detail::require_step(step, view.max_steps, op);
  detail::require_elements(q.size(), b.total_beams, options.q_heads, view.head_dim, op, "q");
  detail::require_elements(out.size(), b.total_beams, options.q_heads, view.head_dim, op, "out");
  const double scale = detail::scale_of(options, view.head_dim);
  std::uint32_t lineage[64];  // lineage[s] = the row holding this beam's token of step s
  for (std::size_t i = 0; i < b.count; ++i) {
    const std::uint32_t slot = b.slots[i];
    const std::size_t prompt = view.prompt_tokens[slot];
    for (std::uint32_t beam = 0; beam < b.beam_begin[i + 1] - b.beam_begin[i]; ++beam) {
      // Walk back from this row; `first` is the earliest step still reachable.
      std::size_t first = step;
      lineage[step] = beam;
      while (first > 0) {
        const std::uint32_t parent = view.parents(slot, first)[lineage[first]];
        if (parent == no_parent) break;
        lineage[--first] = parent;
      }
      const std::size_t own = step + 1 - first;
      for (std::size_t h = 0; h < options.q_heads; ++h) {
        const std::size_t row = ((b.beam_begin[i] + beam) * options.q_heads + h) * view.head_dim;
        const std::size_t kv_head = h / group;
        auto vector = [&](std::size_t n, std::size_t kv_index) -> const T* {
          if (n < prompt) return view.prefix_token(slot, n, layer, kv_head, kv_index);
          const std::size_t s = first + (n - prompt);
          return view.beam_token(slot, s, lineage[s], layer, kv_head, kv_index);
        };
        detail::attend(
            q.data() + row, view.head_dim, scale, prompt + own, [&](std::size_t n) { return vector(n, kv::key); },
            [&](std::size_t n) { return vector(n, kv::value); }, out.data() + row);
      }
    }
  }
}

// Decode over the copy-on-fork baseline: every beam row attends to tokens 0..prompt+step of its own
// pages (written by write_prompt + fork, reorder and write_step).
template <class T>
void decode(exec::host_t, CopyOnForkKvCache<T, MemorySpace::host>& cache, const KvBatch<MemorySpace::host>& batch,
            std::size_t layer, std::size_t step, const Options& options, RowSpan<const T> q, RowSpan<T> out) {
  const char* op = "attention::decode";
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  const std::size_t group = detail::group_of(options, view.kv_heads, op);
  kv::detail::require_layer(layer, view.layers, op);
  kv::detail::require_step(step, view.max_steps, op);
  detail::require_elements(q.size(), b.total_beams, options.q_heads, view.head_dim, op, "q");
  detail::require_elements(out.size(), b.total_beams, options.q_heads, view.head_dim, op, "out");
  const double scale = detail::scale_of(options, view.head_dim);
  for (std::size_t i = 0; i < b.count; ++i) {
    const std::uint32_t slot = b.slots[i];
    for (std::uint32_t beam = 0; beam < b.beam_begin[i + 1] - b.beam_begin[i]; ++beam) {
      for (std::size_t h = 0; h < options.q_heads; ++h) {
        const std::size_t row = ((b.beam_begin[i] + beam) * options.q_heads + h) * view.head_dim;
        detail::attend(
            q.data() + row, view.head_dim, scale, view.prompt_tokens[slot] + step + 1,
            [&](std::size_t n) { return view.token(slot, beam, n, layer, h / group, kv::key); },
            [&](std::size_t n) { return view.token(slot, beam, n, layer, h / group, kv::value); }, out.data() + row);
      }
    }
  }
}

}  // namespace xgr::attention
