// examples/engine/cuda_model.cuh — the GR model on the device: the same Qwen2 decoder as model.hpp.
//
// Weights live once on the device (CudaModel, shared by every group in flight); everything a running
// group writes lives in its own CudaForward (activations, cuBLAS handle and workspace), so several
// groups can run at once on different streams. Precision, as in HF's bf16 inference (T = bf16 or
// fp16); T = float is the precision path, every value in fp32, for agreement with a float32 reference
// such as HF's default (GEMMs in full fp32, no TF32; attention on the CUDA cores):
//
//   residual stream x           fp32 [rows][hidden]
//   rms_norm(x) -> h            T, fp32 arithmetic
//   h Wqkv^T                    one cuBLAS GEMM against the concatenated [q; k; v] weight, fp32 out;
//                               bias + RoPE in fp32, then q, k, v rounded to T (the KV cache is T)
//   attention                   xgr::attention (prefill, staged decode or the copy-on-fork baseline)
//   x += attended Wo^T          cuBLAS with beta = 1: the residual add is the GEMM's epilogue
//   h Wgate_up^T                one GEMM against [gate; up], T out; silu(gate) * up -> T
//   x += act Wdown^T            beta = 1 again
//   logits                      rms_norm(x) Wlm^T, fp32 [rows][vocab]
//
// Every GEMM accumulates in fp32 (CUBLAS_COMPUTE_32F). Nothing allocates after construction: a
// CudaForward is sized once for the largest group it will run.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/model.hpp"
#include "xgr/attention/cuda.cuh"
#include "xgr/core/cuda.cuh"
#include "xgr/core/dtype.hpp"
#include "xgr/kv/cuda.cuh"

namespace xgr::engine {

namespace cuda_detail {

inline void check_cublas(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw Error(ErrorKind::cuda, call, std::string("cuBLAS status ") + std::to_string(static_cast<int>(status)));
  }
}

template <class T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
  else if constexpr (std::is_same_v<T, bfloat16>) return CUDA_R_16BF;
  else return CUDA_R_16F;
}

constexpr int row_threads = 256;

// Sum over a block of row_threads threads; every thread gets the result.
__device__ inline float block_sum(float value) {
  __shared__ float partial[row_threads / 32];
  for (int mask = 16; mask > 0; mask /= 2) value += __shfl_xor_sync(0xffffffffu, value, mask);
  __syncthreads();  // `partial` may still be read by a previous call
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = value;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < row_threads / 32; ++w) total += partial[w];
  return total;
}

template <class T>
__global__ void __launch_bounds__(row_threads) embed_kernel(const std::uint32_t* tokens, const T* embed, std::uint32_t hidden, float* x) {
  const std::size_t row = blockIdx.x;
  const T* source = embed + std::size_t{tokens[row]} * hidden;
  for (std::uint32_t i = threadIdx.x; i < hidden; i += row_threads) x[row * hidden + i] = xgr::to_float(source[i]);
}

// out[r] = weight * x[source_rows ? source_rows[r] : r] / sqrt(mean square + eps), rounded to T once.
template <class T>
__global__ void __launch_bounds__(row_threads) rms_norm_kernel(const float* x, const std::uint32_t* source_rows, const float* weight,
                                                               std::uint32_t hidden, float eps, T* out) {
  const std::size_t row = blockIdx.x;
  const float* source = x + (source_rows ? std::size_t{source_rows[row]} : row) * hidden;
  float square = 0.0f;
  for (std::uint32_t i = threadIdx.x; i < hidden; i += row_threads) square += source[i] * source[i];
  const float inverse = rsqrtf(block_sum(square) / static_cast<float>(hidden) + eps);
  for (std::uint32_t i = threadIdx.x; i < hidden; i += row_threads) out[row * hidden + i] = from_float<T>(weight[i] * (source[i] * inverse));
}

// qkv [rows][q_dim + 2 kv_dim] (fp32 GEMM output) + bias -> RoPE on q and k at positions[row] -> q, k, v
// in T. HF's rotate-half convention: dims j and j + d/2 rotate by position * inverse_frequencies[j].
// A thread owns one j and walks the heads, so each (row, j) angle's sine and cosine are computed once
// per thread rather than once per head (they dominated this kernel). Needs head_dim / 2 <= row_threads.
template <class T>
__global__ void __launch_bounds__(row_threads) bias_rope_kernel(const float* __restrict__ qkv, const float* __restrict__ bias,
                                                                const std::uint32_t* __restrict__ positions,
                                                                const float* __restrict__ inverse_frequencies, std::uint32_t q_heads,
                                                                std::uint32_t kv_heads, std::uint32_t head_dim, T* __restrict__ q,
                                                                T* __restrict__ k, T* __restrict__ v) {
  const std::size_t row = blockIdx.x;
  const std::uint32_t half = head_dim / 2, heads = q_heads + 2 * kv_heads, width = heads * head_dim;
  const std::uint32_t lanes_per_head = row_threads / half * half;  // threads that hold a j
  if (threadIdx.x >= lanes_per_head) return;
  const std::uint32_t j = threadIdx.x % half, first_head = threadIdx.x / half, head_step = row_threads / half;
  const float* in = qkv + row * width;
  float s, c;
  sincosf(static_cast<float>(positions[row]) * inverse_frequencies[j], &s, &c);
  for (std::uint32_t head = first_head; head < heads; head += head_step) {
    const std::uint32_t column = head * head_dim + j;
    float a = in[column] + bias[column], b = in[column + half] + bias[column + half];
    if (head < q_heads + kv_heads) {  // q and k rotate, v does not
      const float ra = a * c - b * s, rb = b * c + a * s;
      a = ra;
      b = rb;
    }
    T* target = head < q_heads ? q + (row * q_heads + head) * head_dim
                : head < q_heads + kv_heads ? k + (row * kv_heads + head - q_heads) * head_dim
                                            : v + (row * kv_heads + head - q_heads - kv_heads) * head_dim;
    target[j] = from_float<T>(a);
    target[j + half] = from_float<T>(b);
  }
}

// gate_up [rows][2 * inter] (gate then up) -> silu(gate) * up [rows][inter]. Eight elements per thread
// and step as one 16-byte load of each half (inter % 8 == 0, checked by CudaModel): this kernel only
// moves bytes, and wide loads are what reach the memory bandwidth.
template <class T>
__global__ void __launch_bounds__(row_threads) silu_mul_kernel(const T* __restrict__ gate_up, std::uint32_t inter, T* __restrict__ out) {
  constexpr std::uint32_t width = 8;
  struct alignas(16) Pack {
    T value[width];
  };
  const std::size_t row = blockIdx.x;
  const auto* gate = reinterpret_cast<const Pack*>(gate_up + row * 2 * inter);
  const auto* up = reinterpret_cast<const Pack*>(gate_up + row * 2 * inter + inter);
  auto* target = reinterpret_cast<Pack*>(out + row * inter);
  for (std::uint32_t i = threadIdx.x; i < inter / width; i += row_threads) {
    const Pack g = gate[i], u = up[i];
    Pack result;
#pragma unroll
    for (std::uint32_t e = 0; e < width; ++e) {
      const float x = xgr::to_float(g.value[e]);
      result.value[e] = from_float<T>(x / (1.0f + expf(-x)) * xgr::to_float(u.value[e]));
    }
    target[i] = result;
  }
}

// Request i's prompt logits go to its first beam row (the row level 0 of the beam search reads).
__global__ void __launch_bounds__(row_threads) scatter_rows_kernel(const float* compact, const std::uint32_t* beam_begin, std::uint32_t vocab,
                                                                   float* rows) {
  const std::size_t i = blockIdx.x;
  float* target = rows + std::size_t{beam_begin[i]} * vocab;
  for (std::uint32_t c = threadIdx.x; c < vocab; c += row_threads) target[c] = compact[i * vocab + c];
}

}  // namespace cuda_detail

// The model's weights on the device (T = bfloat16, half or float), converted once from ModelWeights.
// Matrices in T, norms and biases in fp32; q/k/v and gate/up concatenated so that each is one GEMM.
template <class T>
class CudaModel {
  static_assert(std::is_same_v<T, bfloat16> || std::is_same_v<T, half> || std::is_same_v<T, float>,
                "CudaModel runs in bfloat16, half or float");

 public:
  struct Layer {
    DeviceBuffer<float> input_norm, qkv_bias, post_attention_norm;
    DeviceBuffer<T> qkv_weight, o_weight, gate_up_weight, down_weight;
  };

  CudaModel(const ModelConfig& config, const ModelWeights& weights) : config_(config) {
    validate_weights(config, weights, "CudaModel");
    require_argument(config.head_dim == 64 || config.head_dim == 128, "CudaModel",
                     [&] { return "the device attention takes head_dim 64 or 128, the config has " +
                                      std::to_string(config.head_dim); });
    require_argument(config.intermediate_size % 8 == 0, "CudaModel",
                     [&] { return "intermediate_size must be a multiple of 8 on the device, the config has " +
                                      std::to_string(config.intermediate_size); });
    // The same float expression as the host model's RoPE, so both rotate by the same angles.
    std::vector<float> inverse_frequencies(config.head_dim / 2);
    for (std::size_t j = 0; j < inverse_frequencies.size(); ++j) {
      inverse_frequencies[j] =
          1.0f / std::pow(static_cast<float>(config.rope_theta), static_cast<float>(2 * j) / static_cast<float>(config.head_dim));
    }
    rope_inverse_frequencies_ = to_device(std::span<const float>(inverse_frequencies));
    embed_ = upload_as<T>({&weights.embed});
    for (const LayerWeights& w : weights.layers) {
      layers_.push_back(Layer{upload_as<float>({&w.input_norm}), upload_as<float>({&w.q_bias, &w.k_bias, &w.v_bias}),
                              upload_as<float>({&w.post_attention_norm}), upload_as<T>({&w.q_weight, &w.k_weight, &w.v_weight}),
                              upload_as<T>({&w.o_weight}), upload_as<T>({&w.gate_weight, &w.up_weight}), upload_as<T>({&w.down_weight})});
    }
    final_norm_ = upload_as<float>({&weights.final_norm});
    if (!config.tie_word_embeddings) lm_head_ = upload_as<T>({&weights.lm_head});
  }

  [[nodiscard]] const ModelConfig& config() const noexcept { return config_; }
  [[nodiscard]] KvShape kv_shape() const noexcept { return {config_.num_hidden_layers, config_.num_key_value_heads, config_.head_dim}; }
  [[nodiscard]] const Layer& layer(std::size_t l) const noexcept { return layers_[l]; }
  [[nodiscard]] const T* embed() const noexcept { return embed_.data(); }
  [[nodiscard]] const T* lm_head() const noexcept { return config_.tie_word_embeddings ? embed_.data() : lm_head_.data(); }
  [[nodiscard]] const float* final_norm() const noexcept { return final_norm_.data(); }
  [[nodiscard]] const float* rope_inverse_frequencies() const noexcept { return rope_inverse_frequencies_.data(); }

 private:
  // Concatenates host tensors (rows of the same width stack) and uploads them converted to U.
  template <class U>
  static DeviceBuffer<U> upload_as(std::initializer_list<const std::vector<float>*> parts) {
    std::vector<U> host;
    for (const std::vector<float>* part : parts) {
      for (float value : *part) host.push_back(from_float<U>(value));
    }
    return to_device(std::span<const U>(host));
  }

  ModelConfig config_;
  DeviceBuffer<T> embed_, lm_head_;
  DeviceBuffer<float> final_norm_, rope_inverse_frequencies_;
  std::vector<Layer> layers_;
};

// What one group in flight needs to run the model: activations for up to max_rows tokens, the logits
// of up to max_beam_rows beam rows, and its own cuBLAS handle (a handle is bound to one stream at a
// time, so groups on different streams must not share one).
template <class T>
class CudaForward {
 public:
  CudaForward(const CudaModel<T>& model, std::size_t max_rows, std::size_t max_requests, std::size_t max_beam_rows)
      : model_(model), max_rows_(max_rows), max_requests_(max_requests), max_beam_rows_(max_beam_rows) {
    const ModelConfig& c = model.config();
    const std::size_t q_dim = c.num_attention_heads * c.head_dim, kv_dim = c.num_key_value_heads * c.head_dim;
    x_ = DeviceBuffer<float>(max_rows * c.hidden_size);
    h_ = DeviceBuffer<T>(max_rows * c.hidden_size);
    qkv_ = DeviceBuffer<float>(max_rows * (q_dim + 2 * kv_dim));
    q_ = DeviceBuffer<T>(max_rows * q_dim);
    k_ = DeviceBuffer<T>(max_rows * kv_dim);
    v_ = DeviceBuffer<T>(max_rows * kv_dim);
    attended_ = DeviceBuffer<T>(max_rows * q_dim);
    gate_up_ = DeviceBuffer<T>(max_rows * 2 * c.intermediate_size);
    act_ = DeviceBuffer<T>(max_rows * c.intermediate_size);
    prompt_logits_ = DeviceBuffer<float>(max_requests * c.vocab_size);
    logits_ = DeviceBuffer<float>(max_beam_rows * c.vocab_size);
    // Rows no request owns at level 0 are never selected from, but they are read: keep them finite.
    XGR_CUDA_CHECK(cudaMemset(logits_.data(), 0, logits_.size() * sizeof(float)));
    XGR_CUDA_CHECK(cudaStreamSynchronize(nullptr));  // the forward's non-blocking stream does not wait for it
    cublas_workspace_ = DeviceBuffer<std::byte>(cublas_workspace_bytes);
    cuda_detail::check_cublas(cublasCreate(&handle_), "cublasCreate");
    // A fixed workspace keeps cuBLAS from allocating inside a stream (or a graph capture).
    cuda_detail::check_cublas(cublasSetWorkspace(handle_, cublas_workspace_.data(), cublas_workspace_.size()), "cublasSetWorkspace");
  }
  CudaForward(const CudaForward&) = delete;
  CudaForward& operator=(const CudaForward&) = delete;
  ~CudaForward() { (void)cublasDestroy(handle_); }

  // Beam-row logits [max_beam_rows][vocab]: prefill writes each request's first beam row, decode all.
  [[nodiscard]] float* logits() noexcept { return logits_.data(); }

  // The batch's prompts (tokens and positions packed as batch.token_begin says, last_rows[i] the
  // index of request i's last token) through the model; KV into `cache`; each prompt's last logits to
  // its first beam row of logits().
  template <class Cache>
  void prefill(exec::cuda exec, Cache& cache, const KvBatch<MemorySpace::device>& batch, const std::uint32_t* tokens,
               const std::uint32_t* positions, const std::uint32_t* last_rows) {
    const KvBatchView& b = batch.view();
    require_rows(b.total_tokens, max_rows_, "prompt tokens");
    require_rows(b.count, max_requests_, "requests");
    forward(exec, b.total_tokens, tokens, positions, [&](std::size_t layer, std::span<const T> q, std::span<const T> k, std::span<const T> v,
                                                        std::span<T> out) {
      attention::prefill(exec, cache, batch, layer, options(), q, k, v, out);
    });
    const ModelConfig& c = model_.config();
    lm_head(exec, b.count, last_rows, prompt_logits_.data());
    cuda_detail::scatter_rows_kernel<<<b.count, cuda_detail::row_threads, 0, exec.stream>>>(
        prompt_logits_.data(), b.beam_begin, static_cast<std::uint32_t>(c.vocab_size), logits_.data());
    XGR_CUDA_CHECK_LAUNCH();
  }

  // One decode step: tokens[row] at positions[row] for every beam row (the step's reorder already
  // recorded in `cache`); logits of every row to logits(). `attend(layer, q, k, v, out)` writes the
  // step's K/V and runs the decode attention of the cache in use.
  template <class Attend>
  void decode(exec::cuda exec, std::size_t rows, const std::uint32_t* tokens, const std::uint32_t* positions, Attend&& attend) {
    require_rows(rows, max_beam_rows_, "beam rows");
    forward(exec, rows, tokens, positions, attend);
    lm_head(exec, rows, nullptr, logits_.data());
  }

  [[nodiscard]] attention::Options options() const { return {model_.config().num_attention_heads}; }

 private:
  static constexpr std::size_t cublas_workspace_bytes = std::size_t{32} << 20;

  [[nodiscard]] float eps() const { return static_cast<float>(model_.config().rms_norm_eps); }

  static void require_rows(std::size_t rows, std::size_t limit, const char* what) {
    require_argument(rows <= limit, "CudaForward",
                     [&] { return std::to_string(rows) + " " + what + " exceed the " +
                                      std::to_string(limit) + " it was sized for"; });
  }

  // out[rows][n] = in[rows][k] weight[n][k]^T + beta * out (HF's Linear), fp32 accumulation. cuBLAS is
  // column-major: a row-major [r][c] array is its c x r matrix, so this is out (n x rows) =
  // weight^T (n x k, the k x n matrix `weight` transposed) times in (k x rows).
  template <class Out>
  void gemm(exec::cuda exec, const T* in, std::size_t rows, std::size_t k, const T* weight, std::size_t n, Out* out, float beta) {
    if (rows == 0) return;
    const float alpha = 1.0f;
    cuda_detail::check_cublas(cublasSetStream(handle_, exec.stream), "cublasSetStream");
    cuda_detail::check_cublas(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(rows), static_cast<int>(k),
                                           &alpha, weight, cuda_detail::cuda_type<T>(), static_cast<int>(k), in, cuda_detail::cuda_type<T>(),
                                           static_cast<int>(k), &beta, out, cuda_detail::cuda_type<Out>(), static_cast<int>(n),
                                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                              "cublasGemmEx");
  }

  // out[r] = rms_norm(x[source_rows ? source_rows[r] : r]) Wlm^T: the final norm and the LM head.
  void lm_head(exec::cuda exec, std::size_t rows, const std::uint32_t* source_rows, float* out) {
    const ModelConfig& c = model_.config();
    cuda_detail::rms_norm_kernel<T><<<static_cast<unsigned>(rows), cuda_detail::row_threads, 0, exec.stream>>>(
        x_.data(), source_rows, model_.final_norm(), static_cast<std::uint32_t>(c.hidden_size), eps(), h_.data());
    XGR_CUDA_CHECK_LAUNCH();
    gemm(exec, h_.data(), rows, c.hidden_size, model_.lm_head(), c.vocab_size, out, 0.0f);
  }

  template <class Attend>
  void forward(exec::cuda exec, std::size_t rows, const std::uint32_t* tokens, const std::uint32_t* positions, Attend&& attend) {
    if (rows == 0) return;
    const ModelConfig& c = model_.config();
    const auto grid = static_cast<unsigned>(rows);
    const auto hidden = static_cast<std::uint32_t>(c.hidden_size);
    const std::size_t q_dim = c.num_attention_heads * c.head_dim, kv_dim = c.num_key_value_heads * c.head_dim;
    const std::size_t inter = c.intermediate_size;
    cuda_detail::embed_kernel<T><<<grid, cuda_detail::row_threads, 0, exec.stream>>>(tokens, model_.embed(), hidden, x_.data());
    XGR_CUDA_CHECK_LAUNCH();
    for (std::size_t l = 0; l < c.num_hidden_layers; ++l) {
      const typename CudaModel<T>::Layer& w = model_.layer(l);
      cuda_detail::rms_norm_kernel<T><<<grid, cuda_detail::row_threads, 0, exec.stream>>>(x_.data(), nullptr, w.input_norm.data(), hidden, eps(),
                                                                                         h_.data());
      XGR_CUDA_CHECK_LAUNCH();
      gemm(exec, h_.data(), rows, c.hidden_size, w.qkv_weight.data(), q_dim + 2 * kv_dim, qkv_.data(), 0.0f);
      cuda_detail::bias_rope_kernel<T><<<grid, cuda_detail::row_threads, 0, exec.stream>>>(
          qkv_.data(), w.qkv_bias.data(), positions, model_.rope_inverse_frequencies(), static_cast<std::uint32_t>(c.num_attention_heads),
          static_cast<std::uint32_t>(c.num_key_value_heads), static_cast<std::uint32_t>(c.head_dim), q_.data(), k_.data(), v_.data());
      XGR_CUDA_CHECK_LAUNCH();
      attend(l, std::span<const T>(q_.data(), rows * q_dim), std::span<const T>(k_.data(), rows * kv_dim),
             std::span<const T>(v_.data(), rows * kv_dim), std::span<T>(attended_.data(), rows * q_dim));
      gemm(exec, attended_.data(), rows, q_dim, w.o_weight.data(), c.hidden_size, x_.data(), 1.0f);
      cuda_detail::rms_norm_kernel<T><<<grid, cuda_detail::row_threads, 0, exec.stream>>>(x_.data(), nullptr, w.post_attention_norm.data(),
                                                                                         hidden, eps(), h_.data());
      XGR_CUDA_CHECK_LAUNCH();
      gemm(exec, h_.data(), rows, c.hidden_size, w.gate_up_weight.data(), 2 * inter, gate_up_.data(), 0.0f);
      cuda_detail::silu_mul_kernel<T><<<grid, cuda_detail::row_threads, 0, exec.stream>>>(gate_up_.data(), static_cast<std::uint32_t>(inter),
                                                                                          act_.data());
      XGR_CUDA_CHECK_LAUNCH();
      gemm(exec, act_.data(), rows, inter, w.down_weight.data(), c.hidden_size, x_.data(), 1.0f);
    }
  }

  const CudaModel<T>& model_;
  std::size_t max_rows_, max_requests_, max_beam_rows_;
  DeviceBuffer<float> x_, qkv_, prompt_logits_, logits_;
  DeviceBuffer<T> h_, q_, k_, v_, attended_, gate_up_, act_;
  DeviceBuffer<std::byte> cublas_workspace_;
  cublasHandle_t handle_ = nullptr;
};

}  // namespace xgr::engine
