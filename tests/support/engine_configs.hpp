// A small Qwen2-style model configuration for the engine's host tests.
#pragma once

#include <cstddef>

#include "engine/config.hpp"

namespace xgr::test {

// Two layers, 4 query heads over 2 kv heads of 64 dims, hidden 128: small enough for a host model
// run in every test, with GQA and a head width the device kernels accept.
inline engine::ModelConfig small_model_config(std::size_t vocab, bool tied) {
  engine::ModelConfig config;
  config.hidden_size = 128;
  config.intermediate_size = 192;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.head_dim = 64;
  config.vocab_size = vocab;
  config.tie_word_embeddings = tied;
  return config;
}

}  // namespace xgr::test
