// xgr/attention/cuda.cuh — prefill and staged decode attention over a device KvPool, on tensor cores.
//
// One tile routine (attend_tile) serves every kernel: a block of up to 128 query rows attends
// to a range of keys read from KV pages, FlashAttention-2 style:
//
//   for each 64-key tile (cp.async, double-buffered in shared memory):
//     S = Q K^T          mma.sync m16n8k16, bf16/fp16 operands, fp32 accumulators; each warp owns 16 rows
//     online softmax     running row max and sum in registers; S is rescaled and exponentiated in place
//     O += P V           P re-used from S's accumulator registers as the A operand (no shared-memory trip)
//   out = O / sum, lse = max + log(sum)
//
// GQA is folded into the rows: the G = q_heads / kv_heads query heads that share a kv head are G
// consecutive rows of one block, so a K/V tile loaded once serves all of them. The kernels differ only
// in which rows and keys a block takes:
//
//   prefill        rows = (prompt token, head in group), keys = the prompt's pages, causal.
//   staged decode  stage 1: rows = (beam, head in group) of one request — all its beams as ONE block of
//                  queries — keys = the shared prompt pages, optionally split into chunks across blocks
//                  (flash-decoding) when the batch is too small to fill the GPU; writes fp32 partials
//                  (O, lse). Stage 2: one warp per (beam row, query head) attends to the beam's own
//                  <= L decode tokens found through the ancestry table and merges them with the
//                  partials by log-sum-exp.
//   copy-on-fork   the baseline: rows = the G heads of one beam, keys = the beam's private pages.
//
// The prompt KV of a request is therefore read from device memory once per layer and step (per split),
// instead of once per beam.
//
// On Hopper (a 9.0 device running sm_90a code) the prefix stage for head_dim 128 takes
// attend_tile_wgmma, the same algorithm on warpgroup MMA (see "the Hopper tile routine" below);
// Options::allow_wgmma = false keeps the portable mma.sync routine.
//
// Float KV (the precision path) has no tensor-core form: the same calls run small CUDA-core kernels,
// one warp per (query row, head) with an online softmax in fp32 (see "float KV" below).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "xgr/attention/host.hpp"
#include "xgr/core/cuda.cuh"
#include "xgr/core/dtype.hpp"
#include "xgr/core/workspace.hpp"
#include "xgr/kv/cuda.cuh"

namespace xgr::attention {

namespace detail {

inline constexpr int key_tile = 64;  // keys per shared-memory tile; pages hold a multiple of it
inline constexpr float log2e = 1.4426950408889634f;
inline constexpr float ln2 = 0.6931471805599453f;

// --- tensor-core and copy primitives ------------------------------------------------------------

template <class T>
struct MmaType;
template <>
struct MmaType<bfloat16> {
  __device__ static std::uint32_t pack(float lo, float hi) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&pair);
  }
  __device__ static void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  __device__ static float to_float(bfloat16 x) { return detail_bits_to_float(x.bits); }
  // The two elements of a packed pair (the lower address first).
  __device__ static float2 unpack(std::uint32_t pair) { return make_float2(__uint_as_float(pair << 16), __uint_as_float(pair & 0xFFFF0000u)); }
  __device__ static float detail_bits_to_float(std::uint16_t bits) { return __uint_as_float(static_cast<std::uint32_t>(bits) << 16); }
};
template <>
struct MmaType<half> {
  __device__ static std::uint32_t pack(float lo, float hi) {
    const __half2 pair = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&pair);
  }
  __device__ static void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  __device__ static float to_float(half x) { return __half2float(__ushort_as_half(x.bits)); }
  __device__ static float2 unpack(std::uint32_t pair) {
    __half2 value;
    *reinterpret_cast<std::uint32_t*>(&value) = pair;
    return __half22float2(value);
  }
};

__device__ __forceinline__ std::uint32_t shared_address(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], std::uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// 16-byte asynchronous copy; with `valid` false the target is zero-filled and the source not read
// (rows past a prompt's end must be zeros, not whatever the page holds: 0 * NaN would poison O).
// The target is a shared-memory address already converted (shared_address).
__device__ __forceinline__ void cp_async_16_shared(std::uint32_t target, const void* source, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(target), "l"(source), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_16(void* target, const void* source, bool valid) {
  cp_async_16_shared(shared_address(target), source, valid);
}
// 4-byte asynchronous copy (for word arrays of no particular alignment).
__device__ __forceinline__ void cp_async_4_shared(std::uint32_t target, const void* source) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(target), "l"(source));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

// --- the tile routine ---------------------------------------------------------------------------

// Shared-memory rows are padded by 8 elements (16 bytes): the 8 rows an ldmatrix reads then start in
// 8 different 4-bank groups, so the loads are conflict-free.
template <int HeadDim>
inline constexpr int smem_stride = HeadDim + 8;

// A block's shape: Warps warps, each owning MTiles tiles of 16 query rows. Two row tiles per warp
// let every K/V fragment loaded from shared memory feed two mma instructions, which halves the
// shared-memory traffic per flop (ldmatrix bandwidth, not the tensor cores, limits one tile per warp).
template <int Warps, int MTiles>
struct BlockShape {
  static constexpr int warps = Warps;
  static constexpr int m_tiles = MTiles;
  static constexpr int threads = Warps * 32;
  static constexpr int warp_rows = 16 * MTiles;
  static constexpr int rows = Warps * warp_rows;
};

template <class T, int HeadDim, class Shape>
constexpr std::size_t tile_smem_bytes() {
  return (std::size_t{Shape::rows} + 2 * 2 * key_tile) * smem_stride<HeadDim> * sizeof(T);
}

// Loads `rows` rows of HeadDim elements (row r from row_pointer(r)) into shared memory, zero-filling
// rows at or past `valid_rows`.
template <class T, int HeadDim, int Threads, class RowPointer>
__device__ __forceinline__ void load_rows(T* smem, int rows, int valid_rows, RowPointer&& row_pointer) {
  constexpr int chunks = HeadDim * static_cast<int>(sizeof(T)) / 16;
  for (int work = threadIdx.x; work < rows * chunks; work += Threads) {
    const int row = work / chunks;
    const int chunk = work % chunks;
    const bool valid = row < valid_rows;
    const T* source = row_pointer(valid ? row : 0);
    cp_async_16(smem + row * smem_stride<HeadDim> + chunk * 8, source + chunk * 8, valid);
  }
}

// What attend_tile returns per thread: the normalised output of its rows (g and g + 8 of each of its
// warp's 16-row tiles), in the mma accumulator layout, and the rows' log-sum-exp (natural log; -inf
// when the row saw no key).
template <int HeadDim, int MTiles>
struct TileResult {
  float o[MTiles][HeadDim / 8][4];
  float lse[MTiles][2];
};

// The block row of a thread's accumulator row: tile mt, half 0 (row g) or 1 (row g + 8).
template <class Shape>
__device__ __forceinline__ int block_row(int mt, int half_row) {
  return (threadIdx.x / 32) * Shape::warp_rows + mt * 16 + (threadIdx.x % 32) / 4 + half_row * 8;
}

// Attends the block's query rows (row r at query_row(r), r < rows) to keys [key_begin, key_end):
// key tile starting at key n is key_tile(n, kv::key / kv::value) (64 contiguous rows). With Causal,
// row r sees keys <= last_key(r) only, and last_key must not decrease with r. key_begin is a
// multiple of 64.
template <class T, int HeadDim, class Shape, bool Causal, class QueryRow, class KeyTile, class LastKey>
__device__ __forceinline__ void attend_tile(TileResult<HeadDim, Shape::m_tiles>& result, int rows, int key_begin, int key_end,
                                            float scale_log2, QueryRow&& query_row, KeyTile&& key_tile_at, LastKey&& last_key,
                                            T* smem) {
  using Mma = MmaType<T>;
  constexpr int MT = Shape::m_tiles;
  constexpr int stride = smem_stride<HeadDim>;
  T* q_smem = smem;
  T* kv_smem = smem + Shape::rows * stride;  // [stage][K|V][key_tile][stride]
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int quad_lane = lane % 4;  // t: columns 2t, 2t + 1 of each 8-wide accumulator tile

  load_rows<T, HeadDim, Shape::threads>(q_smem, Shape::rows, rows, query_row);
  auto load_keys = [&](int stage, int first_key) {
    const int valid = min(key_tile, key_end - first_key);
    T* k_smem = kv_smem + (stage * 2 + 0) * key_tile * stride;
    T* v_smem = kv_smem + (stage * 2 + 1) * key_tile * stride;
    const T* k_tile = key_tile_at(first_key, kv::key);
    const T* v_tile = key_tile_at(first_key, kv::value);
    load_rows<T, HeadDim, Shape::threads>(k_smem, key_tile, valid, [&](int r) { return k_tile + r * HeadDim; });
    load_rows<T, HeadDim, Shape::threads>(v_smem, key_tile, valid, [&](int r) { return v_tile + r * HeadDim; });
  };
  if (key_begin < key_end) load_keys(0, key_begin);
  cp_async_commit();

  float o[MT][HeadDim / 8][4] = {};
  float row_max[MT][2], row_sum[MT][2], my_last_key[MT][2];
  int min_last_key = key_end - 1;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row_max[mt][h] = -INFINITY;
      row_sum[mt][h] = 0.0f;
      my_last_key[mt][h] = Causal ? min(key_end - 1, last_key(block_row<Shape>(mt, h))) : key_end - 1;
      min_last_key = min(min_last_key, static_cast<int>(my_last_key[mt][h]));
    }
  }
  // The warp's rows see no key past this one: later tiles are skipped for the whole warp.
  const int warp_last_key = Causal ? min(key_end - 1, last_key(warp * Shape::warp_rows + Shape::warp_rows - 1)) : key_end - 1;

  int stage = 0;
  for (int first_key = key_begin; first_key < key_end; first_key += key_tile, stage ^= 1) {
    if (first_key + key_tile < key_end) load_keys(stage ^ 1, first_key + key_tile);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    if (first_key <= warp_last_key) {
      const T* k_smem = kv_smem + (stage * 2 + 0) * key_tile * stride;
      const T* v_smem = kv_smem + (stage * 2 + 1) * key_tile * stride;

      // S = Q K^T for the warp's rows x 64 keys: per row tile, 8 accumulator tiles of 16 x 8.
      float s[MT][key_tile / 8][4] = {};
#pragma unroll
      for (int kk = 0; kk < HeadDim / 16; ++kk) {
        std::uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          ldmatrix_x4(a[mt], shared_address(q_smem + (warp * Shape::warp_rows + mt * 16 + (lane & 15)) * stride + kk * 16 + (lane >> 4) * 8));
        }
#pragma unroll
        for (int nt = 0; nt < key_tile / 8; nt += 2) {
          std::uint32_t b[4];
          const int key = nt * 8 + ((lane >> 4) << 3) + (lane & 7);
          const int dim = kk * 16 + (((lane >> 3) & 1) << 3);
          ldmatrix_x4(b, shared_address(k_smem + key * stride + dim));
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            Mma::mma(s[mt][nt], a[mt], b[0], b[1]);
            Mma::mma(s[mt][nt + 1], a[mt], b[2], b[3]);
          }
        }
      }

      // Scale into log2 units and mask keys past the range (or the causal limit) on edge tiles.
      const bool edge = first_key + key_tile - 1 > min_last_key;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int nt = 0; nt < key_tile / 8; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float value = s[mt][nt][e] * scale_log2;
            if (edge) {
              const int key = first_key + nt * 8 + quad_lane * 2 + (e & 1);
              if (key > my_last_key[mt][e >> 1]) value = -INFINITY;
            }
            s[mt][nt][e] = value;
          }
        }
      }

      // Online softmax: new running max per row (reduced over the quad that shares the row).
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int half_row = 0; half_row < 2; ++half_row) {
          float tile_max = -INFINITY;
#pragma unroll
          for (int nt = 0; nt < key_tile / 8; ++nt) tile_max = fmaxf(tile_max, fmaxf(s[mt][nt][half_row * 2], s[mt][nt][half_row * 2 + 1]));
          tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
          tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
          const float new_max = fmaxf(row_max[mt][half_row], tile_max);
          // A row that has seen only masked keys keeps max -inf; subtracting 0 then yields exp2(-inf) = 0.
          const float base = new_max == -INFINITY ? 0.0f : new_max;
          const float correction = exp2f(row_max[mt][half_row] - base);
          row_max[mt][half_row] = new_max;
          float tile_sum = 0.0f;
#pragma unroll
          for (int nt = 0; nt < key_tile / 8; ++nt) {
            s[mt][nt][half_row * 2] = exp2f(s[mt][nt][half_row * 2] - base);
            s[mt][nt][half_row * 2 + 1] = exp2f(s[mt][nt][half_row * 2 + 1] - base);
            tile_sum += s[mt][nt][half_row * 2] + s[mt][nt][half_row * 2 + 1];
          }
          row_sum[mt][half_row] = row_sum[mt][half_row] * correction + tile_sum;
#pragma unroll
          for (int dn = 0; dn < HeadDim / 8; ++dn) {
            o[mt][dn][half_row * 2] *= correction;
            o[mt][dn][half_row * 2 + 1] *= correction;
          }
        }
      }

      // O += P V: P's accumulator tiles 2kc and 2kc+1 are exactly the A fragment of keys 16kc..16kc+15.
#pragma unroll
      for (int kc = 0; kc < key_tile / 16; ++kc) {
        std::uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          a[mt][0] = Mma::pack(s[mt][2 * kc][0], s[mt][2 * kc][1]);
          a[mt][1] = Mma::pack(s[mt][2 * kc][2], s[mt][2 * kc][3]);
          a[mt][2] = Mma::pack(s[mt][2 * kc + 1][0], s[mt][2 * kc + 1][1]);
          a[mt][3] = Mma::pack(s[mt][2 * kc + 1][2], s[mt][2 * kc + 1][3]);
        }
#pragma unroll
        for (int dn = 0; dn < HeadDim / 8; dn += 2) {
          std::uint32_t b[4];
          const int key = kc * 16 + (((lane >> 3) & 1) << 3) + (lane & 7);
          const int dim = dn * 8 + ((lane >> 4) << 3);
          ldmatrix_x4_trans(b, shared_address(v_smem + key * stride + dim));
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            Mma::mma(o[mt][dn], a[mt], b[0], b[1]);
            Mma::mma(o[mt][dn + 1], a[mt], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads();  // the stage is overwritten by the next iteration's prefetch
  }
  cp_async_wait<0>();

#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int half_row = 0; half_row < 2; ++half_row) {
      float sum = row_sum[mt][half_row];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inverse = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
      for (int dn = 0; dn < HeadDim / 8; ++dn) {
        result.o[mt][dn][half_row * 2] = o[mt][dn][half_row * 2] * inverse;
        result.o[mt][dn][half_row * 2 + 1] = o[mt][dn][half_row * 2 + 1] * inverse;
      }
      result.lse[mt][half_row] = sum > 0.0f ? (row_max[mt][half_row] + log2f(sum)) * ln2 : -INFINITY;
    }
  }
}

// Writes a thread's share of a TileResult: row r of the block goes to flat row index out_row(r) (or
// nowhere when r >= rows), as T pairs.
template <class T, int HeadDim, class Shape, class OutRow>
__device__ __forceinline__ void store_rows(const TileResult<HeadDim, Shape::m_tiles>& result, int rows, T* out, OutRow&& out_row) {
  using Mma = MmaType<T>;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int mt = 0; mt < Shape::m_tiles; ++mt) {
#pragma unroll
    for (int half_row = 0; half_row < 2; ++half_row) {
      const int row = block_row<Shape>(mt, half_row);
      if (row >= rows) continue;
      T* target = out + static_cast<std::size_t>(out_row(row)) * HeadDim + (lane % 4) * 2;
#pragma unroll
      for (int dn = 0; dn < HeadDim / 8; ++dn) {
        *reinterpret_cast<std::uint32_t*>(target + dn * 8) = Mma::pack(result.o[mt][dn][half_row * 2], result.o[mt][dn][half_row * 2 + 1]);
      }
    }
  }
}

// --- the Hopper tile routine (sm_90a): wgmma --------------------------------------------------------
//
// The same algorithm as attend_tile for the non-causal prefix stage with head_dim 128, on Hopper's
// warpgroup MMA: two warpgroups of 64 query rows share each K/V tile; S = Q K^T is 8 wgmma.m64n64k16
// with both operands read from shared memory through descriptors, and O += P V is 4 wgmma.m64n128k16
// with P taken from registers. wgmma's accumulator and register-A layouts per warp are those of
// mma.m16n8k16, so the online softmax is attend_tile's, unchanged.
//
// Operands live in 128-byte-swizzled tiles of 64 rows x 64 elements (128 B per row, 8 KiB; a row of
// 128 elements is two tiles): chunk c (16 B) of row r sits at chunk position c ^ (r % 8), the layout
// the tensor memory accelerator writes with 128B swizzling. Here cp.async writes it.
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define XGR_ATTENTION_WGMMA 1
#else
#define XGR_ATTENTION_WGMMA 0
#endif

namespace wgmma {

inline constexpr int tile_bytes = 64 * 128;
using HopperBlock = BlockShape<8, 1>;  // 2 warpgroups x 64 rows
// Q (2 warpgroups x 2 column halves) + 2 stages x (K, V) x 2 column halves, 512 bytes for fused
// decode's lineage (up to 128 own tokens, which the stages then hold), 12 KiB for fused decode's
// parent links (steps 1..step of the request, when they fit), plus 1 KiB to align the base: swizzle
// atoms must start on 1024-byte boundaries.
inline constexpr int kv_and_lineage_bytes = 2 * 2 * 2 * tile_bytes + 512;
inline constexpr int staged_parent_bytes = 12 * 1024;
inline constexpr std::size_t smem_bytes = 4 * std::size_t{tile_bytes} + kv_and_lineage_bytes + staged_parent_bytes + 1024;
// Two blocks per multiprocessor (decode_blocks_per_sm) must fit in Hopper's 228 KiB, with the 1 KiB
// the hardware reserves per block.
static_assert(2 * (smem_bytes + 1024) <= 228 * 1024);

// The number of parent links fused decode stages in shared memory for `step`, or 0 where they do not
// fit (the walk then reads device memory).
__host__ __device__ __forceinline__ constexpr unsigned staged_parent_words(int step, unsigned max_beams) {
  const unsigned long long words = step > 0 ? static_cast<unsigned long long>(step) * max_beams : 0;
  return words * sizeof(unsigned) <= staged_parent_bytes ? static_cast<unsigned>(words) : 0u;
}

__device__ __forceinline__ int swizzled(int row, int chunk) { return row * 128 + ((chunk ^ (row & 7)) << 4); }

// A shared-memory matrix descriptor with 128-byte swizzling. K-major operands (Q, K): the leading
// offset is unused (1), the stride is 1024 B between 8-row groups. N-major operand (V, read as
// [key][dim]): the leading offset is the 8 KiB between the two 64-column halves, the stride the
// 1024 B between groups of 8 keys.
__host__ __device__ __forceinline__ constexpr std::uint64_t descriptor(std::uint32_t address, std::uint32_t leading_bytes,
                                                                      std::uint32_t stride_bytes) {
  return std::uint64_t{(address & 0x3FFFFu) >> 4} | (std::uint64_t{(leading_bytes & 0x3FFFFu) >> 4} << 16) |
         (std::uint64_t{(stride_bytes & 0x3FFFFu) >> 4} << 32) | (std::uint64_t{1} << 62);
}

// The same from an address already in 16-byte units (shared_address(p) >> 4). Where the offsets
// from one such base are constants, a descriptor costs one addition: the high word is a constant
// and the fields of the low word do not overlap (the address is below 2^18 bytes).
template <std::uint32_t LeadingBytes, std::uint32_t StrideBytes>
__host__ __device__ __forceinline__ constexpr std::uint64_t descriptor_at(std::uint32_t address16) {
  constexpr std::uint32_t high = (StrideBytes >> 4) | (1u << 30);
  return (std::uint64_t{high} << 32) | (address16 + ((LeadingBytes >> 4) << 16));
}
// The two agree over the whole of a multiprocessor's shared memory (228 KiB) for the operands the
// routine builds: K-major Q and K tiles, N-major V tiles.
static_assert(descriptor_at<16, 1024>(0) == descriptor(0, 16, 1024));
static_assert(descriptor_at<16, 1024>((228 * 1024 - 16) >> 4) == descriptor(228 * 1024 - 16, 16, 1024));
static_assert(descriptor_at<tile_bytes, 1024>((228 * 1024 - 16) >> 4) == descriptor(228 * 1024 - 16, tile_bytes, 1024));
static_assert(descriptor_at<tile_bytes, 1024>(0x1230 >> 4) == descriptor(0x1230, tile_bytes, 1024));

__device__ __forceinline__ void fence() {
#if XGR_ATTENTION_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void commit() {
#if XGR_ATTENTION_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wait() {
#if XGR_ATTENTION_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void commit_and_wait() {
  commit();
  wait();
}
// 2^x on the special-function unit, subnormal results flushed to zero: exp2f without fast math adds
// three instructions around it to keep them, and a weight below 2^-126 of the row's largest does not
// change a sum of at least 1.
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// cp.async writes through the generic proxy; wgmma reads through the async proxy.
__device__ __forceinline__ void fence_shared_for_async_proxy() {
#if XGR_ATTENTION_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

template <class T>
struct Instr;

#define XGR_WGMMA_INSTR(TYPE, PTX_TYPE)                                                                          \
  template <>                                                                                                    \
  struct Instr<TYPE> {                                                                                           \
    __device__ static void s(float (&s)[8][4], std::uint64_t a, std::uint64_t b, int accumulate) {               \
      XGR_WGMMA_S(PTX_TYPE)                                                                                      \
    }                                                                                                            \
    __device__ static void pv(float (&o)[16][4], const std::uint32_t (&a)[4], std::uint64_t b) {                 \
      XGR_WGMMA_PV(PTX_TYPE)                                                                                     \
    }                                                                                                            \
  };

#if XGR_ATTENTION_WGMMA
#define XGR_WGMMA_S(PTX_TYPE)                                                                                    \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                                     \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." PTX_TYPE "." PTX_TYPE " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n" \
               : "+f"(s[0][0]), "+f"(s[0][1]), "+f"(s[0][2]), "+f"(s[0][3]), "+f"(s[1][0]), "+f"(s[1][1]), "+f"(s[1][2]), "+f"(s[1][3]), "+f"(s[2][0]), "+f"(s[2][1]), "+f"(s[2][2]), "+f"(s[2][3]), "+f"(s[3][0]), "+f"(s[3][1]), "+f"(s[3][2]), "+f"(s[3][3]), "+f"(s[4][0]), "+f"(s[4][1]), "+f"(s[4][2]), "+f"(s[4][3]), "+f"(s[5][0]), "+f"(s[5][1]), "+f"(s[5][2]), "+f"(s[5][3]), "+f"(s[6][0]), "+f"(s[6][1]), "+f"(s[6][2]), "+f"(s[6][3]), "+f"(s[7][0]), "+f"(s[7][1]), "+f"(s[7][2]), "+f"(s[7][3])                                                                                           \
               : "l"(a), "l"(b), "r"(accumulate));
#define XGR_WGMMA_PV(PTX_TYPE)                                                                                   \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                                     \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." PTX_TYPE "." PTX_TYPE " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n" \
               : "+f"(o[0][0]), "+f"(o[0][1]), "+f"(o[0][2]), "+f"(o[0][3]), "+f"(o[1][0]), "+f"(o[1][1]), "+f"(o[1][2]), "+f"(o[1][3]), "+f"(o[2][0]), "+f"(o[2][1]), "+f"(o[2][2]), "+f"(o[2][3]), "+f"(o[3][0]), "+f"(o[3][1]), "+f"(o[3][2]), "+f"(o[3][3]), "+f"(o[4][0]), "+f"(o[4][1]), "+f"(o[4][2]), "+f"(o[4][3]), "+f"(o[5][0]), "+f"(o[5][1]), "+f"(o[5][2]), "+f"(o[5][3]), "+f"(o[6][0]), "+f"(o[6][1]), "+f"(o[6][2]), "+f"(o[6][3]), "+f"(o[7][0]), "+f"(o[7][1]), "+f"(o[7][2]), "+f"(o[7][3]), "+f"(o[8][0]), "+f"(o[8][1]), "+f"(o[8][2]), "+f"(o[8][3]), "+f"(o[9][0]), "+f"(o[9][1]), "+f"(o[9][2]), "+f"(o[9][3]), "+f"(o[10][0]), "+f"(o[10][1]), "+f"(o[10][2]), "+f"(o[10][3]), "+f"(o[11][0]), "+f"(o[11][1]), "+f"(o[11][2]), "+f"(o[11][3]), "+f"(o[12][0]), "+f"(o[12][1]), "+f"(o[12][2]), "+f"(o[12][3]), "+f"(o[13][0]), "+f"(o[13][1]), "+f"(o[13][2]), "+f"(o[13][3]), "+f"(o[14][0]), "+f"(o[14][1]), "+f"(o[14][2]), "+f"(o[14][3]), "+f"(o[15][0]), "+f"(o[15][1]), "+f"(o[15][2]), "+f"(o[15][3])                                                                                           \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
#else
#define XGR_WGMMA_S(PTX_TYPE) __trap();
#define XGR_WGMMA_PV(PTX_TYPE) __trap();
#endif

XGR_WGMMA_INSTR(bfloat16, "bf16")
XGR_WGMMA_INSTR(half, "f16")
#undef XGR_WGMMA_INSTR
#undef XGR_WGMMA_S
#undef XGR_WGMMA_PV

// Does this binary hold the wgmma kernels for the current device (sm_90a code on a 9.0 device)?
// A template, so that every translation unit including this header may define it.
template <int Unused = 0>
__global__ void probe_kernel(int* available) { *available = XGR_ATTENTION_WGMMA; }

inline bool available() {
  static const bool value = [] {
    int device = 0, major = 0, minor = 0;
    XGR_CUDA_CHECK(cudaGetDevice(&device));
    XGR_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    XGR_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    if (major != 9 || minor != 0) return false;
    DeviceBuffer<int> flag(1);
    probe_kernel<0><<<1, 1>>>(flag.data());
    XGR_CUDA_CHECK_LAUNCH();
    int host_flag = 0;
    XGR_CUDA_CHECK(cudaMemcpy(&host_flag, flag.data(), sizeof(int), cudaMemcpyDeviceToHost));
    return host_flag == 1;
  }();
  return value;
}

}  // namespace wgmma

// One walker thread's part of a chunk of its beam's ancestry: for steps top, top - 1, ...,
// top - count + 1 it stores where the ancestor keeps its token (step * max_beams + beam), or
// no_parent past a dead link, as entry(c, value) for c = 0, 1, ...; `walker` starts at the ancestor at
// step `top` and ends at the one at step top - count. parent_of(s, beam) reads the ancestry table.
template <class Parent, class Entry>
__device__ __forceinline__ void walk_ancestry(unsigned& walker, int top, int count, unsigned max_beams, Parent&& parent_of,
                                              Entry&& entry) {
  for (int c = 0; c < count; ++c) {
    const int s = top - c;
    entry(c, walker == no_parent ? no_parent : s * max_beams + walker);
    if (walker != no_parent && s > 0) {
      const unsigned parent = parent_of(s, walker);
      walker = parent == no_parent || parent >= max_beams ? no_parent : parent;
    }
  }
}

// The block rows' own decode tokens, for fused decode on Hopper: the tile routine attends to them
// after the prompt, as masked key tiles. `step` < 0: none (split decode merges them later).
template <class T>
struct OwnTokens {
  const T* keys = nullptr;                 // KvPoolView::beam_tokens(slot, layer, kv head, kv::key)
  const T* values = nullptr;               // the same for kv::value
  const std::uint32_t* parents = nullptr;  // KvPoolView::parents(slot, 0): [max_steps][max_beams]
  unsigned max_beams = 0;
  int step = -1;                           // the newest step; the rows see steps step, ..., 0
  int first_row = 0;                       // the block's first row among its request's beams * group
  int group = 1;                           // query heads per kv head: rows of one beam
};

// attend_tile for the Hopper block (HopperBlock, head_dim 128, not causal). `smem` is 1024-aligned.
// The keys come in two parts so that the page-table read of a tile is issued a tile ahead:
// tile_page(n) reads whatever locates the key tile starting at key n (a page number, from device
// memory), and key_tile_at(page, n, kv::key / kv::value) turns it into the tile's first element.
//
// With own tokens (own.step >= 0), each row then attends to its own decode tokens through the same
// tensor-core steps. The block's beams walk their ancestry into shared memory a chunk of steps at a
// time, the chunk's tokens ordered beam by beam, so that a row sees one contiguous range of keys (its
// beam's live tokens) and the mask is two comparisons. When all steps fit one 64-key tile per
// warpgroup (16 beams x up to 4 steps for groups of 4), each warpgroup attends to its own beams'
// tokens only, in its own stage: one tile, where a tile shared by both warpgroups would take two
// (a masked tile costs what a full one does). Otherwise chunks of up to 128 keys fill both stages
// and both warpgroups attend to both.
// own_tokens() returns them; it is called after the prompt's tiles, so that nothing it computes is
// held through the loop.
template <class T, class QueryRow, class TilePage, class KeyTile, class OwnTokensOf>
__device__ __forceinline__ void attend_tile_wgmma(TileResult<128, 1>& result, int rows, int key_begin, int key_end, float scale_log2,
                                                  QueryRow&& query_row, TilePage&& tile_page, KeyTile&& key_tile_at,
                                                  OwnTokensOf&& own_tokens, unsigned char* smem) {
  using Mma = MmaType<T>;
  using Shape = wgmma::HopperBlock;
  constexpr int HeadDim = 128;
  constexpr int row_chunks = HeadDim * static_cast<int>(sizeof(T)) / 16;  // 16-byte chunks of a row
  constexpr int rows_per_pass = Shape::threads / row_chunks;               // tile rows one pass of the block copies
  static_assert(key_tile % rows_per_pass == 0 && rows_per_pass % 8 == 0);
  unsigned char* q_smem = smem;                              // [warpgroup][half] tiles
  unsigned char* kv_smem = smem + 4 * wgmma::tile_bytes;     // [stage][K|V][half] tiles
  const int warp = threadIdx.x / 32;
  const int warpgroup = warp / 4;
  const int lane = threadIdx.x % 32;
  const int quad_lane = lane % 4;

  // The parent links the own tokens' walk will follow (steps 1..step) travel with the first tiles,
  // so that the walk after the prompt reads shared memory instead of making one dependent round trip
  // to device memory per step. Nothing of this is held through the loop: own_tokens() is called
  // again after it.
  unsigned* staged_parents = reinterpret_cast<unsigned*>(kv_smem + wgmma::kv_and_lineage_bytes);
  {
    const OwnTokens<T> own = own_tokens();
    const unsigned words = wgmma::staged_parent_words(own.step, own.max_beams);
    for (unsigned word = threadIdx.x; word < words; word += Shape::threads) {
      cp_async_4_shared(shared_address(staged_parents + word), own.parents + own.max_beams + word);
    }
  }
  // The pages of the first two tiles are requested before the query copies are issued, which then
  // overlap their round trips.
  const std::uint32_t first_page = key_begin < key_end ? tile_page(key_begin) : 0u;
  // The page of the tile after the one being copied: read a tile ahead, so that its round trip
  // overlaps a tile's math instead of stalling the copies.
  std::uint32_t next_page = key_begin + key_tile < key_end ? tile_page(key_begin + key_tile) : 0u;
  for (int work = threadIdx.x; work < Shape::rows * 16; work += Shape::threads) {
    const int row = work / 16, chunk = work % 16;
    const bool valid = row < rows;
    const int local = row % 64;
    unsigned char* target = q_smem + ((row / 64) * 2 + chunk / 8) * wgmma::tile_bytes + wgmma::swizzled(local, chunk % 8);
    cp_async_16(target, query_row(valid ? row : 0) + chunk * 8, valid);
  }
  // A thread copies the same chunk of rows load_row, load_row + 16, ... of every tile. Rows 16 apart
  // share their swizzle (it depends on row % 8), so one target offset and one source offset serve
  // all of its copies, advanced by constants: the tile loop computes no address per copy.
  const int load_row = static_cast<int>(threadIdx.x) / row_chunks;
  const int load_chunk = static_cast<int>(threadIdx.x) % row_chunks;
  const std::uint32_t load_target =
      shared_address(kv_smem) + (load_chunk / 8) * wgmma::tile_bytes + wgmma::swizzled(load_row, load_chunk % 8);
  const int load_source = load_row * HeadDim + load_chunk * 8;
  auto load_keys = [&](int stage, int first_key, std::uint32_t page) {
    const int valid_rows = min(key_tile, key_end - first_key);
    const T* k_source = key_tile_at(page, first_key, kv::key) + load_source;
    const T* v_source = key_tile_at(page, first_key, kv::value) + load_source;
    const std::uint32_t k_target = load_target + stage * 4 * wgmma::tile_bytes;
    const std::uint32_t v_target = k_target + 2 * wgmma::tile_bytes;
#pragma unroll
    for (int pass = 0; pass < key_tile / rows_per_pass; ++pass) {
      // Rows past the prompt's end are zero-filled from a valid address (the tile's first row).
      const bool valid = load_row + pass * rows_per_pass < valid_rows;
      const int source = valid ? pass * rows_per_pass * HeadDim : 0;
      cp_async_16_shared(k_target + pass * rows_per_pass * 128, k_source + source, valid);
      cp_async_16_shared(v_target + pass * rows_per_pass * 128, v_source + source, valid);
    }
  };
  if (key_begin < key_end) load_keys(0, key_begin, first_page);
  cp_async_commit();

  float o[HeadDim / 8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};
  // The operands' addresses in 16-byte units: each descriptor of the loop is one of them plus a
  // constant (descriptor_at).
  const std::uint32_t q_address16 = shared_address(q_smem + warpgroup * 2 * wgmma::tile_bytes) >> 4;
  const std::uint32_t kv_address16 = shared_address(kv_smem) >> 4;

  // One key tile of stage `stage`: S = Q K^T, the online softmax, O += P V. `between` runs while the
  // tensor cores compute S. With `masked`, the scores are scaled first and key `column` of the tile
  // counts for the thread's row `half_row` only where visible(half_row, column). Otherwise (with a
  // positive scale) the scale is applied inside the exponent's fma: the maximum of the unscaled
  // scores, scaled once, is the maximum of the scaled ones (rounding is monotonic).
  auto attend_stage = [&](int stage, bool masked, auto&& visible, auto&& between) {
    const std::uint32_t k_address16 = kv_address16 + stage * (4 * wgmma::tile_bytes >> 4);
    const std::uint32_t v_address16 = k_address16 + (2 * wgmma::tile_bytes >> 4);

    // S = Q K^T: 8 steps of 16 dims; a step advances 32 bytes inside a 128-byte swizzled row, and the
    // second half of the dims lives in the next tile. The first step overwrites the accumulators.
    float s[key_tile / 8][4];
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < HeadDim / 16; ++kk) {
      const std::uint32_t step_offset = (kk / 4) * wgmma::tile_bytes + (kk % 4) * 32;
      wgmma::Instr<T>::s(s, wgmma::descriptor_at<16, 1024>(q_address16 + step_offset / 16),
                         wgmma::descriptor_at<16, 1024>(k_address16 + step_offset / 16), kk != 0);
    }
    wgmma::commit();
    between();
    wgmma::wait();

    const bool fold_scale = scale_log2 > 0.0f && !masked;
    if (!fold_scale) {
#pragma unroll
      for (int nt = 0; nt < key_tile / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float value = s[nt][e] * scale_log2;
          if (masked && !visible(e / 2, nt * 8 + quad_lane * 2 + (e & 1))) value = -INFINITY;
          s[nt][e] = value;
        }
      }
    }
    const float exponent_scale = fold_scale ? scale_log2 : 1.0f;
#pragma unroll
    for (int half_row = 0; half_row < 2; ++half_row) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < key_tile / 8; ++nt) tile_max = fmaxf(tile_max, fmaxf(s[nt][half_row * 2], s[nt][half_row * 2 + 1]));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      tile_max *= exponent_scale;
      const float new_max = fmaxf(row_max[half_row], tile_max);
      const float base = new_max == -INFINITY ? 0.0f : new_max;
      const float correction = wgmma::exp2_ftz(row_max[half_row] - base);
      row_max[half_row] = new_max;
      float tile_sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < key_tile / 8; ++nt) {
        s[nt][half_row * 2] = wgmma::exp2_ftz(fmaf(s[nt][half_row * 2], exponent_scale, -base));
        s[nt][half_row * 2 + 1] = wgmma::exp2_ftz(fmaf(s[nt][half_row * 2 + 1], exponent_scale, -base));
        tile_sum += s[nt][half_row * 2] + s[nt][half_row * 2 + 1];
      }
      row_sum[half_row] = row_sum[half_row] * correction + tile_sum;
      // Once the rows' maxima settle (after a few tiles), most tiles leave every row of a warp
      // unscaled: the warp then skips the 32 multiplications.
      if (__any_sync(0xffffffffu, correction != 1.0f)) {
#pragma unroll
        for (int dn = 0; dn < HeadDim / 8; ++dn) {
          o[dn][half_row * 2] *= correction;
          o[dn][half_row * 2 + 1] *= correction;
        }
      }
    }

    // O += P V: 4 steps of 16 keys; a step advances 16 rows (2 KiB) of the V tiles.
    std::uint32_t a[key_tile / 16][4];
#pragma unroll
    for (int kc = 0; kc < key_tile / 16; ++kc) {
      a[kc][0] = Mma::pack(s[2 * kc][0], s[2 * kc][1]);
      a[kc][1] = Mma::pack(s[2 * kc][2], s[2 * kc][3]);
      a[kc][2] = Mma::pack(s[2 * kc + 1][0], s[2 * kc + 1][1]);
      a[kc][3] = Mma::pack(s[2 * kc + 1][2], s[2 * kc + 1][3]);
    }
    wgmma::fence();
#pragma unroll
    for (int kc = 0; kc < key_tile / 16; ++kc) {
      wgmma::Instr<T>::pv(o, a[kc], wgmma::descriptor_at<wgmma::tile_bytes, 1024>(v_address16 + kc * 2048 / 16));
    }
    wgmma::commit_and_wait();
  };

  int stage = 0;
  for (int first_key = key_begin; first_key < key_end; first_key += key_tile, stage ^= 1) {
    cp_async_wait<0>();
    wgmma::fence_shared_for_async_proxy();
    // One barrier a tile: this tile has landed for every thread, and every warpgroup's wgmma of the
    // previous tile has completed, so its stage may be refilled with the next tile.
    __syncthreads();
    // The next tile's copies are issued while the tensor cores compute S, so that their address
    // arithmetic is off the tile's critical path. Keys past the prompt's end are masked.
    attend_stage(
        stage, first_key + key_tile > key_end, [&](int, int column) { return first_key + column < key_end; },
        [&] {
          if (first_key + key_tile < key_end) {
            load_keys(stage ^ 1, first_key + key_tile, next_page);
            if (first_key + 2 * key_tile < key_end) next_page = tile_page(first_key + 2 * key_tile);
          }
          cp_async_commit();
        });
  }
  cp_async_wait<0>();

  const OwnTokens<T> own = own_tokens();
  if (own.step >= 0) {
    constexpr unsigned dead = no_parent;  // a link past the beam's first step, or a dead beam's
    constexpr int chunk_keys = 2 * key_tile;
    // [beam][chunk step]: the token's row among the request's decode tokens (step * max_beams +
    // beam), or `dead`. It lives past the K/V stages (wgmma::kv_and_lineage_bytes).
    unsigned* lineage = reinterpret_cast<unsigned*>(kv_smem + 8 * wgmma::tile_bytes);
    const int first_beam = own.first_row / own.group;
    const int beams = (own.first_row + rows - 1) / own.group - first_beam + 1;  // at most 128
    // The first beam of each warpgroup's rows and how many beams they span (0 past the block's end).
    auto warpgroup_beams = [&](int group_index, int& first, int& count) {
      const int first_row = group_index * 64;
      first = first_row < rows ? (own.first_row + first_row) / own.group - first_beam : 0;
      count = first_row < rows ? (own.first_row + min(first_row + 64, rows) - 1) / own.group - first_beam - first + 1 : 0;
    };
    int first_beam_of[2], beams_of[2];
    warpgroup_beams(0, first_beam_of[0], beams_of[0]);
    warpgroup_beams(1, first_beam_of[1], beams_of[1]);
    // One chunk of all steps whose keys fit one 64-key tile per warpgroup: each warpgroup then
    // attends to a tile of its own beams' tokens only, in its own stage. Otherwise chunks of up to
    // 128 keys shared by both warpgroups, in both stages.
    const int steps = own.step + 1;
    const bool narrow = max(beams_of[0], beams_of[1]) * steps <= key_tile;
    const int chunk_steps = narrow ? steps : max(1, chunk_keys / beams);
    // The beams of this thread's two rows; rows past the block's end see nothing.
    int row_beam[2];
#pragma unroll
    for (int half_row = 0; half_row < 2; ++half_row) {
      const int row = warp * 16 + lane / 4 + half_row * 8;
      row_beam[half_row] = row < rows ? (own.first_row + row) / own.group - first_beam : -1;
    }
    // Copies keys [first_key, first_key + 64) of a chunk of `keys` into `stage` (key k of the chunk
    // is beam k / count, step top - k % count). Missing and dead tokens are zero-filled.
    auto load_own = [&](int stage, int first_key, int keys) {
      const std::uint32_t k_target = load_target + stage * 4 * wgmma::tile_bytes;
      const std::uint32_t v_target = k_target + 2 * wgmma::tile_bytes;
#pragma unroll
      for (int pass = 0; pass < key_tile / rows_per_pass; ++pass) {
        const int key = first_key + load_row + pass * rows_per_pass;
        const unsigned token = key < keys ? lineage[key] : dead;
        const bool valid = token != dead;
        const std::size_t source = (valid ? std::size_t{token} * HeadDim : 0) + load_chunk * 8;
        cp_async_16_shared(k_target + pass * rows_per_pass * 128, own.keys + source, valid);
        cp_async_16_shared(v_target + pass * rows_per_pass * 128, own.values + source, valid);
      }
    };
    // The links of steps 1..step, staged with the first tiles (the loop's waits and the barrier
    // below made them visible), or device memory where they did not fit.
    const bool parents_staged = wgmma::staged_parent_words(own.step, own.max_beams) > 0;
    auto parent_of = [&](int s, unsigned beam) {
      return parents_staged ? staged_parents[(s - 1) * own.max_beams + beam] : own.parents[s * own.max_beams + beam];
    };
    unsigned walker = first_beam + static_cast<int>(threadIdx.x);  // the ancestor at step `top` of this thread's beam
    for (int top = own.step; top >= 0; top -= chunk_steps) {
      const int count = min(chunk_steps, top + 1);  // this chunk: steps top, top - 1, ..., top - count + 1
      const int keys = beams * count;
      // Every warpgroup's last wgmma on the stages, and every read of the lineage, is done.
      __syncthreads();
      if (static_cast<int>(threadIdx.x) < beams) {
        walk_ancestry(walker, top, count, own.max_beams, parent_of, [&](int c, unsigned token) { lineage[threadIdx.x * count + c] = token; });
      }
      __syncthreads();
      // Narrow: stage g holds warpgroup g's beams' keys, a contiguous range of the chunk's.
      // Shared: key k is row k % 64 of stage k / 64.
      for (int tile = 0; tile < 2 && (narrow || tile * key_tile < keys); ++tile) {
        if (narrow) {
          if (beams_of[tile] > 0) load_own(tile, first_beam_of[tile] * count, (first_beam_of[tile] + beams_of[tile]) * count);
        } else {
          load_own(tile, tile * key_tile, keys);
        }
      }
      cp_async_commit();
      // A row sees keys [first, first + live) of the chunk: its beam's tokens, newest first, up to
      // the first dead link (a walk that dies stays dead).
      int first[2], live[2];
#pragma unroll
      for (int half_row = 0; half_row < 2; ++half_row) {
        first[half_row] = row_beam[half_row] < 0 ? 0 : row_beam[half_row] * count;
        live[half_row] = 0;
        if (row_beam[half_row] >= 0) {
          while (live[half_row] < count && lineage[first[half_row] + live[half_row]] != dead) ++live[half_row];
        }
      }
      cp_async_wait<0>();
      wgmma::fence_shared_for_async_proxy();
      __syncthreads();
      auto visible_from = [&](int first_key) {
        return [&, first_key](int half_row, int column) {
          const int key = first_key + column - first[half_row];
          return key >= 0 && key < live[half_row];
        };
      };
      const int own_tiles = narrow ? 1 : (keys + key_tile - 1) / key_tile;
      for (int tile = 0; tile < own_tiles; ++tile) {
        const int stage = narrow ? warpgroup : tile;
        attend_stage(stage, true, visible_from(narrow ? first_beam_of[warpgroup] * count : tile * key_tile), [] {});
      }
    }
  }

#pragma unroll
  for (int half_row = 0; half_row < 2; ++half_row) {
    float sum = row_sum[half_row];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inverse = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
    for (int dn = 0; dn < HeadDim / 8; ++dn) {
      result.o[0][dn][half_row * 2] = o[dn][half_row * 2] * inverse;
      result.o[0][dn][half_row * 2 + 1] = o[dn][half_row * 2 + 1] * inverse;
    }
    result.lse[0][half_row] = sum > 0.0f ? (row_max[half_row] + log2f(sum)) * ln2 : -INFINITY;
  }
}

// Writes the Hopper block's normalised output rows (out_row(r), as in store_rows) through shared
// memory: each warpgroup stages its 64 rows in its own Q tiles, which its last wgmma has finished
// reading, and then writes whole 16-byte chunks (eight stores a thread instead of 64 of four bytes).
// The staging keeps the tiles' 128-byte swizzle, so both sides are free of bank conflicts.
template <class T, class OutRow>
__device__ __forceinline__ void store_rows_wgmma(const TileResult<128, 1>& result, int rows, T* out, OutRow&& out_row, unsigned char* q_smem) {
  using Mma = MmaType<T>;
  constexpr int HeadDim = 128;
  constexpr int elements_per_chunk = 16 / static_cast<int>(sizeof(T));
  constexpr int row_chunks = HeadDim / elements_per_chunk;
  const int warp = threadIdx.x / 32;
  const int warpgroup = warp / 4;
  const int lane = threadIdx.x % 32;
  unsigned char* tiles = q_smem + warpgroup * 2 * wgmma::tile_bytes;
#pragma unroll
  for (int half_row = 0; half_row < 2; ++half_row) {
    const int local = (warp % 4) * 16 + lane / 4 + half_row * 8;
#pragma unroll
    for (int dn = 0; dn < HeadDim / 8; ++dn) {
      const int column = dn * 8 + (lane % 4) * 2;
      unsigned char* pair = tiles + (column / 64) * wgmma::tile_bytes + wgmma::swizzled(local, (column % 64) / 8) + (column % 8) * sizeof(T);
      *reinterpret_cast<std::uint32_t*>(pair) = Mma::pack(result.o[0][dn][half_row * 2], result.o[0][dn][half_row * 2 + 1]);
    }
  }
  // The warpgroup's 128 threads only: the other warpgroup may still be computing. (Immediate ids:
  // with an id in a register, ptxas reserves all 16 barriers.)
  if (warpgroup == 0) {
    asm volatile("bar.sync 1, 128;\n" ::: "memory");
  } else {
    asm volatile("bar.sync 2, 128;\n" ::: "memory");
  }
  const int thread = static_cast<int>(threadIdx.x) % 128;
#pragma unroll
  for (int pass = 0; pass < 64 * row_chunks / 128; ++pass) {
    const int local = pass * (128 / row_chunks) + thread / row_chunks;
    const int chunk = thread % row_chunks;
    const int row = warpgroup * 64 + local;
    if (row < rows) {
      const uint4 value = *reinterpret_cast<const uint4*>(tiles + (chunk / 8) * wgmma::tile_bytes + wgmma::swizzled(local, chunk % 8));
      *reinterpret_cast<uint4*>(out + static_cast<std::size_t>(out_row(row)) * HeadDim + chunk * elements_per_chunk) = value;
    }
  }
}

// --- kernels ------------------------------------------------------------------------------------

struct Geometry {
  int q_heads = 0;
  int group = 0;  // query heads per kv head
  float scale_log2 = 0.0f;
  float scale = 0.0f;
};

// Where a request's prompt keys live: the KvPool's shared prefix pages, or beam 0's private pages in
// the copy-on-fork baseline (prefill writes beam 0; kv::fork copies it to the other beams).
template <class T, class Layout>
struct PromptKeys {
  KvPoolView<T, Layout> pool;
  __device__ int prompt_tokens(int slot) const { return static_cast<int>(pool.prompt_tokens[slot]); }
  __device__ const T* row(int slot, int key, int layer, int kv_head, std::size_t kv_index) const {
    return pool.prefix_block(pool.page_table[slot * pool.pages_per_request + key / pool.page_tokens], layer, kv_head, kv_index) +
           (key % pool.page_tokens) * pool.head_dim;
  }
};
template <class T>
struct CopyOnForkPromptKeys {
  CopyOnForkView<T> cache;
  __device__ int prompt_tokens(int slot) const { return static_cast<int>(cache.prompt_tokens[slot]); }
  __device__ const T* row(int slot, int key, int layer, int kv_head, std::size_t kv_index) const {
    return cache.token(slot, 0, key, layer, kv_head, kv_index);
  }
};

// grid (m tiles over max_prompt * group rows, kv_heads, requests).
template <class T, int HeadDim, class Shape, class Keys>
__global__ void __launch_bounds__(Shape::threads) prefill_kernel(Keys keys, KvBatchView batch, int layer, Geometry geometry, const T* q,
                                                            T* out) {
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  const int i = blockIdx.z;
  const int kv_head = blockIdx.y;
  const int slot = batch.slots[i];
  const int prompt = keys.prompt_tokens(slot);
  const int first_row = blockIdx.x * Shape::rows;  // in (token, head in group) rows
  const int rows = min(Shape::rows, prompt * geometry.group - first_row);
  if (rows <= 0) return;
  const int group = geometry.group;
  auto flat_row = [&](int r) {
    const int row = first_row + r;
    return (batch.token_begin[i] + row / group) * geometry.q_heads + kv_head * group + row % group;
  };
  TileResult<HeadDim, Shape::m_tiles> result;
  const int last_token = (first_row + rows - 1) / group;
  attend_tile<T, HeadDim, Shape, true>(
      result, rows, 0, last_token + 1, geometry.scale_log2,
      [&](int r) { return q + static_cast<std::size_t>(flat_row(r)) * HeadDim; },
      [&](int key, std::size_t kv_index) { return keys.row(slot, key, layer, kv_head, kv_index); },
      [&](int r) { return (first_row + r) / group; }, reinterpret_cast<T*>(smem_bytes));
  store_rows<T, HeadDim, Shape>(result, rows, out, flat_row);
}

// The fused epilogue of staged decode on the portable (mma.sync) path: each row's own decode tokens
// (steps `step` down to 0, found by walking the ancestry table back from the row's beam) are merged
// into the prefix result, and the output is written. (On Hopper, attend_tile_wgmma takes them as
// masked key tiles instead.) Each thread holds 2 * HeadDim / 8 columns of its rows (the mma accumulator
// layout: columns dn * 8 + 2t, +1); the four threads of a quad share a row, so a dot product is a
// partial sum per thread plus two shuffles.
//
// The tokens are staged in shared memory (`staging`: the K/V tile stages, free once the prefix loop
// has ended), a chunk of steps at a time: the walker threads (one per beam of the block) write where
// each beam's ancestor at every step of the chunk keeps its token to `lineage`, then the whole block
// requests the chunk's K and V rows at once. A chunk thus costs one dependent parent load per step
// and one round trip for its tokens; a row walking its own chain paid a parent, a K and a V round trip per step, serially,
// while the tensor cores of the multiprocessor idled.
// query_pair_at(row, column) reads the block's query elements (row, column) and (row, column + 1),
// column even, packed (from shared memory, in whatever layout the tile routine keeps it).
template <class T, int HeadDim, class Shape, int StagingBytes, class Layout, class QueryPairAt, class OutRow>
__device__ __forceinline__ void merge_own_tokens_and_store(TileResult<HeadDim, Shape::m_tiles>& result, int rows, int first_row, int group,
                                                           const KvPoolView<T, Layout>& pool, int slot, int layer, int kv_head, int step,
                                                           float scale, QueryPairAt&& query_pair_at, unsigned char* staging, T* out,
                                                           OutRow&& out_row) {
  using Mma = MmaType<T>;
  constexpr int row_bytes = HeadDim * static_cast<int>(sizeof(T));
  constexpr int pair_bytes = 2 * row_bytes;  // a token's K row, then its V row
  constexpr int row_chunks = row_bytes / 16;
  constexpr int capacity = StagingBytes / (pair_bytes + static_cast<int>(sizeof(unsigned)));  // (step, beam) pairs a chunk holds
  static_assert(capacity >= Shape::rows, "a chunk must hold at least one step of the block's beams");
  // A pair's copies: its K and V rows, row_chunks 16-byte chunks each. A thread makes the same copy
  // (K or V, chunk) of every pair it takes, so its source and target advance by whole rows only.
  constexpr int pair_copies = 2 * row_chunks;
  static_assert(Shape::threads % pair_copies == 0);
  constexpr int pairs_per_pass = Shape::threads / pair_copies;
  constexpr unsigned dead = no_parent;  // a link past the beam's first step, or a dead beam's
  // [chunk step][beam]: the token's row among the request's decode tokens (step * max_beams + beam),
  // or `dead`.
  unsigned* lineage = reinterpret_cast<unsigned*>(staging + capacity * pair_bytes);
  const int first_beam = first_row / group;
  const int beams = (first_row + rows - 1) / group - first_beam + 1;
  const int chunk_steps = capacity / beams;
  const int quad_lane = threadIdx.x % 4;
  const int copy = static_cast<int>(threadIdx.x) % pair_copies;
  const int copy_kv = copy / row_chunks, copy_chunk = copy % row_chunks;
  const T* copy_source = pool.beam_tokens(slot, layer, kv_head, copy_kv) + copy_chunk * (16 / sizeof(T));
  const std::uint32_t copy_target = shared_address(staging) + copy_kv * row_bytes + copy_chunk * 16;

  float max[Shape::m_tiles][2], sum[Shape::m_tiles][2];  // weights relative to `max`; the prefix part is normalised
#pragma unroll
  for (int mt = 0; mt < Shape::m_tiles; ++mt) {
#pragma unroll
    for (int half_row = 0; half_row < 2; ++half_row) {
      max[mt][half_row] = result.lse[mt][half_row];
      sum[mt][half_row] = max[mt][half_row] == -INFINITY ? 0.0f : 1.0f;
    }
  }
  unsigned walker = first_beam + static_cast<int>(threadIdx.x);  // the ancestor at step `top` of this thread's beam
  // Every warp's last reads of the K/V stages (wgmma or ldmatrix) are done before they are refilled.
  __syncthreads();
  for (int top = step; top >= 0; top -= chunk_steps) {
    const int count = min(chunk_steps, top + 1);  // this chunk: steps top, top - 1, ..., top - count + 1
    if (static_cast<int>(threadIdx.x) < beams) {
      walk_ancestry(
          walker, top, count, pool.max_beams, [&](int s, unsigned beam) { return pool.parents(slot, s)[beam]; },
          [&](int c, unsigned token) { lineage[c * beams + threadIdx.x] = token; });
    }
    __syncthreads();
    for (int pair = static_cast<int>(threadIdx.x) / pair_copies; pair < count * beams; pair += pairs_per_pass) {
      const unsigned token = lineage[pair];
      if (token != dead) cp_async_16_shared(copy_target + pair * pair_bytes, copy_source + std::size_t{token} * HeadDim, true);
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

#pragma unroll
    for (int mt = 0; mt < Shape::m_tiles; ++mt) {
#pragma unroll
      for (int half_row = 0; half_row < 2; ++half_row) {
        const int row = block_row<Shape>(mt, half_row);
        const bool valid = row < rows;
        const int query_row = valid ? row : 0;
        const int local_beam = (first_row + query_row) / group - first_beam;
        // Every thread runs every step (a dead link only stops contributing), so the shuffles stay
        // convergent; a dead pair's staging was not loaded and its dot product is discarded.
#pragma unroll 1
        for (int c = 0; c < count; ++c) {
          const int pair = c * beams + local_beam;
          const bool alive = valid && lineage[pair] != dead;
          const T* key = reinterpret_cast<const T*>(staging + pair * pair_bytes);
          const T* value = reinterpret_cast<const T*>(staging + pair * pair_bytes + row_bytes);
          float dot[2] = {0.0f, 0.0f};  // two chains, so that the fma latency is not paid once per pair
#pragma unroll
          for (int dn = 0; dn < HeadDim / 8; ++dn) {
            const float2 query_pair = Mma::unpack(query_pair_at(query_row, dn * 8 + quad_lane * 2));
            const float2 key_pair = Mma::unpack(*reinterpret_cast<const std::uint32_t*>(key + dn * 8 + quad_lane * 2));
            dot[dn % 2] += query_pair.x * key_pair.x + query_pair.y * key_pair.y;
          }
          float total = dot[0] + dot[1];
          total += __shfl_xor_sync(0xffffffffu, total, 1);
          total += __shfl_xor_sync(0xffffffffu, total, 2);
          if (alive) {
            const float score = total * scale;
            const float new_max = fmaxf(max[mt][half_row], score);
            const float old_scale = __expf(max[mt][half_row] - new_max);
            const float token_weight = __expf(score - new_max);
            sum[mt][half_row] = sum[mt][half_row] * old_scale + token_weight;
#pragma unroll
            for (int dn = 0; dn < HeadDim / 8; ++dn) {
              const int column = dn * 8 + quad_lane * 2;
              const float2 value_pair = Mma::unpack(*reinterpret_cast<const std::uint32_t*>(value + column));
              result.o[mt][dn][half_row * 2] = result.o[mt][dn][half_row * 2] * old_scale + token_weight * value_pair.x;
              result.o[mt][dn][half_row * 2 + 1] = result.o[mt][dn][half_row * 2 + 1] * old_scale + token_weight * value_pair.y;
            }
            max[mt][half_row] = new_max;
          }
        }
      }
    }
    if (top - count >= 0) __syncthreads();  // the next chunk rewrites lineage and staging
  }

#pragma unroll
  for (int mt = 0; mt < Shape::m_tiles; ++mt) {
#pragma unroll
    for (int half_row = 0; half_row < 2; ++half_row) {
      const float inverse = sum[mt][half_row] > 0.0f ? 1.0f / sum[mt][half_row] : 0.0f;
#pragma unroll
      for (int dn = 0; dn < HeadDim / 8; ++dn) {
        result.o[mt][dn][half_row * 2] *= inverse;
        result.o[mt][dn][half_row * 2 + 1] *= inverse;
      }
    }
  }
  store_rows<T, HeadDim, Shape>(result, rows, out, out_row);
}

// Resident decode_prefix_kernel blocks per multiprocessor, which decode_splits counts on: the launch
// bound holds every instantiation to it (the wgmma block of 256 threads to 128 registers).
inline constexpr int decode_blocks_per_sm = 2;

// Stage 1 of staged decode. grid (m tiles over max_beams * group rows, kv_heads * splits, requests).
// With Fused (one split), the block finishes the job itself: each row's own decode tokens are merged
// into the prefix result (on Hopper as masked key tiles after the prompt's, elsewhere in the
// epilogue, where the row's query is still in shared memory) and the output is written directly,
// skipping the fp32 partials and the merge kernel.
template <class T, int HeadDim, class Shape, class Layout, bool Fused, bool Hopper>
__global__ void __launch_bounds__(Shape::threads, decode_blocks_per_sm)
    decode_prefix_kernel(KvPoolView<T, Layout> pool, KvBatchView batch, int layer, int step, Geometry geometry, int splits, const T* q,
                         float* partial_o, float* partial_lse, T* out) {
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  const int i = blockIdx.z;
  const int kv_head = blockIdx.y / splits;
  const int split = blockIdx.y % splits;
  const int slot = batch.slots[i];
  const int group = geometry.group;
  const int beams = batch.beam_begin[i + 1] - batch.beam_begin[i];
  const int first_row = blockIdx.x * Shape::rows;
  const int rows = min(Shape::rows, beams * group - first_row);
  if (rows <= 0) return;
  const int prompt = pool.prompt_tokens[slot];
  // Split the prompt into `splits` chunks of whole key tiles; trailing chunks may be empty.
  const int tiles = (prompt + key_tile - 1) / key_tile;
  const int chunk = (tiles + splits - 1) / splits * key_tile;
  const int key_begin = min(prompt, split * chunk);
  const int key_end = min(prompt, key_begin + chunk);
  auto flat_row = [&](int r) {
    const int row = first_row + r;
    return (batch.beam_begin[i] + row / group) * geometry.q_heads + kv_head * group + row % group;
  };
  TileResult<HeadDim, Shape::m_tiles> result;
  auto query_row = [&](int r) { return q + static_cast<std::size_t>(flat_row(r)) * HeadDim; };
  auto tile_page = [&](int key) { return pool.page_table[slot * pool.pages_per_request + key / pool.page_tokens]; };
  auto key_tile_in = [&](std::uint32_t page, int key, std::size_t kv_index) {
    return pool.prefix_block(page, layer, kv_head, kv_index) + (key % pool.page_tokens) * HeadDim;
  };
  auto key_tile_at = [&](int key, std::size_t kv_index) { return key_tile_in(tile_page(key), key, kv_index); };
  // The Hopper tiles need a 1024-byte-aligned base (the launch adds the slack).
  unsigned char* smem = Hopper ? reinterpret_cast<unsigned char*>((reinterpret_cast<std::uintptr_t>(smem_bytes) + 1023) & ~std::uintptr_t{1023})
                               : smem_bytes;
  if constexpr (Hopper) {
    static_assert(HeadDim == 128 && std::is_same_v<Shape, wgmma::HopperBlock>);
    auto own_tokens = [&] {
      OwnTokens<T> own;
      if constexpr (Fused) {
        own = {pool.beam_tokens(slot, layer, kv_head, kv::key), pool.beam_tokens(slot, layer, kv_head, kv::value), pool.parents(slot, 0),
               pool.max_beams, step, first_row, group};
      }
      return own;
    };
    attend_tile_wgmma<T>(result, rows, key_begin, key_end, geometry.scale_log2, query_row, tile_page, key_tile_in, own_tokens, smem);
  } else {
    attend_tile<T, HeadDim, Shape, false>(result, rows, key_begin, key_end, geometry.scale_log2, query_row, key_tile_at, [](int) { return 0; },
                                          reinterpret_cast<T*>(smem));
  }

  const int lane = threadIdx.x % 32;
  if constexpr (Fused && Hopper) {
    store_rows_wgmma<T>(result, rows, out, flat_row, smem);  // the own tokens are in already
    return;
  } else if constexpr (Fused) {
    // The portable path (Hopper attends to the own tokens in attend_tile_wgmma, above).
    auto query_pair_at = [&](int r, int column) {
      return *reinterpret_cast<const std::uint32_t*>(reinterpret_cast<const T*>(smem) + r * smem_stride<HeadDim> + column);
    };
    // The K/V stages stage the rows' own tokens.
    constexpr int q_bytes = Shape::rows * smem_stride<HeadDim> * static_cast<int>(sizeof(T));
    constexpr int staging_bytes = 2 * 2 * key_tile * smem_stride<HeadDim> * static_cast<int>(sizeof(T));
    merge_own_tokens_and_store<T, HeadDim, Shape, staging_bytes>(result, rows, first_row, group, pool, slot, layer, kv_head, step,
                                                                 geometry.scale, query_pair_at, smem + q_bytes, out, flat_row);
    return;
  }
  const std::size_t split_rows = static_cast<std::size_t>(batch.total_beams) * geometry.q_heads;
#pragma unroll
  for (int mt = 0; mt < Shape::m_tiles; ++mt) {
#pragma unroll
    for (int half_row = 0; half_row < 2; ++half_row) {
      const int row = block_row<Shape>(mt, half_row);
      if (row >= rows) continue;
      const std::size_t flat = split * split_rows + flat_row(row);
      float* target = partial_o + flat * HeadDim + (lane % 4) * 2;
#pragma unroll
      for (int dn = 0; dn < HeadDim / 8; ++dn) {
        *reinterpret_cast<float2*>(target + dn * 8) = make_float2(result.o[mt][dn][half_row * 2], result.o[mt][dn][half_row * 2 + 1]);
      }
      if (lane % 4 == 0) partial_lse[flat] = result.lse[mt][half_row];
    }
  }
}

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// Running (max, sum, weighted O) of a log-sum-exp merge; adding a part with log-weight `lse` and
// normalised output `o` keeps `o_sum / sum` the softmax over everything added so far.
template <int PerLane>
struct MergeState {
  float max = -INFINITY;
  float sum = 0.0f;
  float o[PerLane] = {};
  __device__ void add(float lse, const float (&part)[PerLane]) {
    if (lse == -INFINITY) return;
    const float new_max = fmaxf(max, lse);
    const float old_scale = __expf(max - new_max);
    const float part_scale = __expf(lse - new_max);
    sum = sum * old_scale + part_scale;
#pragma unroll
    for (int e = 0; e < PerLane; ++e) o[e] = o[e] * old_scale + part[e] * part_scale;
    max = new_max;
  }
};

// Stage 2 of staged decode: one warp per (beam row, query head), grid (warp groups over max_beams *
// q_heads, 1, requests). Merges the prefix partials with the beam's own decode tokens (walked back
// through the ancestry table) and writes the output.
template <class T, int HeadDim, class Layout>
__global__ void decode_merge_kernel(KvPoolView<T, Layout> pool, KvBatchView batch, int layer, int step, Geometry geometry, int splits,
                                    const T* q, const float* partial_o, const float* partial_lse, T* out) {
  using Mma = MmaType<T>;
  constexpr int per_lane = HeadDim / 32;
  const int i = blockIdx.z;
  const int beam_begin = static_cast<int>(batch.beam_begin[i]);
  const int local = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;  // (beam, head) within the request
  if (local >= (static_cast<int>(batch.beam_begin[i + 1]) - beam_begin) * geometry.q_heads) return;
  const std::size_t flat = static_cast<std::size_t>(beam_begin) * geometry.q_heads + local;
  const std::size_t split_rows = static_cast<std::size_t>(batch.total_beams) * geometry.q_heads;
  const int lane = threadIdx.x % 32;
  const int head = local % geometry.q_heads;
  const int kv_head = head / geometry.group;
  const int slot = batch.slots[i];

  MergeState<per_lane> state;
  for (int split = 0; split < splits; ++split) {
    const std::size_t index = split * split_rows + flat;
    float part[per_lane];
#pragma unroll
    for (int e = 0; e < per_lane; ++e) part[e] = partial_o[index * HeadDim + lane * per_lane + e];
    state.add(partial_lse[index], part);
  }

  float query[per_lane];
#pragma unroll
  for (int e = 0; e < per_lane; ++e) query[e] = Mma::to_float(q[flat * HeadDim + lane * per_lane + e]);
  unsigned beam = local / geometry.q_heads;
  for (int s = step; s >= 0; --s) {
    // The parent link is read together with the token's K and V: one round trip a step, not three.
    const unsigned parent = s > 0 ? pool.parents(slot, s)[beam] : no_parent;
    const T* key = pool.beam_token(slot, s, beam, layer, kv_head, kv::key);
    const T* value = pool.beam_token(slot, s, beam, layer, kv_head, kv::value);
    float key_part[per_lane], part[per_lane];
#pragma unroll
    for (int e = 0; e < per_lane; ++e) {
      key_part[e] = Mma::to_float(key[lane * per_lane + e]);
      part[e] = Mma::to_float(value[lane * per_lane + e]);
    }
    float dot = 0.0f;
#pragma unroll
    for (int e = 0; e < per_lane; ++e) dot += query[e] * key_part[e];
    state.add(warp_sum(dot) * geometry.scale, part);
    beam = parent;
    if (beam == no_parent || beam >= pool.max_beams) break;
  }
  const float inverse = state.sum > 0.0f ? 1.0f / state.sum : 0.0f;
#pragma unroll
  for (int e = 0; e < per_lane; e += 2) {
    *reinterpret_cast<std::uint32_t*>(out + flat * HeadDim + lane * per_lane + e) = Mma::pack(state.o[e] * inverse, state.o[e + 1] * inverse);
  }
}

// The copy-on-fork baseline: grid (m tiles over group rows, kv_heads * max_beams, requests); every beam
// attends alone to its private pages, tokens 0..prompt + step.
template <class T, int HeadDim, class Shape>
__global__ void __launch_bounds__(Shape::threads) decode_per_beam_kernel(CopyOnForkView<T> cache, KvBatchView batch, int layer, int step,
                                                                    Geometry geometry, const T* q, T* out) {
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  const int i = blockIdx.z;
  const int kv_head = blockIdx.y % cache.kv_heads;
  const int beam = blockIdx.y / cache.kv_heads;
  if (beam >= static_cast<int>(batch.beam_begin[i + 1] - batch.beam_begin[i])) return;
  const int slot = batch.slots[i];
  const int group = geometry.group;
  const int first_row = blockIdx.x * Shape::rows;
  const int rows = min(Shape::rows, group - first_row);
  if (rows <= 0) return;
  const std::uint32_t* pages = cache.beam_pages(slot, beam);
  auto flat_row = [&](int r) { return (batch.beam_begin[i] + beam) * geometry.q_heads + kv_head * group + first_row + r; };
  TileResult<HeadDim, Shape::m_tiles> result;
  attend_tile<T, HeadDim, Shape, false>(
      result, rows, 0, static_cast<int>(cache.prompt_tokens[slot]) + step + 1, geometry.scale_log2,
      [&](int r) { return q + static_cast<std::size_t>(flat_row(r)) * HeadDim; },
      [&](int key, std::size_t kv_index) {
        return cache.block(pages[key / cache.page_tokens], layer, kv_head, kv_index) + (key % cache.page_tokens) * HeadDim;
      },
      [](int) { return 0; }, reinterpret_cast<T*>(smem_bytes));
  store_rows<T, HeadDim, Shape>(result, rows, out, flat_row);
}

// Block shapes. Prefill and staged decode: 4 warps x 2 row tiles = 128 query rows per block (a decode
// block is 32 beams x 4 heads), so each K/V tile brought into shared memory feeds 128 rows of
// tensor-core work, and two blocks fit on a multiprocessor. The per-beam baseline has only G rows per
// beam: one warp, one row tile.
using WideBlock = BlockShape<4, 2>;
using PerBeamBlock = BlockShape<1, 1>;

template <class Kernel>
void allow_smem(Kernel kernel, std::size_t bytes) {
  XGR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

inline int multiprocessors() {
  static const int count = ::xgr::detail::multiprocessor_count();  // the first device asked about
  return count;
}

template <class T>
constexpr void require_attention_type() {
  static_assert(std::is_same_v<T, bfloat16> || std::is_same_v<T, half> || std::is_same_v<T, float>,
                "the attention kernels take bf16 or fp16 KV (tensor cores) or float KV (CUDA cores)");
}

inline Geometry geometry_of(const Options& options, std::size_t kv_heads, std::size_t head_dim, const char* op) {
  Geometry g;
  g.group = static_cast<int>(group_of(options, kv_heads, op));
  g.q_heads = static_cast<int>(options.q_heads);
  g.scale = scale_of(options, head_dim);
  g.scale_log2 = g.scale * log2e;
  return g;
}

template <class Fn>
void with_head_dim(std::size_t head_dim, Fn&& fn) {
  if (head_dim == 64) {
    fn(std::integral_constant<int, 64>{});
  } else {
    fn(std::integral_constant<int, 128>{});
  }
}

}  // namespace detail

namespace detail {

// ---- float KV: the CUDA-core path --------------------------------------------------------------
// Tensor cores take bf16/fp16 operands, so float KV — the precision path, for comparisons with a
// float32 reference such as HF's — runs on the CUDA cores: one warp per (query row, query head),
// the keys in order with an online softmax, everything in fp32. Lane l holds dimensions l, l + 32,
// ... of the query and the output, so every key and value row is one coalesced read. It is correct
// for every shape the tensor-core kernels take and makes no claim to their speed.
constexpr int simt_warps = 4;  // warps (query rows) per block

template <int HeadDim>
struct WarpAttention {
  static constexpr int per_lane = HeadDim / 32;
  float query[per_lane];
  float accumulated[per_lane];
  float max_score = -INFINITY;
  float total = 0.0f;

  __device__ void begin(const float* q, float scale) {
    const int lane = threadIdx.x % 32;
    for (int j = 0; j < per_lane; ++j) {
      query[j] = q[lane + 32 * j] * scale;
      accumulated[j] = 0.0f;
    }
  }
  __device__ void attend(const float* key, const float* value) {
    const int lane = threadIdx.x % 32;
    float dot = 0.0f;
    for (int j = 0; j < per_lane; ++j) dot = fmaf(query[j], key[lane + 32 * j], dot);
    for (int offset = 16; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    const float next_max = fmaxf(max_score, dot);
    if (next_max == -INFINITY) return;  // nothing finite yet: a weight of exp(-inf) adds nothing
    const float rescale = expf(max_score - next_max);
    const float weight = expf(dot - next_max);
    total = total * rescale + weight;
    for (int j = 0; j < per_lane; ++j) accumulated[j] = fmaf(weight, value[lane + 32 * j], accumulated[j] * rescale);
    max_score = next_max;
  }
  __device__ void store(float* out) const {
    const int lane = threadIdx.x % 32;
    for (int j = 0; j < per_lane; ++j) out[lane + 32 * j] = accumulated[j] / total;
  }
};

// grid (prompt tokens / simt_warps, q_heads, requests): token t of request i attends to keys 0..t.
template <int HeadDim, class Keys>
__global__ void __launch_bounds__(simt_warps * 32) simt_prefill_kernel(Keys keys, KvBatchView batch, int layer, Geometry geometry,
                                                                      const float* q, float* out) {
  const int i = blockIdx.z;
  const int head = blockIdx.y;
  const int t = blockIdx.x * simt_warps + static_cast<int>(threadIdx.x) / 32;
  const int slot = batch.slots[i];
  if (t >= keys.prompt_tokens(slot)) return;
  const int kv_head = head / geometry.group;
  const std::size_t row = (static_cast<std::size_t>(batch.token_begin[i] + t) * geometry.q_heads + head) * HeadDim;
  WarpAttention<HeadDim> warp;
  warp.begin(q + row, geometry.scale);
  for (int n = 0; n <= t; ++n) warp.attend(keys.row(slot, n, layer, kv_head, kv::key), keys.row(slot, n, layer, kv_head, kv::value));
  warp.store(out + row);
}

// The beam row and query head a warp of the decode kernels owns, grid (max_beams / simt_warps,
// q_heads, requests); false for the warps past the request's beams.
struct SimtBeamRow {
  unsigned beam = 0;
  int slot = 0, kv_head = 0;
  std::size_t offset = 0;  // of the row's query and output vectors
};

template <int HeadDim>
__device__ bool simt_beam_row(const KvBatchView& batch, const Geometry& geometry, SimtBeamRow& row) {
  const int i = blockIdx.z;
  const int head = blockIdx.y;
  row.beam = blockIdx.x * simt_warps + threadIdx.x / 32;
  if (row.beam >= batch.beam_begin[i + 1] - batch.beam_begin[i]) return false;
  row.slot = batch.slots[i];
  row.kv_head = head / geometry.group;
  row.offset = (static_cast<std::size_t>(batch.beam_begin[i] + row.beam) * geometry.q_heads + head) * HeadDim;
  return true;
}

// Beam row b of request i attends to the prompt, then to its own decode tokens of steps
// first..step, found by walking the ancestry table back.
template <int HeadDim, class Layout>
__global__ void __launch_bounds__(simt_warps * 32) simt_decode_kernel(KvPoolView<float, Layout> pool, KvBatchView batch, int layer, int step,
                                                                     Geometry geometry, const float* q, float* out) {
  SimtBeamRow row;
  if (!simt_beam_row<HeadDim>(batch, geometry, row)) return;
  const auto [beam, slot, kv_head, offset] = row;
  const int prompt = static_cast<int>(pool.prompt_tokens[slot]);
  WarpAttention<HeadDim> warp;
  warp.begin(q + offset, geometry.scale);
  const PromptKeys<float, Layout> keys{pool};
  for (int n = 0; n < prompt; ++n) warp.attend(keys.row(slot, n, layer, kv_head, kv::key), keys.row(slot, n, layer, kv_head, kv::value));
  // The walk back runs first (lineage[s] = the row holding this beam's token of step s), then the
  // tokens are attended oldest first, the order of the host reference.
  unsigned lineage[max_kv_steps];
  int first = step;
  lineage[step] = beam;
  while (first > 0) {
    const unsigned parent = pool.parents(slot, first)[lineage[first]];
    if (parent == no_parent) break;
    lineage[--first] = parent;
  }
  for (int s = first; s <= step; ++s) {
    warp.attend(pool.beam_token(slot, s, lineage[s], layer, kv_head, kv::key), pool.beam_token(slot, s, lineage[s], layer, kv_head, kv::value));
  }
  warp.store(out + offset);
}

// Beam row b attends to tokens 0..prompt + step of its own pages.
template <int HeadDim>
__global__ void __launch_bounds__(simt_warps * 32) simt_per_beam_kernel(CopyOnForkView<float> cache, KvBatchView batch, int layer, int step,
                                                                       Geometry geometry, const float* q, float* out) {
  SimtBeamRow row;
  if (!simt_beam_row<HeadDim>(batch, geometry, row)) return;
  const auto [beam, slot, kv_head, offset] = row;
  const int keys = static_cast<int>(cache.prompt_tokens[slot]) + step + 1;
  WarpAttention<HeadDim> warp;
  warp.begin(q + offset, geometry.scale);
  for (int n = 0; n < keys; ++n) {
    warp.attend(cache.token(slot, beam, n, layer, kv_head, kv::key), cache.token(slot, beam, n, layer, kv_head, kv::value));
  }
  warp.store(out + offset);
}

inline dim3 simt_grid(std::size_t rows, std::size_t q_heads, std::size_t requests) {
  return dim3(static_cast<unsigned>((rows + simt_warps - 1) / simt_warps), static_cast<unsigned>(q_heads), static_cast<unsigned>(requests));
}

template <class Keys>
void launch_simt_prefill(exec::cuda exec, Keys keys, const KvBatchView& b, std::size_t head_dim, std::size_t layer, const Geometry& geometry,
                         const float* q, float* out) {
  with_head_dim(head_dim, [&](auto dim) {
    constexpr int D = decltype(dim)::value;
    simt_prefill_kernel<D, Keys><<<simt_grid(b.max_prompt_tokens, geometry.q_heads, b.count), simt_warps * 32, 0, exec.stream>>>(
        keys, b, static_cast<int>(layer), geometry, q, out);
    XGR_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace detail

namespace detail {

template <class T, class Keys>
void launch_prefill(exec::cuda exec, Keys keys, const KvBatchView& b, std::size_t kv_heads, std::size_t head_dim, std::size_t layer,
                    const Geometry& geometry, const T* q, T* out) {
  with_head_dim(head_dim, [&](auto dim) {
    constexpr int D = decltype(dim)::value;
    using Shape = WideBlock;
    constexpr std::size_t smem = tile_smem_bytes<T, D, Shape>();
    auto kernel = prefill_kernel<T, D, Shape, Keys>;
    allow_smem(kernel, smem);
    const dim3 grid((b.max_prompt_tokens * geometry.group + Shape::rows - 1) / Shape::rows, kv_heads, b.count);
    kernel<<<grid, Shape::threads, smem, exec.stream>>>(keys, b, static_cast<int>(layer), geometry, q, out);
    XGR_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace detail

// Prefill on the device: writes K/V into the pool's pages, then causal attention. Same arguments and
// result as the host prefill.
template <class T, class Layout>
void prefill(exec::cuda exec, KvPool<T, Layout, MemorySpace::device>& pool, const KvBatch<MemorySpace::device>& batch, std::size_t layer,
             const Options& options, RowSpan<const T> q, RowSpan<const T> k, RowSpan<const T> v, RowSpan<T> out) {
  detail::require_attention_type<T>();
  const char* op = "attention::prefill";
  const auto view = pool.view();
  const KvBatchView& b = batch.view();
  const detail::Geometry geometry = detail::geometry_of(options, view.kv_heads, view.head_dim, op);
  detail::require_elements(q.size(), b.total_tokens, options.q_heads, view.head_dim, op, "q");
  detail::require_elements(out.size(), b.total_tokens, options.q_heads, view.head_dim, op, "out");
  kv::write_prompt(exec, pool, batch, layer, k, v);
  if (b.count == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    detail::launch_simt_prefill(exec, detail::PromptKeys<T, Layout>{view}, b, view.head_dim, layer, geometry, q.data(), out.data());
  } else {
    detail::launch_prefill(exec, detail::PromptKeys<T, Layout>{view}, b, view.kv_heads, view.head_dim, layer, geometry, q.data(), out.data());
  }
}

// Prefill into the copy-on-fork baseline: the prompt's K/V go to beam 0's pages (kv::fork copies them
// to the other beams afterwards), and the causal attention reads them from there.
template <class T>
void prefill(exec::cuda exec, CopyOnForkKvCache<T, MemorySpace::device>& cache, const KvBatch<MemorySpace::device>& batch,
             std::size_t layer, const Options& options, RowSpan<const T> q, RowSpan<const T> k, RowSpan<const T> v, RowSpan<T> out) {
  detail::require_attention_type<T>();
  const char* op = "attention::prefill";
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  const detail::Geometry geometry = detail::geometry_of(options, view.kv_heads, view.head_dim, op);
  kv::detail::require_layer(layer, view.layers, op);
  detail::require_elements(q.size(), b.total_tokens, options.q_heads, view.head_dim, op, "q");
  detail::require_elements(out.size(), b.total_tokens, options.q_heads, view.head_dim, op, "out");
  kv::write_prompt(exec, cache, batch, layer, k, v);
  if (b.count == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    detail::launch_simt_prefill(exec, detail::CopyOnForkPromptKeys<T>{view}, b, view.head_dim, layer, geometry, q.data(), out.data());
  } else {
    detail::launch_prefill(exec, detail::CopyOnForkPromptKeys<T>{view}, b, view.kv_heads, view.head_dim, layer, geometry, q.data(),
                           out.data());
  }
}

// How many prompt chunks a batch is split into. A batch whose blocks fill more than half of the
// multiprocessors is not split: the partials and the merge kernel cost more than a second resident
// block per multiprocessor gains (on an H100, 8 x 128 beams at 1,024 tokens took 46 us in two splits
// and 34 us in one). Smaller batches split until their blocks fill the resident slots of the GPU
// (decode_blocks_per_sm per multiprocessor). Chunks stay at least 256 keys long, and at most
// limits.max_splits.
[[nodiscard]] inline int decode_splits(const KvBatchView& batch, std::size_t kv_heads, std::size_t group, std::size_t max_splits) {
  const std::size_t rows_per_block = detail::WideBlock::rows;
  const std::size_t blocks = std::max<std::size_t>(1, (batch.total_beams * group + rows_per_block - 1) / rows_per_block * kv_heads);
  const std::size_t multiprocessors = static_cast<std::size_t>(detail::multiprocessors());
  if (2 * blocks > multiprocessors) return 1;
  const std::size_t resident = std::size_t{detail::decode_blocks_per_sm} * multiprocessors;
  const std::size_t wanted = std::max<std::size_t>(1, resident / blocks);
  const std::size_t by_length = std::max<std::size_t>(1, batch.max_prompt_tokens / 256);
  return static_cast<int>(std::clamp<std::size_t>(wanted, 1, std::min(max_splits, by_length)));
}

// Staged decode on the device (see the top of this file). workspace must hold
// decode_workspace_bytes(limits) with limits covering this batch.
template <class T, class Layout>
void decode(exec::cuda exec, KvPool<T, Layout, MemorySpace::device>& pool, const KvBatch<MemorySpace::device>& batch, std::size_t layer,
            std::size_t step, const Options& options, RowSpan<const T> q, RowSpan<T> out, DeviceWorkspace& workspace,
            const DecodeLimits& limits) {
  detail::require_attention_type<T>();
  const char* op = "attention::decode";
  const auto view = pool.view();
  const KvBatchView& b = batch.view();
  const detail::Geometry geometry = detail::geometry_of(options, view.kv_heads, view.head_dim, op);
  kv::detail::require_layer(layer, view.layers, op);
  kv::detail::require_step(step, view.max_steps, op);
  detail::require_elements(q.size(), b.total_beams, options.q_heads, view.head_dim, op, "q");
  detail::require_elements(out.size(), b.total_beams, options.q_heads, view.head_dim, op, "out");
  require_argument(b.total_beams <= limits.max_total_beams && options.q_heads <= limits.q_heads && view.head_dim <= limits.head_dim &&
                       limits.max_splits > 0,
                   op, "the batch exceeds the DecodeLimits its workspace was sized for");
  workspace.require(decode_workspace_bytes(limits), op);
  WorkspaceArena arena = workspace.arena();
  const DecodeScratch scratch = DecodeScratch::carve(arena, limits);
  if (b.count == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    detail::with_head_dim(view.head_dim, [&](auto head_dim) {
      constexpr int D = decltype(head_dim)::value;
      detail::simt_decode_kernel<D, Layout><<<detail::simt_grid(b.max_beams, options.q_heads, b.count), detail::simt_warps * 32, 0,
                                              exec.stream>>>(view, b, static_cast<int>(layer), static_cast<int>(step), geometry, q.data(),
                                                             out.data());
      XGR_CUDA_CHECK_LAUNCH();
    });
  } else {
    const int splits = decode_splits(b, view.kv_heads, geometry.group, limits.max_splits);
    detail::with_head_dim(view.head_dim, [&](auto head_dim) {
      constexpr int D = decltype(head_dim)::value;
      const bool hopper = D == 128 && options.allow_wgmma && detail::wgmma::available();
      auto launch = [&](auto shape, auto hopper_flag) {
        using Shape = decltype(shape);
        constexpr bool Hopper = decltype(hopper_flag)::value;
        constexpr std::size_t smem = Hopper ? detail::wgmma::smem_bytes : detail::tile_smem_bytes<T, D, Shape>();
        const dim3 grid((b.max_beams * geometry.group + Shape::rows - 1) / Shape::rows, view.kv_heads * splits, b.count);
        if (splits == 1) {
          auto fused_kernel = detail::decode_prefix_kernel<T, D, Shape, Layout, true, Hopper>;
          detail::allow_smem(fused_kernel, smem);
          fused_kernel<<<grid, Shape::threads, smem, exec.stream>>>(view, b, static_cast<int>(layer), static_cast<int>(step), geometry, 1,
                                                                    q.data(), nullptr, nullptr, out.data());
        } else {
          auto prefix_kernel = detail::decode_prefix_kernel<T, D, Shape, Layout, false, Hopper>;
          detail::allow_smem(prefix_kernel, smem);
          prefix_kernel<<<grid, Shape::threads, smem, exec.stream>>>(view, b, static_cast<int>(layer), static_cast<int>(step), geometry,
                                                                     splits, q.data(), scratch.partial_o, scratch.partial_lse, nullptr);
        }
        XGR_CUDA_CHECK_LAUNCH();
      };
      if constexpr (D == 128) {
        if (hopper) {
          launch(detail::wgmma::HopperBlock{}, std::true_type{});
        } else {
          launch(detail::WideBlock{}, std::false_type{});
        }
      } else {
        launch(detail::WideBlock{}, std::false_type{});
      }
      if (splits == 1) return;
      constexpr int merge_warps = 8;
      const std::size_t warps = std::size_t{b.max_beams} * options.q_heads;  // per request
      const dim3 merge_grid(static_cast<unsigned>((warps + merge_warps - 1) / merge_warps), 1, b.count);
      detail::decode_merge_kernel<T, D, Layout><<<merge_grid, merge_warps * 32, 0, exec.stream>>>(
          view, b, static_cast<int>(layer), static_cast<int>(step), geometry, splits, q.data(), scratch.partial_o, scratch.partial_lse,
          out.data());
      XGR_CUDA_CHECK_LAUNCH();
    });
  }
}

// Decode over the copy-on-fork baseline: every beam reads its own copy of the prompt.
template <class T>
void decode(exec::cuda exec, CopyOnForkKvCache<T, MemorySpace::device>& cache, const KvBatch<MemorySpace::device>& batch,
            std::size_t layer, std::size_t step, const Options& options, RowSpan<const T> q, RowSpan<T> out) {
  detail::require_attention_type<T>();
  const char* op = "attention::decode";
  const auto view = cache.view();
  const KvBatchView& b = batch.view();
  const detail::Geometry geometry = detail::geometry_of(options, view.kv_heads, view.head_dim, op);
  kv::detail::require_layer(layer, view.layers, op);
  kv::detail::require_step(step, view.max_steps, op);
  detail::require_elements(q.size(), b.total_beams, options.q_heads, view.head_dim, op, "q");
  detail::require_elements(out.size(), b.total_beams, options.q_heads, view.head_dim, op, "out");
  if (b.count == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    detail::with_head_dim(view.head_dim, [&](auto head_dim) {
      constexpr int D = decltype(head_dim)::value;
      detail::simt_per_beam_kernel<D><<<detail::simt_grid(b.max_beams, options.q_heads, b.count), detail::simt_warps * 32, 0, exec.stream>>>(
          view, b, static_cast<int>(layer), static_cast<int>(step), geometry, q.data(), out.data());
      XGR_CUDA_CHECK_LAUNCH();
    });
  } else {
    detail::with_head_dim(view.head_dim, [&](auto head_dim) {
      constexpr int D = decltype(head_dim)::value;
      using Shape = detail::PerBeamBlock;
      constexpr std::size_t smem = detail::tile_smem_bytes<T, D, Shape>();
      auto kernel = detail::decode_per_beam_kernel<T, D, Shape>;
      detail::allow_smem(kernel, smem);
      const dim3 grid((geometry.group + Shape::rows - 1) / Shape::rows, view.kv_heads * b.max_beams, b.count);
      kernel<<<grid, Shape::threads, smem, exec.stream>>>(view, b, static_cast<int>(layer), static_cast<int>(step), geometry, q.data(), out.data());
      XGR_CUDA_CHECK_LAUNCH();
    });
  }
}

}  // namespace xgr::attention
