// examples/engine/model.hpp — the GR model: a Qwen2-style decoder, host path.
//
// HF transformers' Qwen2ForCausalLM, layer by layer, in float with the KV cache in a host KvPool:
//
//   x = embed[token]
//   per layer:  h = rms_norm(x) ; q, k, v = h Wq + bq, h Wk + bk, h Wv + bv ; rope(q, k, position)
//               x += attention(q, k, v) Wo                       (KvPool + xgr::attention)
//               h = rms_norm(x) ; x += (silu(h Wgate) * (h Wup)) Wdown
//   logits = rms_norm(x) Wlm                                      (Wlm = embed when tied)
//
// Weights follow HF's layout ([out][in] row-major, names as in model.safetensors). Prefill runs
// the prompts of a KvBatch and returns each prompt's last-token logits; a decode step runs one token
// per beam row at position prompt + step, after the caller recorded the step's beam reorder
// (kv::record_parents). It is the slow, exact reference the CUDA path is checked against, and what
// the engine runs where no GPU exists.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/config.hpp"
#include "xgr/attention/host.hpp"
#include "xgr/core/error.hpp"
#include "xgr/kv/copy_on_fork.hpp"
#include "xgr/kv/host.hpp"
#include "xgr/kv/pool.hpp"

namespace xgr::engine {

struct LayerWeights {
  std::vector<float> input_norm;                 // [hidden]
  std::vector<float> q_weight, q_bias;           // [heads * head_dim][hidden], [heads * head_dim]
  std::vector<float> k_weight, k_bias;           // [kv_heads * head_dim][hidden], [kv_heads * head_dim]
  std::vector<float> v_weight, v_bias;           // as k
  std::vector<float> o_weight;                   // [hidden][heads * head_dim]
  std::vector<float> post_attention_norm;        // [hidden]
  std::vector<float> gate_weight, up_weight;     // [intermediate][hidden]
  std::vector<float> down_weight;                // [hidden][intermediate]
};

struct ModelWeights {
  std::vector<float> embed;       // [vocab][hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  std::vector<float> lm_head;     // [vocab][hidden]; empty when tied to embed
};

// Random weights for a config (normal with standard deviation `scale`, norms at 1): the embedded
// default model and the tests. Deterministic for a seed.
inline ModelWeights random_weights(const ModelConfig& config, std::uint64_t seed, float scale = 0.1f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  auto random = [&](std::size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng);
    return v;
  };
  const std::size_t hidden = config.hidden_size, q_dim = config.num_attention_heads * config.head_dim,
                    kv_dim = config.num_key_value_heads * config.head_dim, inter = config.intermediate_size;
  ModelWeights w;
  w.embed = random(config.vocab_size * hidden);
  for (std::size_t l = 0; l < config.num_hidden_layers; ++l) {
    LayerWeights layer;
    layer.input_norm.assign(hidden, 1.0f);
    layer.q_weight = random(q_dim * hidden);
    layer.q_bias = random(q_dim);
    layer.k_weight = random(kv_dim * hidden);
    layer.k_bias = random(kv_dim);
    layer.v_weight = random(kv_dim * hidden);
    layer.v_bias = random(kv_dim);
    layer.o_weight = random(hidden * q_dim);
    layer.post_attention_norm.assign(hidden, 1.0f);
    layer.gate_weight = random(inter * hidden);
    layer.up_weight = random(inter * hidden);
    layer.down_weight = random(hidden * inter);
    w.layers.push_back(std::move(layer));
  }
  w.final_norm.assign(hidden, 1.0f);
  if (!config.tie_word_embeddings) w.lm_head = random(config.vocab_size * hidden);
  return w;
}

namespace detail {

// out[r][o] = sum_i x[r][i] * weight[o][i] (+ bias[o]): HF's Linear, weight [out][in].
inline void linear(std::span<const float> x, std::size_t rows, std::size_t in, std::span<const float> weight, std::span<const float> bias,
                   std::size_t out_features, std::span<float> out) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * in;
    for (std::size_t o = 0; o < out_features; ++o) {
      const float* wo = weight.data() + o * in;
      float sum = bias.empty() ? 0.0f : bias[o];
      for (std::size_t i = 0; i < in; ++i) sum += xr[i] * wo[i];
      out[r * out_features + o] = sum;
    }
  }
}

// HF Qwen2RMSNorm: x / sqrt(mean(x^2) + eps) * weight, per row.
inline void rms_norm(std::span<const float> x, std::size_t rows, std::size_t hidden, std::span<const float> weight, float eps,
                     std::span<float> out) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * hidden;
    float mean_square = 0.0f;
    for (std::size_t i = 0; i < hidden; ++i) mean_square += xr[i] * xr[i];
    mean_square /= static_cast<float>(hidden);
    const float inverse = 1.0f / std::sqrt(mean_square + eps);
    for (std::size_t i = 0; i < hidden; ++i) out[r * hidden + i] = weight[i] * (xr[i] * inverse);
  }
}

// HF's rotary embedding ("rotate half"): dims j and j + d/2 rotate together by position * theta^(-2j/d).
inline void rope(std::span<float> x, std::size_t rows, std::size_t heads, std::size_t head_dim, std::span<const std::uint32_t> positions,
                 float theta) {
  const std::size_t half = head_dim / 2;
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t j = 0; j < half; ++j) {
      const float inverse_frequency = 1.0f / std::pow(theta, static_cast<float>(2 * j) / static_cast<float>(head_dim));
      const float angle = static_cast<float>(positions[r]) * inverse_frequency;
      const float c = std::cos(angle), s = std::sin(angle);
      for (std::size_t h = 0; h < heads; ++h) {
        float* v = x.data() + (r * heads + h) * head_dim;
        const float a = v[j], b = v[j + half];
        v[j] = a * c - b * s;
        v[j + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace detail

// Throws Error(invalid_argument) naming the first tensor whose size differs from what `config` needs.
inline void validate_weights(const ModelConfig& config, const ModelWeights& weights, const char* op) {
  const std::size_t hidden = config.hidden_size, q_dim = config.num_attention_heads * config.head_dim,
                    kv_dim = config.num_key_value_heads * config.head_dim, inter = config.intermediate_size;
  auto expect = [&](const std::vector<float>& v, std::size_t n, const std::string& what) {
    require_argument(v.size() == n, op,
                     [&] { return what + " holds " + std::to_string(v.size()) + " values, the config needs " +
                                      std::to_string(n); });
  };
  expect(weights.embed, config.vocab_size * hidden, "embed");
  require_argument(weights.layers.size() == config.num_hidden_layers, op, "layer count differs from the config");
  for (std::size_t l = 0; l < weights.layers.size(); ++l) {
    const LayerWeights& w = weights.layers[l];
    const std::string at = "layer " + std::to_string(l) + " ";
    expect(w.input_norm, hidden, at + "input_norm");
    expect(w.q_weight, q_dim * hidden, at + "q_weight");
    expect(w.q_bias, q_dim, at + "q_bias");
    expect(w.k_weight, kv_dim * hidden, at + "k_weight");
    expect(w.k_bias, kv_dim, at + "k_bias");
    expect(w.v_weight, kv_dim * hidden, at + "v_weight");
    expect(w.v_bias, kv_dim, at + "v_bias");
    expect(w.o_weight, hidden * q_dim, at + "o_weight");
    expect(w.post_attention_norm, hidden, at + "post_attention_norm");
    expect(w.gate_weight, inter * hidden, at + "gate_weight");
    expect(w.up_weight, inter * hidden, at + "up_weight");
    expect(w.down_weight, hidden * inter, at + "down_weight");
  }
  expect(weights.final_norm, hidden, "final_norm");
  if (!config.tie_word_embeddings) expect(weights.lm_head, config.vocab_size * hidden, "lm_head");
}

using HostPool = KvPool<float, kv::PageMajor, MemorySpace::host>;
using HostCopyOnFork = CopyOnForkKvCache<float, MemorySpace::host>;
using HostBatch = KvBatch<MemorySpace::host>;

class HostModel {
 public:
  HostModel(ModelConfig config, ModelWeights weights) : config_(std::move(config)), weights_(std::move(weights)) { validate(); }

  [[nodiscard]] const ModelConfig& config() const noexcept { return config_; }
  [[nodiscard]] KvShape kv_shape() const noexcept {
    return {config_.num_hidden_layers, config_.num_key_value_heads, config_.head_dim};
  }

  // Runs the batch's prompts (tokens packed as batch.token_begin says) and writes each prompt's
  // last-token logits to last_logits [requests][vocab]. Fills the prompts' KV in `pool` (a HostPool,
  // or the HostCopyOnFork baseline, whose beams the caller then forks).
  template <class Cache>
  void prefill(Cache& pool, const HostBatch& batch, std::span<const std::uint32_t> tokens, std::span<float> last_logits) const {
    const KvBatchView& b = batch.view();
    require_argument(tokens.size() == b.total_tokens, "HostModel::prefill",
                     [&] { return std::to_string(tokens.size()) + " tokens for a batch of " + std::to_string(b.total_tokens); });
    require_argument(last_logits.size() == std::size_t{b.count} * config_.vocab_size, "HostModel::prefill", "last_logits must be [requests][vocab]");
    std::vector<std::uint32_t> positions(tokens.size());
    for (std::size_t i = 0; i < b.count; ++i) {
      for (std::uint32_t t = b.token_begin[i]; t < b.token_begin[i + 1]; ++t) positions[t] = t - b.token_begin[i];
    }
    std::vector<float> x = forward(tokens, positions, [&](std::size_t layer, std::span<const float> q, std::span<const float> k,
                                                          std::span<const float> v, std::span<float> out) {
      attention::prefill(exec::host, pool, batch, layer, options(), q, k, v, out);
    });
    std::vector<float> last(std::size_t{b.count} * config_.hidden_size);
    for (std::size_t i = 0; i < b.count; ++i) {
      const std::size_t row = b.token_begin[i + 1] - 1;
      std::copy_n(x.data() + row * config_.hidden_size, config_.hidden_size, last.data() + i * config_.hidden_size);
    }
    logits(last, b.count, last_logits);
  }

  // One decode step: tokens[row] is the token beam row `row` chose at `step` (the step's reorder
  // already applied: kv::record_parents on a HostPool, kv::reorder on the baseline); writes logits
  // [rows][vocab].
  template <class Cache>
  void decode(Cache& pool, const HostBatch& batch, std::size_t step, std::span<const std::uint32_t> tokens, std::span<float> out_logits) const {
    const KvBatchView& b = batch.view();
    require_argument(tokens.size() == b.total_beams, "HostModel::decode",
                     [&] { return std::to_string(tokens.size()) + " tokens for " + std::to_string(b.total_beams) +
                                      " beam rows"; });
    require_argument(out_logits.size() == tokens.size() * config_.vocab_size, "HostModel::decode", "logits must be [rows][vocab]");
    std::vector<std::uint32_t> positions(tokens.size());
    const auto view = pool.view();
    for (std::size_t i = 0; i < b.count; ++i) {
      for (std::uint32_t row = b.beam_begin[i]; row < b.beam_begin[i + 1]; ++row) {
        positions[row] = view.prompt_tokens[b.slots[i]] + static_cast<std::uint32_t>(step);
      }
    }
    std::vector<float> x = forward(tokens, positions, [&](std::size_t layer, std::span<const float> q, std::span<const float> k,
                                                          std::span<const float> v, std::span<float> out) {
      kv::write_step(exec::host, pool, batch, layer, step, k, v);
      attention::decode(exec::host, pool, batch, layer, step, options(), q, out);
    });
    logits(x, tokens.size(), out_logits);
  }

 private:
  [[nodiscard]] attention::Options options() const { return {config_.num_attention_heads}; }

  // The decoder stack over `rows` tokens; attend(layer, q, k, v, out) runs the layer's attention.
  template <class Attend>
  std::vector<float> forward(std::span<const std::uint32_t> tokens, std::span<const std::uint32_t> positions, Attend&& attend) const {
    const std::size_t rows = tokens.size(), hidden = config_.hidden_size, hd = config_.head_dim;
    const std::size_t q_dim = config_.num_attention_heads * hd, kv_dim = config_.num_key_value_heads * hd;
    const std::size_t inter = config_.intermediate_size;
    std::vector<float> x(rows * hidden), h(rows * hidden), q(rows * q_dim), k(rows * kv_dim), v(rows * kv_dim), attended(rows * q_dim),
        projected(rows * hidden), gate(rows * inter), up(rows * inter);
    for (std::size_t r = 0; r < rows; ++r) {
      require_argument(tokens[r] < config_.vocab_size, "HostModel",
                       [&] { return "token " + std::to_string(tokens[r]) + " is outside the vocabulary"; });
      std::copy_n(weights_.embed.data() + std::size_t{tokens[r]} * hidden, hidden, x.data() + r * hidden);
    }
    for (std::size_t l = 0; l < config_.num_hidden_layers; ++l) {
      const LayerWeights& w = weights_.layers[l];
      detail::rms_norm(x, rows, hidden, w.input_norm, static_cast<float>(config_.rms_norm_eps), h);
      detail::linear(h, rows, hidden, w.q_weight, w.q_bias, q_dim, q);
      detail::linear(h, rows, hidden, w.k_weight, w.k_bias, kv_dim, k);
      detail::linear(h, rows, hidden, w.v_weight, w.v_bias, kv_dim, v);
      detail::rope(q, rows, config_.num_attention_heads, hd, positions, static_cast<float>(config_.rope_theta));
      detail::rope(k, rows, config_.num_key_value_heads, hd, positions, static_cast<float>(config_.rope_theta));
      attend(l, q, k, v, attended);
      detail::linear(attended, rows, q_dim, w.o_weight, {}, hidden, projected);
      for (std::size_t i = 0; i < x.size(); ++i) x[i] += projected[i];
      detail::rms_norm(x, rows, hidden, w.post_attention_norm, static_cast<float>(config_.rms_norm_eps), h);
      detail::linear(h, rows, hidden, w.gate_weight, {}, inter, gate);
      detail::linear(h, rows, hidden, w.up_weight, {}, inter, up);
      for (std::size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];  // silu(gate) * up
      detail::linear(gate, rows, inter, w.down_weight, {}, hidden, projected);
      for (std::size_t i = 0; i < x.size(); ++i) x[i] += projected[i];
    }
    return x;
  }

  void logits(std::span<const float> x, std::size_t rows, std::span<float> out) const {
    std::vector<float> h(rows * config_.hidden_size);
    detail::rms_norm(x, rows, config_.hidden_size, weights_.final_norm, static_cast<float>(config_.rms_norm_eps), h);
    const std::vector<float>& head = weights_.lm_head.empty() ? weights_.embed : weights_.lm_head;
    detail::linear(h, rows, config_.hidden_size, head, {}, config_.vocab_size, out);
  }

  void validate() const { validate_weights(config_, weights_, "HostModel"); }

  ModelConfig config_;
  ModelWeights weights_;
};

}  // namespace xgr::engine
