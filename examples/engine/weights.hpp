// examples/engine/weights.hpp — an HF-style model folder (config.json + model.safetensors) to and
// from ModelWeights.
//
// Tensor names and shapes are HF transformers' Qwen2ForCausalLM ones, so a folder written by
// `save_pretrained` loads here, and one written here loads in HF:
//
//   model.embed_tokens.weight                         [vocab, hidden]
//   model.layers.{i}.input_layernorm.weight           [hidden]
//   model.layers.{i}.self_attn.{q,k,v}_proj.{weight,bias}
//   model.layers.{i}.self_attn.o_proj.weight          [hidden, heads * head_dim]
//   model.layers.{i}.post_attention_layernorm.weight  [hidden]
//   model.layers.{i}.mlp.{gate,up}_proj.weight        [intermediate, hidden]
//   model.layers.{i}.mlp.down_proj.weight             [hidden, intermediate]
//   model.norm.weight                                 [hidden]
//   lm_head.weight                                    [vocab, hidden]  (absent when tied)
//
// Any dtype the file holds (bf16, fp16, fp32) is widened to float for the host model. A missing
// tensor or a shape that disagrees with config.json is Error(io) naming both.
#pragma once

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/config.hpp"
#include "engine/model.hpp"
#include "engine/safetensors.hpp"
#include "xgr/core/error.hpp"

namespace xgr::engine {

struct LoadedModel {
  ModelConfig config;
  ModelWeights weights;
};

[[nodiscard]] inline LoadedModel load_model_folder(const std::string& folder) {
  const std::filesystem::path root(folder);
  LoadedModel model{ModelConfig::load((root / "config.json").string()), {}};
  const ModelConfig& c = model.config;
  const SafetensorsFile file = SafetensorsFile::open((root / "model.safetensors").string());
  const std::size_t hidden = c.hidden_size, q_dim = c.num_attention_heads * c.head_dim, kv_dim = c.num_key_value_heads * c.head_dim,
                    inter = c.intermediate_size;
  auto load = [&](const std::string& name, std::initializer_list<std::size_t> shape) { return to_float(file.require(name, shape)); };
  model.weights.embed = load("model.embed_tokens.weight", {c.vocab_size, hidden});
  for (std::size_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights w;
    w.input_norm = load(p + "input_layernorm.weight", {hidden});
    w.q_weight = load(p + "self_attn.q_proj.weight", {q_dim, hidden});
    w.q_bias = load(p + "self_attn.q_proj.bias", {q_dim});
    w.k_weight = load(p + "self_attn.k_proj.weight", {kv_dim, hidden});
    w.k_bias = load(p + "self_attn.k_proj.bias", {kv_dim});
    w.v_weight = load(p + "self_attn.v_proj.weight", {kv_dim, hidden});
    w.v_bias = load(p + "self_attn.v_proj.bias", {kv_dim});
    w.o_weight = load(p + "self_attn.o_proj.weight", {hidden, q_dim});
    w.post_attention_norm = load(p + "post_attention_layernorm.weight", {hidden});
    w.gate_weight = load(p + "mlp.gate_proj.weight", {inter, hidden});
    w.up_weight = load(p + "mlp.up_proj.weight", {inter, hidden});
    w.down_weight = load(p + "mlp.down_proj.weight", {hidden, inter});
    model.weights.layers.push_back(std::move(w));
  }
  model.weights.final_norm = load("model.norm.weight", {hidden});
  if (!c.tie_word_embeddings) model.weights.lm_head = load("lm_head.weight", {c.vocab_size, hidden});
  return model;
}

// Writes config.json and model.safetensors (float32) into `folder`, creating it.
inline void save_model_folder(const std::string& folder, const ModelConfig& config, const ModelWeights& weights) {
  const std::filesystem::path root(folder);
  std::error_code error;
  std::filesystem::create_directories(root, error);
  if (error) throw Error(ErrorKind::io, "save_model_folder(" + folder + ")", "cannot create the folder: " + error.message());
  {
    std::ofstream out(root / "config.json", std::ios::trunc);
    out << config.to_json();
    if (!out) throw Error(ErrorKind::io, "save_model_folder(" + folder + ")", "cannot write config.json");
  }
  const std::size_t hidden = config.hidden_size, q_dim = config.num_attention_heads * config.head_dim,
                    kv_dim = config.num_key_value_heads * config.head_dim, inter = config.intermediate_size;
  std::vector<TensorData> tensors;
  auto add = [&](std::string name, const std::vector<float>& values, std::vector<std::size_t> shape) {
    tensors.push_back({std::move(name), TensorDType::f32, std::move(shape), std::as_bytes(std::span<const float>(values))});
  };
  add("model.embed_tokens.weight", weights.embed, {config.vocab_size, hidden});
  for (std::size_t l = 0; l < weights.layers.size(); ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const LayerWeights& w = weights.layers[l];
    add(p + "input_layernorm.weight", w.input_norm, {hidden});
    add(p + "self_attn.q_proj.weight", w.q_weight, {q_dim, hidden});
    add(p + "self_attn.q_proj.bias", w.q_bias, {q_dim});
    add(p + "self_attn.k_proj.weight", w.k_weight, {kv_dim, hidden});
    add(p + "self_attn.k_proj.bias", w.k_bias, {kv_dim});
    add(p + "self_attn.v_proj.weight", w.v_weight, {kv_dim, hidden});
    add(p + "self_attn.v_proj.bias", w.v_bias, {kv_dim});
    add(p + "self_attn.o_proj.weight", w.o_weight, {hidden, q_dim});
    add(p + "post_attention_layernorm.weight", w.post_attention_norm, {hidden});
    add(p + "mlp.gate_proj.weight", w.gate_weight, {inter, hidden});
    add(p + "mlp.up_proj.weight", w.up_weight, {inter, hidden});
    add(p + "mlp.down_proj.weight", w.down_weight, {hidden, inter});
  }
  add("model.norm.weight", weights.final_norm, {hidden});
  if (!config.tie_word_embeddings) add("lm_head.weight", weights.lm_head, {config.vocab_size, hidden});
  write_safetensors((root / "model.safetensors").string(), tensors, {{"format", "pt"}});
}

}  // namespace xgr::engine
