// xgr/kv/cuda.cuh — device KvPool / CopyOnForkKvCache operations: metadata upload, KV writes, beam
// reorders. Same arguments and meaning as xgr/kv/host.hpp, with exec::cuda and device pools; every
// function enqueues on exec.stream and returns without synchronising.
//
// All of them are bandwidth-bound copies of head_dim-long vectors: one thread moves 16 bytes, and a
// warp moves whole vectors (a 128-dim bf16 vector is 16 threads), so global accesses are coalesced.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "xgr/core/cuda.cuh"
#include "xgr/kv/copy_on_fork.hpp"
#include "xgr/kv/host.hpp"
#include "xgr/kv/pool.hpp"

namespace xgr {

namespace kv::detail {

template <class T>
void upload(T* device, const T* host, std::size_t count, CUstream_st* stream) {
  if (count == 0) return;
  XGR_CUDA_CHECK(cudaMemcpyAsync(device, host, count * sizeof(T), cudaMemcpyHostToDevice, stream));
}

template <class T>
void fill_parents_device(T* ancestry, std::size_t count, CUstream_st* stream) {
  if (count == 0) return;
  XGR_CUDA_CHECK(cudaMemsetAsync(ancestry, 0xff, count * sizeof(T), stream));  // every byte 0xff = no_parent
  XGR_CUDA_CHECK(cudaStreamSynchronize(stream));
}

inline constexpr int copy_threads = 256;

// 16-byte chunks per head_dim vector.
template <class T>
__host__ __device__ constexpr unsigned chunks_per_vector(unsigned head_dim) {
  return head_dim * static_cast<unsigned>(sizeof(T)) / 16u;
}

template <class T>
__device__ __forceinline__ void copy_chunk(T* target, const T* source, unsigned chunk) {
  reinterpret_cast<uint4*>(target)[chunk] = reinterpret_cast<const uint4*>(source)[chunk];
}

// grid (ceil(max_rows * kv_heads * chunks / threads), requests). Rows are tokens (prompt) or beams (step).
template <class T, class Layout>
__global__ void write_prompt_kernel(KvPoolView<T, Layout> view, KvBatchView batch, unsigned layer, const T* k, const T* v) {
  const unsigned i = blockIdx.y;
  const unsigned slot = batch.slots[i];
  const unsigned chunks = chunks_per_vector<T>(view.head_dim);
  const unsigned work = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned chunk = work % chunks;
  const unsigned head = work / chunks % view.kv_heads;
  const unsigned token = work / chunks / view.kv_heads;
  if (token >= view.prompt_tokens[slot] || token < view.shared_tokens[slot]) return;
  const std::size_t source = (static_cast<std::size_t>(batch.token_begin[i] + token) * view.kv_heads + head) * view.head_dim;
  copy_chunk(view.prefix_token(slot, token, layer, head, kv::key), k + source, chunk);
  copy_chunk(view.prefix_token(slot, token, layer, head, kv::value), v + source, chunk);
}

template <class T, class Layout>
__global__ void write_step_kernel(KvPoolView<T, Layout> view, KvBatchView batch, unsigned layer, unsigned step, const T* k,
                                  const T* v) {
  const unsigned i = blockIdx.y;
  const unsigned chunks = chunks_per_vector<T>(view.head_dim);
  const unsigned work = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned chunk = work % chunks;
  const unsigned head = work / chunks % view.kv_heads;
  const unsigned beam = work / chunks / view.kv_heads;
  if (beam >= batch.beam_begin[i + 1] - batch.beam_begin[i]) return;
  const std::size_t source = (static_cast<std::size_t>(batch.beam_begin[i] + beam) * view.kv_heads + head) * view.head_dim;
  copy_chunk(view.beam_token(batch.slots[i], step, beam, layer, head, kv::key), k + source, chunk);
  copy_chunk(view.beam_token(batch.slots[i], step, beam, layer, head, kv::value), v + source, chunk);
}

// One thread per beam row. A parent outside its request cannot be reported from the device; it is
// recorded as no_parent (a dead beam), so attention never reads another request's KV. The host
// version throws instead.
template <class T, class Layout>
__global__ void record_parents_kernel(KvPoolView<T, Layout> view, KvBatchView batch, unsigned level, const std::uint32_t* parent_rows) {
  const unsigned i = blockIdx.y;
  const unsigned begin = batch.beam_begin[i];
  const unsigned end = batch.beam_begin[i + 1];
  for (unsigned row = begin + blockIdx.x * blockDim.x + threadIdx.x; row < end; row += gridDim.x * blockDim.x) {
    const std::uint32_t parent = parent_rows[row];
    view.parents(batch.slots[i], level)[row - begin] = parent >= begin && parent < end ? parent - begin : no_parent;
  }
}

template <class T>
__global__ void cow_write_kernel(CopyOnForkView<T> view, KvBatchView batch, unsigned layer, int step, const T* k, const T* v) {
  // step < 0: prompt tokens into beam 0; step >= 0: token prompt + step of every beam row.
  const unsigned i = blockIdx.y;
  const unsigned slot = batch.slots[i];
  const unsigned chunks = chunks_per_vector<T>(view.head_dim);
  const unsigned work = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned chunk = work % chunks;
  const unsigned head = work / chunks % view.kv_heads;
  const unsigned row = work / chunks / view.kv_heads;
  const bool prompt = step < 0;
  const unsigned rows = prompt ? view.prompt_tokens[slot] : batch.beam_begin[i + 1] - batch.beam_begin[i];
  if (row >= rows) return;
  const unsigned first = prompt ? batch.token_begin[i] : batch.beam_begin[i];
  const std::size_t source = (static_cast<std::size_t>(first + row) * view.kv_heads + head) * view.head_dim;
  const unsigned beam = prompt ? 0 : row;
  const unsigned token = prompt ? row : view.prompt_tokens[slot] + static_cast<unsigned>(step);
  copy_chunk(view.token(slot, beam, token, layer, head, kv::key), k + source, chunk);
  copy_chunk(view.token(slot, beam, token, layer, head, kv::value), v + source, chunk);
}

// grid (ceil(prompt vectors * chunks / threads), max_beams - 1, requests): beam 0's prompt -> beam y+1.
template <class T>
__global__ void cow_fork_kernel(CopyOnForkView<T> view, KvBatchView batch) {
  const unsigned i = blockIdx.z;
  const unsigned slot = batch.slots[i];
  const unsigned beam = blockIdx.y + 1;
  if (beam >= view.beam_width[slot]) return;
  const unsigned chunks = chunks_per_vector<T>(view.head_dim);
  const std::size_t work = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const unsigned chunk = work % chunks;
  std::size_t vector = work / chunks;  // over (token, layer, head, kv)
  const unsigned kv_index = vector % 2;
  vector /= 2;
  const unsigned head = vector % view.kv_heads;
  vector /= view.kv_heads;
  const unsigned layer = vector % view.layers;
  const std::size_t token = vector / view.layers;
  if (token >= view.prompt_tokens[slot]) return;
  copy_chunk(view.token(slot, beam, token, layer, head, kv_index), view.token(slot, 0, token, layer, head, kv_index), chunk);
}

// Gather (Scatter = false) the parents' decode tokens 0..level-1 into scratch rows, or scatter
// (Scatter = true) scratch rows into the children. grid (ceil(vectors * chunks / threads), total beams).
template <class T, bool Scatter>
__global__ void cow_reorder_kernel(CopyOnForkView<T> view, KvBatchView batch, unsigned level, const std::uint32_t* parent_rows,
                                   T* scratch) {
  const unsigned row = blockIdx.y;
  unsigned i = 0;
  while (batch.beam_begin[i + 1] <= row) ++i;
  const unsigned begin = batch.beam_begin[i];
  const std::uint32_t parent = parent_rows[row];
  if (parent < begin || parent >= batch.beam_begin[i + 1]) return;  // dead (or foreign) rows keep their KV
  const unsigned slot = batch.slots[i];
  const unsigned chunks = chunks_per_vector<T>(view.head_dim);
  const std::size_t work = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const unsigned chunk = work % chunks;
  std::size_t vector = work / chunks;  // over (step, layer, head, kv), the host reorder's order
  const std::size_t row_vectors = static_cast<std::size_t>(level) * view.layers * view.kv_heads * 2;
  if (vector >= row_vectors) return;
  T* staged = scratch + (static_cast<std::size_t>(row) * row_vectors + vector) * view.head_dim;
  const unsigned kv_index = vector % 2;
  vector /= 2;
  const unsigned head = vector % view.kv_heads;
  vector /= view.kv_heads;
  const unsigned layer = vector % view.layers;
  const unsigned step = static_cast<unsigned>(vector / view.layers);
  const unsigned token = view.prompt_tokens[slot] + step;
  if constexpr (Scatter) {
    copy_chunk(view.token(slot, row - begin, token, layer, head, kv_index), staged, chunk);
  } else {
    copy_chunk(staged, view.token(slot, parent - begin, token, layer, head, kv_index), chunk);
  }
}

inline unsigned copy_blocks(std::size_t items) {
  return static_cast<unsigned>((items + copy_threads - 1) / copy_threads);
}

}  // namespace kv::detail

namespace kv {

template <class T, class Layout>
void write_prompt(exec::cuda exec, KvPool<T, Layout, MemorySpace::device>& pool, const KvBatch<MemorySpace::device>& batch,
                  std::size_t layer, RowSpan<const T> k, RowSpan<const T> v) {
  const char* op = "kv::write_prompt";
  const auto view = pool.view();
  const KvBatchView& b = batch.view();
  detail::require_kv_rows(view, layer, b.total_tokens, k.size(), v.size(), op);
  if (b.count == 0) return;
  const std::size_t items = std::size_t{b.max_prompt_tokens} * view.kv_heads * detail::chunks_per_vector<T>(view.head_dim);
  detail::write_prompt_kernel<<<dim3(detail::copy_blocks(items), b.count), detail::copy_threads, 0, exec.stream>>>(
      view, b, static_cast<unsigned>(layer), k.data(), v.data());
  XGR_CUDA_CHECK_LAUNCH();
}

template <class T, class Layout>
void write_step(exec::cuda exec, KvPool<T, Layout, MemorySpace::device>& pool, const KvBatch<MemorySpace::device>& batch,
                std::size_t layer, std::size_t step, RowSpan<const T> k, RowSpan<const T> v) {
  const char* op = "kv::write_step";
  const auto view = pool.view();
  const KvBatchView& b = batch.view();
  detail::require_kv_rows(view, layer, b.total_beams, k.size(), v.size(), op);
  detail::require_step(step, view.max_steps, op);
  if (b.count == 0) return;
  const std::size_t items = std::size_t{b.max_beams} * view.kv_heads * detail::chunks_per_vector<T>(view.head_dim);
  detail::write_step_kernel<<<dim3(detail::copy_blocks(items), b.count), detail::copy_threads, 0, exec.stream>>>(
      view, b, static_cast<unsigned>(layer), static_cast<unsigned>(step), k.data(), v.data());
  XGR_CUDA_CHECK_LAUNCH();
}

// parents.parent_rows is device memory (BeamSearcher<exec::cuda>::parents(level)).
template <class T, class Layout>
void record_parents(exec::cuda exec, KvPool<T, Layout, MemorySpace::device>& pool, const KvBatch<MemorySpace::device>& batch,
                    BeamParents parents) {
  const char* op = "kv::record_parents";
  const auto view = pool.view();
  const KvBatchView& b = batch.view();
  detail::require_step(parents.level, view.max_steps, op);
  detail::require_parent_rows(parents, b, op);
  if (b.count == 0) return;
  detail::record_parents_kernel<<<dim3(detail::copy_blocks(b.max_beams), b.count), detail::copy_threads, 0, exec.stream>>>(
      view, b, static_cast<unsigned>(parents.level), parents.parent_rows.data());
  XGR_CUDA_CHECK_LAUNCH();
}

template <class T>
void write_prompt(exec::cuda exec, CopyOnForkKvCache<T, MemorySpace::device>& cache, const KvBatch<MemorySpace::device>& batch,
                  std::size_t layer, RowSpan<const T> k, RowSpan<const T> v) {
  const char* op = "kv::write_prompt";
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  detail::require_kv_rows(view, layer, b.total_tokens, k.size(), v.size(), op);
  if (b.count == 0) return;
  const std::size_t items = std::size_t{b.max_prompt_tokens} * view.kv_heads * detail::chunks_per_vector<T>(view.head_dim);
  detail::cow_write_kernel<<<dim3(detail::copy_blocks(items), b.count), detail::copy_threads, 0, exec.stream>>>(
      view, b, static_cast<unsigned>(layer), -1, k.data(), v.data());
  XGR_CUDA_CHECK_LAUNCH();
}

template <class T>
void fork(exec::cuda exec, CopyOnForkKvCache<T, MemorySpace::device>& cache, const KvBatch<MemorySpace::device>& batch) {
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  if (b.count == 0 || b.max_beams < 2) return;
  const std::size_t items = std::size_t{b.max_prompt_tokens} * view.layers * view.kv_heads * 2 *
                            detail::chunks_per_vector<T>(view.head_dim);
  detail::cow_fork_kernel<<<dim3(detail::copy_blocks(items), b.max_beams - 1, b.count), detail::copy_threads, 0, exec.stream>>>(
      view, b);
  XGR_CUDA_CHECK_LAUNCH();
}

template <class T>
void reorder(exec::cuda exec, CopyOnForkKvCache<T, MemorySpace::device>& cache, const KvBatch<MemorySpace::device>& batch,
             BeamParents parents) {
  const char* op = "kv::reorder";
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  detail::require_step(parents.level, view.max_steps, op);
  detail::require_parent_rows(parents, b, op);
  if (b.count == 0 || parents.level == 0) return;
  const std::size_t items = parents.level * std::size_t{view.layers} * view.kv_heads * 2 * detail::chunks_per_vector<T>(view.head_dim);
  const dim3 grid(detail::copy_blocks(items), b.total_beams);
  const auto level = static_cast<unsigned>(parents.level);
  detail::cow_reorder_kernel<T, false><<<grid, detail::copy_threads, 0, exec.stream>>>(view, b, level, parents.parent_rows.data(),
                                                                                      cache.scratch());
  XGR_CUDA_CHECK_LAUNCH();
  detail::cow_reorder_kernel<T, true><<<grid, detail::copy_threads, 0, exec.stream>>>(view, b, level, parents.parent_rows.data(),
                                                                                     cache.scratch());
  XGR_CUDA_CHECK_LAUNCH();
}

template <class T>
void write_step(exec::cuda exec, CopyOnForkKvCache<T, MemorySpace::device>& cache, const KvBatch<MemorySpace::device>& batch,
                std::size_t layer, std::size_t step, RowSpan<const T> k, RowSpan<const T> v) {
  const char* op = "kv::write_step";
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  detail::require_kv_rows(view, layer, b.total_beams, k.size(), v.size(), op);
  detail::require_step(step, view.max_steps, op);
  if (b.count == 0) return;
  const std::size_t items = std::size_t{b.max_beams} * view.kv_heads * detail::chunks_per_vector<T>(view.head_dim);
  detail::cow_write_kernel<<<dim3(detail::copy_blocks(items), b.count), detail::copy_threads, 0, exec.stream>>>(
      view, b, static_cast<unsigned>(layer), static_cast<int>(step), k.data(), v.data());
  XGR_CUDA_CHECK_LAUNCH();
}

}  // namespace kv
}  // namespace xgr
