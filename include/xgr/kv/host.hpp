// xgr/kv/host.hpp — writing KV into a host KvPool / CopyOnForkKvCache, and recording beam reorders.
//
// The readable reference of the operations a decode loop performs on its cache each step; the CUDA
// versions in xgr/kv/cuda.cuh take the same arguments with exec::cuda and device pools.
//
//   prefill:           write_prompt(layer, K, V)           for every layer
//   (copy-on-fork)     fork()                               beam 0's prompt -> every beam
//   decode step s:     record_parents({parents, s})         KvPool: B indices per request
//                      reorder({parents, s})                copy-on-fork: copies parents' decode KV
//                      write_step(layer, s, K, V)           the new token of every beam row
//
// K and V inputs are packed [rows][kv_heads][head_dim]: rows are the batch's prompt tokens
// (batch.token_begin) for write_prompt and its beam rows (batch.beam_begin) for write_step.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <string>

#include "xgr/core/error.hpp"
#include "xgr/core/exec.hpp"
#include "xgr/kv/copy_on_fork.hpp"
#include "xgr/kv/pool.hpp"

namespace xgr::kv {

namespace detail {

inline void require_rows(std::size_t elements, std::size_t rows, std::size_t kv_heads, std::size_t head_dim, const char* op,
                         const char* what) {
  require_argument(elements == rows * kv_heads * head_dim, op,
                   [&] { return std::string(what) + " holds " + std::to_string(elements) + " elements, expected " +
                                    std::to_string(rows) +
                                    " rows x " + std::to_string(kv_heads) + " kv heads x " + std::to_string(head_dim); });
}

inline void require_layer(std::size_t layer, std::size_t layers, const char* op) {
  require_argument(layer < layers, op, [&] { return "layer " + std::to_string(layer) + " of " + std::to_string(layers); });
}

inline void require_step(std::size_t step, std::size_t max_steps, const char* op) {
  require_argument(step < max_steps, op,
                   [&] { return "step " + std::to_string(step) + " but the cache holds " + std::to_string(max_steps); });
}

// The checks every K/V write shares: the layer exists, and K and V hold `rows` rows.
template <class View>
void require_kv_rows(const View& view, std::size_t layer, std::size_t rows, std::size_t k_size, std::size_t v_size, const char* op) {
  require_layer(layer, view.layers, op);
  require_rows(k_size, rows, view.kv_heads, view.head_dim, op, "K");
  require_rows(v_size, rows, view.kv_heads, view.head_dim, op, "V");
}

// A reorder names a parent for every beam row of the batch.
inline void require_parent_rows(const BeamParents& parents, const KvBatchView& batch, const char* op) {
  require_argument(parents.parent_rows.size() >= batch.total_beams, op,
                   [&] { return std::to_string(parents.parent_rows.size()) + " parent rows for " +
                                    std::to_string(batch.total_beams) + " beams"; });
}

// The request-local parent of beam row `row` of request i, validated: a parent outside the request is
// a caller bug, and a silently wrong lineage would corrupt attention.
inline std::uint32_t local_parent(const KvBatchView& batch, std::size_t i, std::uint32_t parent_row, const char* op) {
  if (parent_row == no_parent) return no_parent;
  if (parent_row < batch.beam_begin[i] || parent_row >= batch.beam_begin[i + 1]) {
    throw Error(ErrorKind::invalid_argument, op,
                "parent row " + std::to_string(parent_row) + " is outside request " + std::to_string(i) + "'s rows [" +
                    std::to_string(batch.beam_begin[i]) + ", " + std::to_string(batch.beam_begin[i + 1]) + ")");
  }
  return parent_row - batch.beam_begin[i];
}

}  // namespace detail

// Prompt K/V of layer `layer` into the request's pages. Tokens below the request's shared_tokens
// live in a donor's pages and are not written (the donor wrote them).
template <class T, class Layout>
void write_prompt(exec::host_t, KvPool<T, Layout, MemorySpace::host>& pool, const KvBatch<MemorySpace::host>& batch,
                  std::size_t layer, RowSpan<const T> k, RowSpan<const T> v) {
  const char* op = "kv::write_prompt";
  const auto view = pool.view();
  const KvBatchView& b = batch.view();
  detail::require_kv_rows(view, layer, b.total_tokens, k.size(), v.size(), op);
  for (std::size_t i = 0; i < b.count; ++i) {
    const std::uint32_t slot = b.slots[i];
    for (std::size_t t = view.shared_tokens[slot]; t < view.prompt_tokens[slot]; ++t) {
      for (std::size_t h = 0; h < view.kv_heads; ++h) {
        const std::size_t source = ((b.token_begin[i] + t) * view.kv_heads + h) * view.head_dim;
        std::copy_n(k.data() + source, view.head_dim, view.prefix_token(slot, t, layer, h, kv::key));
        std::copy_n(v.data() + source, view.head_dim, view.prefix_token(slot, t, layer, h, kv::value));
      }
    }
  }
}

// The K/V of every beam row's token chosen at `step` into its slot (step, row) of the beam region.
template <class T, class Layout>
void write_step(exec::host_t, KvPool<T, Layout, MemorySpace::host>& pool, const KvBatch<MemorySpace::host>& batch,
                std::size_t layer, std::size_t step, RowSpan<const T> k, RowSpan<const T> v) {
  const char* op = "kv::write_step";
  const auto view = pool.view();
  const KvBatchView& b = batch.view();
  detail::require_kv_rows(view, layer, b.total_beams, k.size(), v.size(), op);
  detail::require_step(step, view.max_steps, op);
  for (std::size_t i = 0; i < b.count; ++i) {
    for (std::size_t beam = 0; beam < b.beam_begin[i + 1] - b.beam_begin[i]; ++beam) {
      for (std::size_t h = 0; h < view.kv_heads; ++h) {
        const std::size_t source = ((b.beam_begin[i] + beam) * view.kv_heads + h) * view.head_dim;
        std::copy_n(k.data() + source, view.head_dim, view.beam_token(b.slots[i], step, beam, layer, h, kv::key));
        std::copy_n(v.data() + source, view.head_dim, view.beam_token(b.slots[i], step, beam, layer, h, kv::value));
      }
    }
  }
}

// Records the beam reorder of step parents.level: B indices per request, no KV moves. A parent row
// outside its request's rows is Error(invalid_argument), raised before anything is written.
template <class T, class Layout>
void record_parents(exec::host_t, KvPool<T, Layout, MemorySpace::host>& pool, const KvBatch<MemorySpace::host>& batch,
                    BeamParents parents) {
  const char* op = "kv::record_parents";
  const auto view = pool.view();
  const KvBatchView& b = batch.view();
  detail::require_step(parents.level, view.max_steps, op);
  detail::require_parent_rows(parents, b, op);
  for (std::size_t i = 0; i < b.count; ++i) {
    for (std::uint32_t row = b.beam_begin[i]; row < b.beam_begin[i + 1]; ++row) (void)detail::local_parent(b, i, parents.parent_rows[row], op);
  }
  for (std::size_t i = 0; i < b.count; ++i) {
    std::uint32_t* out = view.parents(b.slots[i], parents.level);
    for (std::uint32_t row = b.beam_begin[i]; row < b.beam_begin[i + 1]; ++row) {
      out[row - b.beam_begin[i]] = detail::local_parent(b, i, parents.parent_rows[row], op);
    }
  }
}

// --- the copy-on-fork baseline ------------------------------------------------------------------

// Prompt K/V of `layer` into beam 0's pages (fork() then copies them to the other beams).
template <class T>
void write_prompt(exec::host_t, CopyOnForkKvCache<T, MemorySpace::host>& cache, const KvBatch<MemorySpace::host>& batch,
                  std::size_t layer, RowSpan<const T> k, RowSpan<const T> v) {
  const char* op = "kv::write_prompt";
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  detail::require_kv_rows(view, layer, b.total_tokens, k.size(), v.size(), op);
  for (std::size_t i = 0; i < b.count; ++i) {
    for (std::size_t t = 0; t < view.prompt_tokens[b.slots[i]]; ++t) {
      for (std::size_t h = 0; h < view.kv_heads; ++h) {
        const std::size_t source = ((b.token_begin[i] + t) * view.kv_heads + h) * view.head_dim;
        std::copy_n(k.data() + source, view.head_dim, view.token(b.slots[i], 0, t, layer, h, kv::key));
        std::copy_n(v.data() + source, view.head_dim, view.token(b.slots[i], 0, t, layer, h, kv::value));
      }
    }
  }
}

// Copies beam 0's prompt KV (every layer) to every other beam of each request.
template <class T>
void fork(exec::host_t, CopyOnForkKvCache<T, MemorySpace::host>& cache, const KvBatch<MemorySpace::host>& batch) {
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  for (std::size_t i = 0; i < b.count; ++i) {
    const std::uint32_t slot = b.slots[i];
    for (std::size_t beam = 1; beam < view.beam_width[slot]; ++beam) {
      for (std::size_t t = 0; t < view.prompt_tokens[slot]; ++t) {
        for (std::size_t layer = 0; layer < view.layers; ++layer) {
          for (std::size_t h = 0; h < view.kv_heads; ++h) {
            for (std::size_t kv_index = 0; kv_index < 2; ++kv_index) {
              std::copy_n(view.token(slot, 0, t, layer, h, kv_index), view.head_dim, view.token(slot, beam, t, layer, h, kv_index));
            }
          }
        }
      }
    }
  }
}

// The physical reorder of step parents.level: every new beam row receives its parent's decode tokens
// 0..level-1 (every layer). Parents are gathered into scratch first, so a beam that is both a parent
// and a child is read before it is overwritten. Dead rows (no_parent) keep whatever they held.
template <class T>
void reorder(exec::host_t, CopyOnForkKvCache<T, MemorySpace::host>& cache, const KvBatch<MemorySpace::host>& batch,
             BeamParents parents) {
  const char* op = "kv::reorder";
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  detail::require_step(parents.level, view.max_steps, op);
  detail::require_parent_rows(parents, b, op);
  const std::size_t level = parents.level;
  const std::size_t vector = view.head_dim;
  const std::size_t row_elements = level * view.layers * view.kv_heads * 2 * vector;
  T* scratch = cache.scratch();
  auto each_vector = [&](std::uint32_t slot, std::size_t beam, auto&& fn) {
    std::size_t offset = 0;
    for (std::size_t s = 0; s < level; ++s) {
      const std::size_t t = view.prompt_tokens[slot] + s;
      for (std::size_t layer = 0; layer < view.layers; ++layer) {
        for (std::size_t h = 0; h < view.kv_heads; ++h) {
          for (std::size_t kv_index = 0; kv_index < 2; ++kv_index, offset += vector) fn(view.token(slot, beam, t, layer, h, kv_index), offset);
        }
      }
    }
  };
  for (std::size_t i = 0; i < b.count; ++i) {
    for (std::uint32_t row = b.beam_begin[i]; row < b.beam_begin[i + 1]; ++row) {
      const std::uint32_t parent = detail::local_parent(b, i, parents.parent_rows[row], op);
      if (parent == no_parent) continue;
      each_vector(b.slots[i], parent, [&](const T* source, std::size_t offset) {
        std::copy_n(source, vector, scratch + row * row_elements + offset);
      });
    }
  }
  for (std::size_t i = 0; i < b.count; ++i) {
    for (std::uint32_t row = b.beam_begin[i]; row < b.beam_begin[i + 1]; ++row) {
      if (parents.parent_rows[row] == no_parent) continue;
      each_vector(b.slots[i], row - b.beam_begin[i], [&](T* target, std::size_t offset) {
        std::copy_n(scratch + row * row_elements + offset, vector, target);
      });
    }
  }
}

// The K/V of every beam row's token chosen at `step` into token prompt + step of the beam's pages.
template <class T>
void write_step(exec::host_t, CopyOnForkKvCache<T, MemorySpace::host>& cache, const KvBatch<MemorySpace::host>& batch,
                std::size_t layer, std::size_t step, RowSpan<const T> k, RowSpan<const T> v) {
  const char* op = "kv::write_step";
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  detail::require_kv_rows(view, layer, b.total_beams, k.size(), v.size(), op);
  detail::require_step(step, view.max_steps, op);
  for (std::size_t i = 0; i < b.count; ++i) {
    const std::uint32_t slot = b.slots[i];
    for (std::size_t beam = 0; beam < b.beam_begin[i + 1] - b.beam_begin[i]; ++beam) {
      for (std::size_t h = 0; h < view.kv_heads; ++h) {
        const std::size_t source = ((b.beam_begin[i] + beam) * view.kv_heads + h) * view.head_dim;
        const std::size_t t = view.prompt_tokens[slot] + step;
        std::copy_n(k.data() + source, view.head_dim, view.token(slot, beam, t, layer, h, kv::key));
        std::copy_n(v.data() + source, view.head_dim, view.token(slot, beam, t, layer, h, kv::value));
      }
    }
  }
}

}  // namespace xgr::kv
