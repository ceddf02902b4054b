// engine/config.hpp — the model's shape, from a Hugging Face Qwen2ForCausalLM config.json.
//
// ModelConfig holds what the engine needs to size its weights and run a forward pass; after
// parse() every field is resolved (defaults applied, head_dim derived). Defaults follow
// transformers' Qwen2Config where a missing key is harmless; the five sizes that define the weights
// (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, vocab_size) are
// required, because a default there would only surface later as a confusing shape mismatch.
//
// The engine implements plain Qwen2: SiLU MLP, RoPE without scaling, full attention. A config that
// asks for something else (another architecture or model_type, another activation, a rope_scaling
// other than "default", use_sliding_window: true) is rejected here rather than run with silently
// different numerics.
// Keys the engine does not use (initializer_range, use_cache, ...) are ignored; `null` counts as
// absent, as it does for transformers.
//
// Errors: anything wrong with a file's contents is Error(io) naming the source and the key
// ("$.num_key_value_heads: 3 does not divide num_attention_heads 14"); validate() on a config built
// in code throws Error(invalid_argument) for the same defects.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "json.hpp"
#include "xgr/core/error.hpp"

namespace xgr::engine {

struct ModelConfig {
  std::size_t hidden_size = 0;
  std::size_t intermediate_size = 0;
  std::size_t num_hidden_layers = 0;
  std::size_t num_attention_heads = 0;
  std::size_t num_key_value_heads = 0;          // config default: num_attention_heads (no GQA)
  std::size_t vocab_size = 0;
  std::size_t max_position_embeddings = 32768;
  std::size_t head_dim = 0;                     // config default: hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;             // lm_head shares embed_tokens' weight
  std::string torch_dtype;                      // "bfloat16", "float32", ...; empty when not given

  bool operator==(const ModelConfig&) const = default;

  // Reads and parses a config.json; Error(io) naming the file on any defect.
  [[nodiscard]] static ModelConfig load(const std::string& path);
  // Parses config.json text; `source_name` (a path) names it in every error.
  [[nodiscard]] static ModelConfig parse(std::string_view json_text, const std::string& source_name);

  // Throws Error(invalid_argument) unless every field is usable: positive sizes, heads divisible by
  // kv heads, an even head_dim (RoPE rotates pairs), positive finite eps and theta.
  void validate() const;

  // A config.json transformers' Qwen2ForCausalLM reads (keys sorted, 2-space indent, like
  // save_pretrained); validate()s first. bos/eos token ids are written as 0: the engine decodes
  // item codes, not text, and never stops on them.
  [[nodiscard]] std::string to_json() const;
};

namespace config::detail {

// The checks shared by parse() (kind io, for a file) and validate() (kind invalid_argument, for
// code). `where(key)` is how a message names a key: "$.hidden_size" for files, "hidden_size" else.
inline void check(const ModelConfig& c, ErrorKind kind, const std::string& operation, bool json_paths) {
  const auto where = [json_paths](std::string_view key) { return std::string(json_paths ? "$." : "").append(key); };
  const auto fail = [&](const std::string& reason) { throw Error(kind, operation, reason); };
  const std::pair<const char*, std::size_t> sizes[] = {
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.max_position_embeddings},
      {"head_dim", c.head_dim},
  };
  for (const auto& [key, value] : sizes) {
    if (value == 0) fail(where(key) + ": must be positive, got 0");
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    fail(where("num_key_value_heads") + ": " + std::to_string(c.num_key_value_heads) + " does not divide num_attention_heads " +
         std::to_string(c.num_attention_heads) + " (each kv head serves a whole group of query heads)");
  }
  if (c.head_dim % 2 != 0) {
    fail(where("head_dim") + ": " + std::to_string(c.head_dim) + " is odd; RoPE rotates pairs of dimensions");
  }
  if (!(std::isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0.0)) {
    fail(where("rms_norm_eps") + ": must be positive and finite, got " + std::to_string(c.rms_norm_eps));
  }
  if (!(std::isfinite(c.rope_theta) && c.rope_theta > 0.0)) {
    fail(where("rope_theta") + ": must be positive and finite, got " + std::to_string(c.rope_theta));
  }
}

}  // namespace config::detail

inline void ModelConfig::validate() const {
  config::detail::check(*this, ErrorKind::invalid_argument, "ModelConfig::validate", false);
}

inline ModelConfig ModelConfig::parse(std::string_view json_text, const std::string& source_name) {
  const std::string operation = "ModelConfig(" + source_name + ")";
  const json::Value doc = json::parse(json_text, operation);
  if (!doc.is_object()) doc.fail("a config.json must be a JSON object, got " + doc.summary());

  // The value of `key`, or nullptr when it is absent or null.
  const auto get = [&doc](const char* key) -> const json::Value* {
    const json::Value* value = doc.find(key);
    return value != nullptr && !value->is_null() ? value : nullptr;
  };
  const auto require_key = [&](const char* key) -> const json::Value& {
    const json::Value* value = get(key);
    if (value == nullptr) doc.fail("missing required key \"" + std::string(key) + "\"");
    return *value;
  };
  // Positive integers; as_uint64() rejects strings, negatives, fractions and overflow by path.
  const auto size_of = [](const json::Value& value) {
    const std::uint64_t size = value.as_uint64();
    if (size == 0) value.fail("must be positive, got 0");
    if (size > std::numeric_limits<std::size_t>::max()) value.fail("does not fit std::size_t");
    return static_cast<std::size_t>(size);
  };
  const auto positive_double = [](const json::Value& value) {
    const double number = value.as_double();
    if (!(number > 0.0)) value.fail("must be positive, got " + value.number_text());
    return number;
  };
  const auto expect_string = [&](const char* key, std::string_view wanted, std::string_view why) {
    const json::Value* value = get(key);
    if (value != nullptr && value->as_string() != wanted) {
      value->fail("is " + json::quote(value->as_string()) + ", the engine supports only " + json::quote(wanted) + " (" +
                  std::string(why) + ")");
    }
  };

  if (const json::Value* architectures = get("architectures")) {
    bool found = false;
    for (const json::Value& name : architectures->as_array()) {
      if (name.as_string() == "Qwen2ForCausalLM") found = true;  // as_string() checks every entry
    }
    if (!found) architectures->fail("does not list \"Qwen2ForCausalLM\", the only architecture the engine runs");
  }
  expect_string("model_type", "qwen2", "the engine implements Qwen2");
  expect_string("hidden_act", "silu", "the MLP is SwiGLU");
  // Plain RoPE: rope_scaling null or absent, or spelled {"rope_type": "default"} as newer transformers
  // write it; transformers 5 moves the same object, rope_theta included, to "rope_parameters".
  const auto plain_rope = [](const json::Value& rope) {
    const json::Value* type = rope.is_object() ? rope.find("rope_type") : nullptr;
    if (type == nullptr && rope.is_object()) type = rope.find("type");
    if (type == nullptr || !type->is_string() || type->as_string() != "default") {
      rope.fail("is " + rope.summary() + "; the engine applies plain RoPE (rope_type \"default\"), without scaling");
    }
  };
  if (const json::Value* rope_scaling = get("rope_scaling")) plain_rope(*rope_scaling);
  const json::Value* rope_parameters = get("rope_parameters");
  if (rope_parameters != nullptr) plain_rope(*rope_parameters);
  if (const json::Value* sliding = get("use_sliding_window"); sliding != nullptr && sliding->as_bool()) {
    sliding->fail("is true; the engine attends over the full context");
  }

  ModelConfig c;
  c.hidden_size = size_of(require_key("hidden_size"));
  c.intermediate_size = size_of(require_key("intermediate_size"));
  c.num_hidden_layers = size_of(require_key("num_hidden_layers"));
  c.num_attention_heads = size_of(require_key("num_attention_heads"));
  c.vocab_size = size_of(require_key("vocab_size"));
  const json::Value* kv_heads = get("num_key_value_heads");
  c.num_key_value_heads = kv_heads != nullptr ? size_of(*kv_heads) : c.num_attention_heads;
  if (const json::Value* positions = get("max_position_embeddings")) c.max_position_embeddings = size_of(*positions);
  if (const json::Value* head_dim = get("head_dim")) {
    c.head_dim = size_of(*head_dim);
  } else if (c.hidden_size % c.num_attention_heads != 0) {
    doc.fail("hidden_size " + std::to_string(c.hidden_size) + " is not a multiple of num_attention_heads " +
             std::to_string(c.num_attention_heads) + ", and no head_dim is given");
  } else {
    c.head_dim = c.hidden_size / c.num_attention_heads;
    if (c.head_dim % 2 != 0) {
      doc.fail("head_dim = hidden_size / num_attention_heads = " + std::to_string(c.head_dim) +
               " is odd; RoPE rotates pairs of dimensions");
    }
  }
  if (const json::Value* eps = get("rms_norm_eps")) c.rms_norm_eps = positive_double(*eps);
  if (const json::Value* theta = get("rope_theta")) {
    c.rope_theta = positive_double(*theta);
  } else if (const json::Value* nested = rope_parameters != nullptr ? rope_parameters->find("rope_theta") : nullptr) {
    c.rope_theta = positive_double(*nested);
  }
  if (const json::Value* tie = get("tie_word_embeddings")) c.tie_word_embeddings = tie->as_bool();
  // transformers 4.56 renamed torch_dtype to dtype; read either.
  if (const json::Value* dtype = get("torch_dtype")) {
    c.torch_dtype = dtype->as_string();
  } else if (const json::Value* new_dtype = get("dtype")) {
    c.torch_dtype = new_dtype->as_string();
  }
  config::detail::check(c, ErrorKind::io, operation, true);
  return c;
}

inline ModelConfig ModelConfig::load(const std::string& path) {
  const std::string operation = "ModelConfig(" + path + ")";
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (!std::filesystem::exists(status)) throw Error(ErrorKind::io, operation, "cannot open the file");
  // A directory opens as an empty stream on Linux: say what is wrong instead of "empty document".
  if (!std::filesystem::is_regular_file(status)) throw Error(ErrorKind::io, operation, "not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, operation, "cannot open the file");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(ErrorKind::io, operation, "reading the file failed");
  return parse(text, path);
}

inline std::string ModelConfig::to_json() const {
  validate();
  const auto line = [](std::string_view key, const std::string& value) {
    return "  " + json::quote(key) + ": " + value;
  };
  const auto number = [](std::size_t value) { return std::to_string(value); };
  std::string text = "{\n";
  text += "  \"architectures\": [\n    \"Qwen2ForCausalLM\"\n  ],\n";
  const std::pair<std::string_view, std::string> fields[] = {
      {"attention_dropout", "0.0"},
      {"bos_token_id", "0"},
      {"eos_token_id", "0"},
      {"head_dim", number(head_dim)},
      {"hidden_act", "\"silu\""},
      {"hidden_size", number(hidden_size)},
      {"intermediate_size", number(intermediate_size)},
      {"max_position_embeddings", number(max_position_embeddings)},
      {"max_window_layers", number(num_hidden_layers)},
      {"model_type", "\"qwen2\""},
      {"num_attention_heads", number(num_attention_heads)},
      {"num_hidden_layers", number(num_hidden_layers)},
      {"num_key_value_heads", number(num_key_value_heads)},
      {"rms_norm_eps", json::format_double(rms_norm_eps)},
      {"rope_theta", json::format_double(rope_theta)},
      {"tie_word_embeddings", tie_word_embeddings ? "true" : "false"},
      {"torch_dtype", torch_dtype.empty() ? std::string() : json::quote(torch_dtype)},
      {"use_cache", "true"},
      {"use_sliding_window", "false"},
      {"vocab_size", number(vocab_size)},
  };
  bool first = true;
  for (const auto& [key, value] : fields) {
    if (value.empty()) continue;  // an optional field the config does not set
    text += first ? "" : ",\n";
    text += line(key, value);
    first = false;
  }
  return text + "\n}\n";
}

}  // namespace xgr::engine
