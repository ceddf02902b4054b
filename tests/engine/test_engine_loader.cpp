// The engine's model-file layer: strict JSON, safetensors read/write, Qwen2 config.json.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <set>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/config.hpp"
#include "engine/json.hpp"
#include "engine/safetensors.hpp"
#include "engine/weights.hpp"
#include "support/engine_configs.hpp"
#include "support/errors.hpp"
#include "support/files.hpp"
#include "support/random.hpp"

namespace {

namespace json = xgr::engine::json;
using xgr::ErrorKind;
using xgr::engine::ModelConfig;
using xgr::engine::SafetensorsFile;
using xgr::engine::TensorData;
using xgr::engine::TensorDType;
using xgr::engine::TensorView;
using namespace std::string_literals;

// Every test's files live in a fresh directory of its own.
class TempDir : public xgr::test::TempDir {
 public:
  TempDir() : xgr::test::TempDir("xgr_engine_loader") {}
};

using xgr::test::write_file;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct Failure {
  bool thrown = false;
  bool other_exception = false;
  ErrorKind kind = ErrorKind::internal;
  std::string what;
};

template <class F>
Failure failure_of(F&& call) {
  Failure failure;
  try {
    call();
  } catch (const xgr::Error& error) {
    failure.thrown = true;
    failure.kind = error.kind();
    failure.what = error.what();
  } catch (...) {
    failure.other_exception = true;
  }
  return failure;
}

// `call` throws Error(kind) whose message holds every one of `fragments`.
template <class F>
void check_error(F&& call, ErrorKind kind, const std::vector<std::string>& fragments) {
  const Failure failure = failure_of(call);
  INFO("message: " << failure.what);
  REQUIRE(failure.thrown);
  CHECK(failure.kind == kind);
  for (const std::string& fragment : fragments) {
    INFO("expected in the message: '" << fragment << "'");
    CHECK(failure.what.find(fragment) != std::string::npos);
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// JSON

TEST_CASE("json parses every kind of value and keeps object keys in document order") {
  const json::Value doc = json::parse(R"( {"z": null, "a": [true, false, 1, -2.5, "s", {}, []], "m": {"k": {"deep": 7}}} )",
                                      "doc.json");
  REQUIRE(doc.is_object());
  CHECK(doc.size() == 3);
  std::vector<std::string> keys;
  for (const json::Member& member : doc.as_object()) keys.push_back(member.key);
  CHECK(keys == std::vector<std::string>{"z", "a", "m"});
  CHECK(doc.at("z").is_null());
  const std::vector<json::Value>& a = doc.at("a").as_array();
  REQUIRE(a.size() == 7);
  CHECK(a[0].as_bool());
  CHECK_FALSE(a[1].as_bool());
  CHECK(a[2].as_uint64() == 1);
  CHECK(a[3].as_double() == -2.5);
  CHECK(a[4].as_string() == "s");
  CHECK((a[5].is_object() && a[5].size() == 0));
  CHECK((a[6].is_array() && a[6].size() == 0));
  CHECK(doc.at("m").at("k").at("deep").as_uint64() == 7);
  CHECK(doc.at("m").at("k").at("deep").path() == "$.m.k.deep");
  CHECK(a[4].path() == "$.a[4]");
  CHECK(a[4].source() == "doc.json");
  CHECK(doc.find("nope") == nullptr);
  CHECK(doc.find("a") == &doc.at("a"));
  CHECK(doc.at("a").at(std::size_t{2}).as_uint64() == 1);

  // Keys that are not identifiers appear quoted in paths.
  const json::Value odd = json::parse(R"({"model.layers.0": {"x y": 1, "_ok9": 2}})", "odd.json");
  CHECK(odd.at("model.layers.0").at("x y").path() == R"($["model.layers.0"]["x y"])");
  CHECK(odd.at("model.layers.0").at("_ok9").path() == R"($["model.layers.0"]._ok9)");

  // Any value may be the root; whitespace is space, tab, CR and LF.
  CHECK(json::parse("42", "x").as_uint64() == 42);
  CHECK(json::parse("\"x\"", "x").as_string() == "x");
  CHECK(json::parse("null", "x").is_null());
  CHECK(json::parse(" \t\r\n true \n", "x").as_bool());
  CHECK(json::parse("\t\r\n [ 1 ,\n2 ] \n", "x").size() == 2);
  CHECK(json::parse("{\"\": 1}", "x").at("").as_uint64() == 1);  // the empty key is a key
}

TEST_CASE("json strings decode every escape, \\u escapes and surrogate pairs to UTF-8") {
  CHECK(json::parse(R"("\"\\\/\b\f\n\r\t")", "x").as_string() == "\"\\/\b\f\n\r\t");
  CHECK(json::parse(R"("\u0041\u00e9\u20AC")", "x").as_string() == "A\xC3\xA9\xE2\x82\xAC");
  CHECK(json::parse(R"("\ud83d\ude00")", "x").as_string() == "\xF0\x9F\x98\x80");  // U+1F600
  CHECK(json::parse(R"("\uD800\uDC00")", "x").as_string() == "\xF0\x90\x80\x80");  // U+10000
  CHECK(json::parse(R"("\uDBFF\uDFFF")", "x").as_string() == "\xF4\x8F\xBF\xBF");  // U+10FFFF
  CHECK(json::parse(R"("\u07ff\u0800\uffff")", "x").as_string() == "\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF");
  CHECK(json::parse(R"("\u0000")", "x").as_string() == "\0"s);
  // Raw UTF-8 passes through untouched.
  CHECK(json::parse("\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"", "x").as_string() == "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
}

TEST_CASE("json numbers keep their text; as_uint64 takes only plain integers that fit 64 bits") {
  const json::Value doc =
      json::parse(R"([0, -0, 1.5, 1e3, 1E+3, -2.5e-3, 18446744073709551615, 18446744073709551616,
                     123456789012345678901234567890, 1e-400, -1e-400, 4.9e-324, 1.7976931348623157e308])",
                  "numbers.json");
  const auto& n = doc.as_array();
  CHECK(n[0].as_uint64() == 0);
  CHECK(n[1].as_double() == 0.0);
  CHECK(n[1].number_text() == "-0");
  CHECK(n[2].as_double() == 1.5);
  CHECK(n[3].as_double() == 1000.0);
  CHECK(n[4].as_double() == 1000.0);
  CHECK(n[4].number_text() == "1E+3");
  CHECK(n[5].as_double() == -2.5e-3);
  CHECK(n[6].as_uint64() == std::numeric_limits<std::uint64_t>::max());
  CHECK(n[7].as_double() == 18446744073709551616.0);
  CHECK(n[8].as_double() == 123456789012345678901234567890.0);
  CHECK(n[8].number_text() == "123456789012345678901234567890");
  // Underflow is zero (keeping the sign); only overflow is an error (below).
  CHECK(n[9].as_double() == 0.0);
  CHECK(n[10].as_double() == 0.0);
  CHECK(std::signbit(n[10].as_double()));
  CHECK(n[11].as_double() == std::numeric_limits<double>::denorm_min());
  CHECK(n[12].as_double() == std::numeric_limits<double>::max());

  for (const std::size_t i : {1, 2, 3, 4, 5, 7, 8, 9}) {
    INFO("element " << i << " = " << n[i].number_text());
    CHECK_FALSE(n[i].to_uint64().has_value());
    check_error([&] { (void)n[i].as_uint64(); }, ErrorKind::io,
                {"numbers.json", "$[" + std::to_string(i) + "]", "non-negative integer", n[i].number_text()});
  }
}

TEST_CASE("malformed json throws Error(io) naming the source, the byte offset and the problem") {
  struct Case {
    std::string text;
    std::size_t offset;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"", 0, "expected a value, got the end of input"},
      {"   ", 3, "expected a value"},
      {"nul", 0, "invalid literal"},
      {"[tru]", 1, "invalid literal"},
      {"True", 0, "expected a value, got character 'T'"},
      {"[1,]", 3, "trailing comma"},
      {"[1 2]", 3, "expected ',' or ']'"},
      {"[1", 2, "got end of input"},
      {"[", 1, "expected a value"},
      {R"({"a" 1})", 5, "expected ':'"},
      {R"({"a":1,})", 7, "trailing comma"},
      {"{1:2}", 1, "expected a string key"},
      {"{'a':2}", 1, "expected a string key"},
      {R"({"a":1 "b":2})", 7, "expected ',' or '}'"},
      {R"({"a":})", 5, "expected a value"},
      {R"({"a":1,"a":2})", 7, "duplicate key \"a\""},
      {R"({"a":{"b":1},"c":{"b":2,"b":3}})", 24, "duplicate key \"b\""},
      {"\"abc", 0, "unterminated string"},
      {"\"abc\\", 0, "unterminated string"},
      {"\"a\x01\"", 2, "control character byte 0x01"},
      {"\"a\nb\"", 2, "control character"},
      {R"("\x")", 1, "invalid escape '\\x'"},
      {R"("\U0041")", 1, "invalid escape"},
      {R"("\u12")", 3, "4 hex digits"},
      {R"("\u12G4")", 5, "4 hex digits"},
      {R"("\ud800")", 1, "high surrogate \\ud800 is not followed by a low one"},
      {R"("\ud800\u0041")", 1, "not followed by a low one"},
      {R"("\ud800\n")", 1, "not followed by a low one"},
      {R"("x\udc00")", 2, "unpaired low surrogate"},
      {"\"\xC0\x80\"", 1, "invalid UTF-8"},          // overlong NUL
      {"\"\xFF\"", 1, "invalid UTF-8"},
      {"\"ab\xE2\x82\"", 3, "invalid UTF-8"},        // truncated sequence
      {"\"\xED\xA0\x80\"", 1, "invalid UTF-8"},      // a UTF-16 surrogate in UTF-8
      {"\"\xF4\x90\x80\x80\"", 1, "invalid UTF-8"},  // above U+10FFFF
      {"\"\x80\"", 1, "invalid UTF-8"},              // a lone continuation byte
      {"01", 0, "leading zeros"},
      {"-01", 0, "leading zeros"},
      {"-", 1, "expected a digit after '-'"},
      {"-Infinity", 1, "expected a digit after '-'"},
      {"1.", 2, "decimal point"},
      {"1.e5", 2, "decimal point"},
      {"1e", 2, "exponent"},
      {"1e+", 3, "exponent"},
      {"+1", 0, "character '+'"},
      {".5", 0, "character '.'"},
      {"NaN", 0, "character 'N'"},
      {"[1e400]", 1, "too large for a double"},
      {"-1e309", 0, "too large for a double"},
      {"1 2", 2, "after the JSON value"},
      {"[1]x", 3, "after the JSON value"},
      {"{\"a\":1}\0"s, 7, "byte 0x00 after the JSON value"},
      {"/* c */ 1", 0, "character '/'"},
      {"\xEF\xBB\xBF{}", 0, "byte 0xEF"},  // a byte order mark
      {"\f1", 0, "byte 0x0C"},             // form feed is not JSON whitespace
      {"[1,\n 2,\n x]", 9, "line 3, column 2"},
  };
  for (const Case& c : cases) {
    INFO("document: '" << c.text << "'");
    check_error([&] { (void)json::parse(c.text, "bad.json"); }, ErrorKind::io,
                {"bad.json", "byte " + std::to_string(c.offset) + " (", c.fragment});
  }
}

TEST_CASE("json nesting is limited to 64 levels, without exhausting the stack beyond") {
  const auto arrays = [](std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  CHECK(json::parse(arrays(json::max_depth), "deep").is_array());
  check_error([&] { (void)json::parse(arrays(json::max_depth + 1), "deep"); }, ErrorKind::io,
              {"byte 64 (", "deeper than 64"});
  check_error([&] { (void)json::parse(std::string(1'000'000, '['), "deep"); }, ErrorKind::io, {"byte 64 ("});

  std::string objects;
  for (std::size_t i = 0; i < json::max_depth; ++i) objects += "{\"a\":";
  CHECK(json::parse(objects + "1" + std::string(json::max_depth, '}'), "deep").is_object());
  objects = "[" + objects;  // one level more
  check_error([&] { (void)json::parse(objects + "1" + std::string(json::max_depth, '}') + "]", "deep"); }, ErrorKind::io,
              {"deeper than 64"});
}

TEST_CASE("json accessors throw Error(io) naming the source and the key path on a mismatch") {
  const json::Value doc = json::parse(R"({"a": {"b": [1, "two", null]}, "n": -3, "f": 1.5, "odd key": true})", "cfg.json");
  const json::Value& b = doc.at("a").at("b");
  check_error([&] { (void)b.at(std::size_t{1}).as_uint64(); }, ErrorKind::io,
              {"cfg.json", "$.a.b[1]", "non-negative integer", "the string \"two\""});
  check_error([&] { (void)b.at(std::size_t{0}).as_string(); }, ErrorKind::io, {"$.a.b[0]", "expected a string, got 1"});
  check_error([&] { (void)b.at(std::size_t{2}).as_bool(); }, ErrorKind::io, {"$.a.b[2]", "expected a boolean, got null"});
  check_error([&] { (void)b.at(std::size_t{2}).as_double(); }, ErrorKind::io, {"expected a number, got null"});
  check_error([&] { (void)doc.at("n").as_uint64(); }, ErrorKind::io, {"$.n", "got -3"});
  check_error([&] { (void)doc.at("f").as_uint64(); }, ErrorKind::io, {"$.f", "got 1.5"});
  check_error([&] { (void)doc.at("odd key").as_string(); }, ErrorKind::io, {"$[\"odd key\"]", "got true"});
  check_error([&] { (void)doc.at("missing"); }, ErrorKind::io, {"cfg.json", "$: missing key \"missing\""});
  check_error([&] { (void)b.at(std::size_t{3}); }, ErrorKind::io, {"$.a.b", "index 3 is out of range for an array of 3"});
  check_error([&] { (void)b.find("x"); }, ErrorKind::io, {"$.a.b", "expected an object, got an array of 3 values"});
  check_error([&] { (void)doc.at("a").as_array(); }, ErrorKind::io, {"$.a", "expected an array, got an object of 1 members"});
  check_error([&] { (void)doc.at("n").size(); }, ErrorKind::io, {"expected an array or an object"});
  check_error([&] { doc.at("a").fail("custom reason"); }, ErrorKind::io, {"cfg.json", "$.a: custom reason"});
  // A long string is shortened in messages.
  const json::Value long_string = json::parse("\"" + std::string(100, 'x') + "\"", "s");
  CHECK(long_string.summary() == "the string \"" + std::string(40, 'x') + "\"...");
  // A default Value is null and still reports through Error(io).
  check_error([] { (void)json::Value().as_string(); }, ErrorKind::io, {"json", "$: expected a string, got null"});
}

namespace {

// Independent UTF-8 encoding for the tests.
std::string utf8(std::uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

std::string u_escape(std::uint32_t unit) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "\\u%04X", unit);
  return buffer;
}

}  // namespace

TEST_CASE("quote and \\u escapes round-trip random strings; format_double round-trips random doubles") {
  std::mt19937_64 rng = xgr::test::make_rng(901);
  std::uniform_int_distribution<std::uint32_t> range_choice(0, 3);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text, escaped = "\"";
    const std::size_t length = std::uniform_int_distribution<std::size_t>(0, 30)(rng);
    for (std::size_t i = 0; i < length; ++i) {
      std::uint32_t cp = 0;
      switch (range_choice(rng)) {
        case 0: cp = std::uniform_int_distribution<std::uint32_t>(0, 0x7F)(rng); break;
        case 1: cp = std::uniform_int_distribution<std::uint32_t>(0x80, 0x7FF)(rng); break;
        case 2:
          cp = std::uniform_int_distribution<std::uint32_t>(0x800, 0xFFFF - 0x800)(rng);
          if (cp >= 0xD800) cp += 0x800;  // skip the surrogates
          break;
        default: cp = std::uniform_int_distribution<std::uint32_t>(0x10000, 0x10FFFF)(rng); break;
      }
      text += utf8(cp);
      if (cp < 0x10000) {
        escaped += u_escape(cp);
      } else {
        escaped += u_escape(0xD800 + ((cp - 0x10000) >> 10)) + u_escape(0xDC00 + ((cp - 0x10000) & 0x3FF));
      }
    }
    escaped += "\"";
    INFO("trial " << trial);
    CHECK(json::parse(json::quote(text), "q").as_string() == text);
    CHECK(json::parse(escaped, "e").as_string() == text);
    CHECK(json::detail::is_valid_utf8(text));
  }

  std::uniform_int_distribution<std::uint64_t> bits;
  for (int trial = 0; trial < 2000; ++trial) {
    const double value = std::bit_cast<double>(bits(rng));
    if (!std::isfinite(value)) continue;
    const std::string text = json::format_double(value);
    INFO(text);
    const double back = json::parse(text, "d").as_double();
    CHECK(std::bit_cast<std::uint64_t>(back) == std::bit_cast<std::uint64_t>(value));
  }
  CHECK(json::format_double(1e-6) == "1e-06");
  CHECK(json::format_double(10000.0) == "10000.0");
  CHECK(json::format_double(1000000.0) == "1000000.0");
  CHECK(json::format_double(0.5) == "0.5");
  CHECK(json::format_double(-0.0) == "-0.0");
  // Python's repr(): positional for decimal exponents in [-4, 16), scientific outside.
  CHECK(json::format_double(1e15) == "1000000000000000.0");
  CHECK(json::format_double(1e16) == "1e+16");
  CHECK(json::format_double(0.0001) == "0.0001");
  CHECK(json::format_double(0.00001) == "1e-05");
  CHECK(json::format_double(-123456789.125) == "-123456789.125");
  CHECK(json::format_double(1.5e300) == "1.5e+300");
  CHECK(json::format_double(5e-324) == "5e-324");
  CHECK(json::format_double(0.1) == "0.1");
  CHECK(xgr::test::error_of([] { (void)json::format_double(std::nan("")); }) == xgr::test::invalid_argument_error);
  CHECK(xgr::test::error_of([] { (void)json::format_double(HUGE_VAL); }) == xgr::test::invalid_argument_error);
}

// ------------------------------------------------------------------------------------------------
// safetensors

namespace {

// A tensor with its bytes and, for float dtypes, the floats those bytes hold.
struct OwnedTensor {
  std::string name;
  TensorDType dtype = TensorDType::f32;
  std::vector<std::size_t> shape;
  std::vector<std::byte> bytes;
  std::vector<float> values;

  [[nodiscard]] TensorData data() const { return {name, dtype, shape, bytes}; }
};

std::size_t product(const std::vector<std::size_t>& shape) {
  std::size_t count = 1;
  for (const std::size_t extent : shape) count *= extent;
  return count;
}

template <class T>
void append_bytes(std::vector<std::byte>& bytes, const T& value) {
  const auto* first = reinterpret_cast<const std::byte*>(&value);
  bytes.insert(bytes.end(), first, first + sizeof(T));
}

OwnedTensor random_tensor(std::mt19937_64& rng, std::string name, TensorDType dtype, std::vector<std::size_t> shape) {
  OwnedTensor tensor{std::move(name), dtype, std::move(shape), {}, {}};
  const std::size_t count = product(tensor.shape);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int> byte(0, 255);
  for (std::size_t i = 0; i < count; ++i) {
    const float value = normal(rng);
    switch (dtype) {
      case TensorDType::f32:
        append_bytes(tensor.bytes, value);
        tensor.values.push_back(value);
        break;
      case TensorDType::f16: {
        const xgr::half h(value);
        append_bytes(tensor.bytes, h.bits);
        tensor.values.push_back(xgr::to_float(h));
        break;
      }
      case TensorDType::bf16: {
        const xgr::bfloat16 b(value);
        append_bytes(tensor.bytes, b.bits);
        tensor.values.push_back(xgr::to_float(b));
        break;
      }
      default:
        for (std::size_t k = 0; k < xgr::engine::dtype_bytes(dtype); ++k) tensor.bytes.push_back(static_cast<std::byte>(byte(rng)));
    }
  }
  return tensor;
}

std::vector<TensorData> data_of(const std::vector<OwnedTensor>& tensors) {
  std::vector<TensorData> data;
  for (const OwnedTensor& tensor : tensors) data.push_back(tensor.data());
  return data;
}

bool same_bytes(std::span<const std::byte> a, const std::vector<std::byte>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

}  // namespace

TEST_CASE("safetensors files round-trip BF16, F16, F32 and integer tensors of every rank, empty ones included") {
  TempDir dir;
  std::mt19937_64 rng = xgr::test::make_rng(902);
  const std::vector<std::vector<std::size_t>> shapes = {{}, {0}, {5}, {2, 0, 3}, {3, 4}, {2, 3, 5}, {1, 1, 1, 7}, {64, 33}};
  const TensorDType float_types[] = {TensorDType::bf16, TensorDType::f16, TensorDType::f32};
  for (int trial = 0; trial < 12; ++trial) {
    std::vector<OwnedTensor> tensors;
    const std::size_t count = std::uniform_int_distribution<std::size_t>(1, 12)(rng);
    for (std::size_t i = 0; i < count; ++i) {
      const auto& shape = shapes[std::uniform_int_distribution<std::size_t>(0, shapes.size() - 1)(rng)];
      tensors.push_back(random_tensor(rng, "model.layers." + std::to_string(i) + ".weight", float_types[i % 3], shape));
    }
    tensors.push_back(random_tensor(rng, "positions", TensorDType::i64, {3}));
    tensors.push_back(random_tensor(rng, "mask \"\xC3\xA9\"\n", TensorDType::boolean, {2, 2}));  // quotes, UTF-8, control
    tensors.push_back(random_tensor(rng, "nothing", TensorDType::u8, {0}));
    std::shuffle(tensors.begin(), tensors.end(), rng);
    const std::map<std::string, std::string> metadata =
        trial % 3 == 0 ? std::map<std::string, std::string>{}
                       : std::map<std::string, std::string>{{"format", "pt"}, {"note", "\xC3\xBCn\"i\"\\code\t"}};
    const std::string path = dir.file("model_" + std::to_string(trial) + ".safetensors");
    xgr::engine::write_safetensors(path, data_of(tensors), metadata);

    INFO("trial " << trial);
    const SafetensorsFile file = SafetensorsFile::open(path);
    CHECK(file.path() == path);
    CHECK(file.size() == tensors.size());
    CHECK(file.metadata() == metadata);
    CHECK(file.header_bytes() % 8 == 0);
    std::multiset<std::string> want_names, got_names(file.names().begin(), file.names().end());
    for (const OwnedTensor& tensor : tensors) {
      want_names.insert(tensor.name);
      INFO("tensor " << tensor.name);
      REQUIRE(file.contains(tensor.name));
      const TensorView view = file.tensor(tensor.name);
      CHECK(view.name == tensor.name);
      CHECK(view.dtype == tensor.dtype);
      CHECK(view.shape == tensor.shape);
      CHECK(view.elements() == product(tensor.shape));
      CHECK(same_bytes(view.bytes, tensor.bytes));
      if (tensor.dtype == TensorDType::f32 || tensor.dtype == TensorDType::f16 || tensor.dtype == TensorDType::bf16) {
        CHECK(xgr::engine::to_float(view) == tensor.values);
      }
      CHECK(same_bytes(file.require(tensor.name, tensor.shape).bytes, tensor.bytes));
    }
    CHECK(got_names == want_names);
    CHECK_FALSE(file.contains("model.layers.999.weight"));
  }

  // No tensors at all is a valid file, too.
  const std::string empty = dir.file("empty.safetensors");
  xgr::engine::write_safetensors(empty, {});
  CHECK(SafetensorsFile::open(empty).size() == 0);
  CHECK(read_file(empty) == std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
}

namespace {

std::string le64(std::uint64_t value) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((value >> (8 * i)) & 0xffu));
  return bytes;
}

// A file from its parts: the header length (as given, or the header's size), the header, the data.
std::string safetensors_bytes(const std::string& header, const std::string& data,
                              std::optional<std::uint64_t> length = std::nullopt) {
  return le64(length.value_or(header.size())) + header + data;
}

}  // namespace

TEST_CASE("safetensors files have the documented layout; names come in data-offset order") {
  TempDir dir;
  const std::string path = dir.file("layout.safetensors");
  const float w[2] = {1.0f, -2.0f};
  const std::uint16_t b = xgr::bfloat16(0.5f).bits;
  xgr::engine::write_safetensors(path,
                                 {{"w", TensorDType::f32, {2}, std::as_bytes(std::span(w))},
                                  {"b", TensorDType::bf16, {}, std::as_bytes(std::span(&b, 1))}},
                                 {{"format", "pt"}});
  std::string header = R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"BF16","shape":[],"data_offsets":[8,10]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string data(10, '\0');
  std::memcpy(data.data(), w, 8);
  std::memcpy(data.data() + 8, &b, 2);
  CHECK(read_file(path) == safetensors_bytes(header, data));

  const SafetensorsFile file = SafetensorsFile::open(path);
  CHECK(file.names() == std::vector<std::string>{"w", "b"});
  CHECK(xgr::engine::to_float(file.tensor("b")) == std::vector<float>{0.5f});

  // A file as the Python library may write it: keys in any order, metadata last, trailing spaces,
  // empty tensors at the same offset (their ties are ordered by name).
  write_file(path, safetensors_bytes(R"({"z":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                                     R"("y":{"dtype":"F16","shape":[0,4],"data_offsets":[4,4]},)"
                                     R"("x":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},)"
                                     R"("e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},)"
                                     R"("d":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},)"
                                     R"("__metadata__":{}}    )",
                                     std::string(8, '\x01')));
  const SafetensorsFile shuffled = SafetensorsFile::open(path);
  CHECK(shuffled.names() == std::vector<std::string>{"x", "y", "z", "d", "e"});
  CHECK(shuffled.metadata().empty());
  CHECK(shuffled.tensor("y").bytes.empty());
  CHECK(shuffled.tensor("y").shape == std::vector<std::size_t>{0, 4});
}

TEST_CASE("a safetensors file truncated at any length throws Error(io), as do random corruptions") {
  TempDir dir;
  std::mt19937_64 rng = xgr::test::make_rng(903);
  const std::vector<OwnedTensor> tensors = {random_tensor(rng, "a", TensorDType::bf16, {2, 3}),
                                            random_tensor(rng, "b", TensorDType::f32, {}),
                                            random_tensor(rng, "c", TensorDType::f16, {4})};
  const std::string path = dir.file("small.safetensors");
  xgr::engine::write_safetensors(path, data_of(tensors), {{"k", "v"}});
  const std::string good = read_file(path);
  REQUIRE(SafetensorsFile::open(path).size() == 3);

  for (std::size_t length = 0; length < good.size(); ++length) {
    write_file(path, good.substr(0, length));
    const Failure failure = failure_of([&] { (void)SafetensorsFile::open(path); });
    INFO("truncated to " << length << " of " << good.size() << " bytes: " << failure.what);
    CHECK(failure.thrown);
    CHECK(failure.kind == ErrorKind::io);
    CHECK(failure.what.find(path) != std::string::npos);
  }
  write_file(path, good + "x");
  check_error([&] { (void)SafetensorsFile::open(path); }, ErrorKind::io, {"1 bytes after the last tensor"});

  // Random byte changes: each file either opens, with every view inside the file, or throws Error(io).
  std::size_t opened = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bytes = good;
    const int changes = std::uniform_int_distribution<int>(1, 3)(rng);
    for (int i = 0; i < changes; ++i) {
      const std::size_t at = std::uniform_int_distribution<std::size_t>(0, bytes.size() - 1)(rng);
      const char* alphabet = "0123456789[],:{}\" -eE.";
      bytes[at] = trial % 2 == 0 ? static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng))
                                 : alphabet[std::uniform_int_distribution<std::size_t>(0, std::strlen(alphabet) - 1)(rng)];
    }
    write_file(path, bytes);
    try {
      const SafetensorsFile file = SafetensorsFile::open(path);
      ++opened;
      for (const std::string& name : file.names()) {
        const TensorView view = file.tensor(name);
        CHECK(view.bytes.size() == view.elements() * xgr::engine::dtype_bytes(view.dtype));
      }
    } catch (const xgr::Error& error) {
      CHECK(error.kind() == ErrorKind::io);
    }
  }
  MESSAGE("random corruptions that still formed a valid file: " << opened << " of 2000");
}

TEST_CASE("malformed safetensors files throw Error(io) naming the file, the tensor and the problem") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const std::string a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string b = R"("b":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]})";
  const std::string data16(16, '\x3f');
  write_file(path, safetensors_bytes("{" + a + "," + b + "}", data16));
  REQUIRE(SafetensorsFile::open(path).size() == 2);

  // A tensor entry "t" with the given fields, alone in a header.
  const auto one = [](const std::string& fields) { return "{\"t\":{" + fields + "}}"; };
  struct Case {
    const char* name;
    std::string file;
    std::vector<std::string> fragments;
  };
  const std::vector<Case> cases = {
      {"empty file", "", {"0 bytes, shorter than the 8-byte header length"}},
      {"7 bytes", "\x02\0\0\0\0\0\0"s, {"7 bytes, shorter"}},
      {"header length above 100 MB", safetensors_bytes("{}", "", 100'000'001), {"header length 100000001", "limit of 100000000"}},
      {"header length 2^64 - 1", safetensors_bytes("{}", "", ~std::uint64_t{0}), {"18446744073709551615", "limit"}},
      {"header length past the end", safetensors_bytes("{}", "", 3), {"header length 3 runs past the end", "10 bytes"}},
      {"header length past the data", safetensors_bytes("{" + a + "}", std::string(8, '\0'), 100), {"runs past the end"}},
      {"header not JSON", safetensors_bytes("{\"a\":", ""), {"not valid JSON", "header byte 5"}},
      {"header of zero bytes", safetensors_bytes("\0\0\0\0"s, ""), {"not valid JSON", "header byte 0"}},
      {"header of zero length", safetensors_bytes("", ""), {"not valid JSON", "end of input"}},
      {"header with invalid UTF-8", safetensors_bytes("{\"\xFF\":1}", ""), {"not valid JSON", "invalid UTF-8"}},
      {"header an array", safetensors_bytes("[]", ""), {"not a JSON object but an array of 0 values"}},
      {"duplicate tensor names", safetensors_bytes("{" + a + "," + a + "}", data16), {"not valid JSON", "duplicate key \"a\""}},
      {"tensor not an object", safetensors_bytes(R"({"t":5})", ""), {"tensor 't'", "expected an object", "got 5"}},
      {"unknown dtype", safetensors_bytes(one(R"("dtype":"F17","shape":[],"data_offsets":[0,0])"), ""), {"tensor 't'", "unknown dtype \"F17\""}},
      {"lower-case dtype", safetensors_bytes(one(R"("dtype":"bf16","shape":[],"data_offsets":[0,2])"), "xx"), {"unknown dtype \"bf16\""}},
      {"sub-byte dtype", safetensors_bytes(one(R"("dtype":"F4","shape":[2],"data_offsets":[0,1])"), "x"), {"unknown dtype \"F4\""}},
      {"dtype not a string", safetensors_bytes(one(R"("dtype":4,"shape":[1],"data_offsets":[0,4])"), "xxxx"), {"tensor 't'", "dtype must be a string, got 4"}},
      {"missing dtype", safetensors_bytes(one(R"("shape":[1],"data_offsets":[0,4])"), "xxxx"), {"tensor 't'", "missing field 'dtype'"}},
      {"missing shape", safetensors_bytes(one(R"("dtype":"F32","data_offsets":[0,4])"), "xxxx"), {"missing field 'shape'"}},
      {"missing data_offsets", safetensors_bytes(one(R"("dtype":"F32","shape":[1])"), "xxxx"), {"missing field 'data_offsets'"}},
      {"unknown field", safetensors_bytes(one(R"("dtype":"F32","shape":[1],"data_offsets":[0,4],"strides":[1])"), "xxxx"), {"tensor 't'", "unknown field 'strides'"}},
      {"negative shape", safetensors_bytes(one(R"("dtype":"F32","shape":[-1],"data_offsets":[0,4])"), "xxxx"), {"tensor 't'", "non-negative integers, got -1"}},
      {"fractional shape", safetensors_bytes(one(R"("dtype":"F32","shape":[1.0],"data_offsets":[0,4])"), "xxxx"), {"got 1.0"}},
      {"string shape", safetensors_bytes(one(R"("dtype":"F32","shape":["1"],"data_offsets":[0,4])"), "xxxx"), {"got the string \"1\""}},
      {"shape not an array", safetensors_bytes(one(R"("dtype":"F32","shape":1,"data_offsets":[0,4])"), "xxxx"), {"shape must be an array", "got 1"}},
      {"shape entry above 2^64", safetensors_bytes(one(R"("dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,0])"), ""), {"got 18446744073709551616"}},
      {"data_offsets of one", safetensors_bytes(one(R"("dtype":"F32","shape":[1],"data_offsets":[4])"), "xxxx"), {"tensor 't'", "data_offsets must be [begin, end], got an array of 1"}},
      {"data_offsets of three", safetensors_bytes(one(R"("dtype":"F32","shape":[1],"data_offsets":[0,4,4])"), "xxxx"), {"got an array of 3"}},
      {"data_offsets an object", safetensors_bytes(one(R"("dtype":"F32","shape":[1],"data_offsets":{"begin":0})"), "xxxx"), {"data_offsets must be [begin, end]"}},
      {"negative data_offsets", safetensors_bytes(one(R"("dtype":"F32","shape":[1],"data_offsets":[-4,0])"), "xxxx"), {"two non-negative integers, got [-4, 0]"}},
      {"data_offsets above 2^64", safetensors_bytes(one(R"("dtype":"U8","shape":[0],"data_offsets":[0,18446744073709551616])"), ""), {"two non-negative integers"}},
      {"reversed data_offsets", safetensors_bytes(one(R"("dtype":"F32","shape":[1],"data_offsets":[8,4])"), std::string(8, 'x')), {"tensor 't'", "data_offsets [8, 4] end before they begin"}},
      {"end beyond the data", safetensors_bytes("{" + a + R"(,"b":{"dtype":"BF16","shape":[2,4],"data_offsets":[8,24]}})", data16), {"tensor 'b'", "data_offsets [8, 24] run past the end of the data buffer (16 bytes)"}},
      {"end at 2^64 - 1", safetensors_bytes(one(R"("dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551615])"), "x"), {"run past the end of the data buffer (1 bytes)"}},
      {"size smaller than the shape", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 'x')), {"tensor 'a'", "shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8"}},
      {"size larger than the shape", safetensors_bytes(R"({"a":{"dtype":"BF16","shape":[2,1],"data_offsets":[0,8]}})", std::string(8, 'x')), {"shape [2, 1] of BF16 needs 4 bytes"}},
      {"byte count overflow", safetensors_bytes(one(R"("dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,0])"), ""), {"tensor 't'", "overflows"}},
      {"element count overflow", safetensors_bytes(one(R"("dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0])"), ""), {"overflows"}},
      {"overlapping tensors", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(12, 'x')), {"tensor 'b' (data_offsets [4, 12]) overlaps tensor 'a' (data_offsets [0, 8])"}},
      {"the same bytes twice", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})", std::string(8, 'x')), {"tensor 'b'", "overlaps tensor 'a'"}},
      {"an empty tensor inside another", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", std::string(8, 'x')), {"tensor 'e'", "overlaps tensor 'a'"}},
      {"a hole at the start", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data16), {"bytes [0, 8) of the data buffer belong to no tensor", "before tensor 'a'"}},
      {"a hole between tensors", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", std::string(20, 'x')), {"bytes [8, 12)", "before tensor 'b'"}},
      {"bytes after the last tensor", safetensors_bytes("{" + a + "}", std::string(12, 'x')), {"holds 12 bytes but the tensors cover only 8", "4 bytes after the last tensor"}},
      {"data but no tensors", safetensors_bytes("{}", "xxxx"), {"holds 4 bytes but the tensors cover only 0"}},
      {"__metadata__ not an object", safetensors_bytes(R"({"__metadata__":["a"]})", ""), {"__metadata__ must be an object of strings, got an array of 1"}},
      {"__metadata__ with a number", safetensors_bytes(R"({"__metadata__":{"k":1}})", ""), {"key 'k' holds 1"}},
      {"__metadata__ with null", safetensors_bytes(R"({"__metadata__":{"k":null}})", ""), {"key 'k' holds null"}},
  };
  for (const Case& c : cases) {
    INFO("case: " << c.name);
    write_file(path, c.file);
    std::vector<std::string> fragments = c.fragments;
    fragments.push_back("SafetensorsFile::open(" + path + ")");
    check_error([&] { (void)SafetensorsFile::open(path); }, ErrorKind::io, fragments);
  }
  check_error([&] { (void)SafetensorsFile::open(dir.file("missing.safetensors")); }, ErrorKind::io,
              {"missing.safetensors", "cannot open the file"});
  std::filesystem::create_directories(dir.file("a_directory"));
  check_error([&] { (void)SafetensorsFile::open(dir.file("a_directory")); }, ErrorKind::io, {"a_directory", "not a regular file"});
}

TEST_CASE("require() names a missing tensor and a shape mismatch; tensor() and to_float() check too") {
  TempDir dir;
  std::mt19937_64 rng = xgr::test::make_rng(904);
  const std::vector<OwnedTensor> tensors = {random_tensor(rng, "model.embed_tokens.weight", TensorDType::bf16, {8, 4}),
                                            random_tensor(rng, "model.norm.weight", TensorDType::f32, {4}),
                                            random_tensor(rng, "step", TensorDType::i64, {})};
  const std::string path = dir.file("weights.safetensors");
  xgr::engine::write_safetensors(path, data_of(tensors));
  const SafetensorsFile file = SafetensorsFile::open(path);

  const TensorView embed = file.require("model.embed_tokens.weight", {8, 4});
  CHECK(xgr::engine::to_float(embed) == tensors[0].values);
  CHECK(file.require("step", {}).dtype == TensorDType::i64);
  const std::vector<std::size_t> norm_shape{4};
  CHECK(file.require("model.norm.weight", norm_shape).shape == norm_shape);

  check_error([&] { (void)file.require("lm_head.weight", {8, 4}); }, ErrorKind::io,
              {"SafetensorsFile::require(" + path + ")", "needs tensor 'lm_head.weight' of shape [8, 4]", "the file lacks", "3 tensors"});
  check_error([&] { (void)file.require("model.embed_tokens.weight", {4, 8}); }, ErrorKind::io,
              {path, "tensor 'model.embed_tokens.weight' has shape [8, 4], the model expects [4, 8]"});
  check_error([&] { (void)file.require("model.embed_tokens.weight", {8, 4, 1}); }, ErrorKind::io, {"expects [8, 4, 1]"});
  check_error([&] { (void)file.require("model.norm.weight", {}); }, ErrorKind::io, {"has shape [4], the model expects []"});
  check_error([&] { (void)file.tensor("nope"); }, ErrorKind::io, {"SafetensorsFile::tensor(" + path + ")", "no tensor named 'nope' among its 3 tensors"});
  check_error([&] { (void)xgr::engine::to_float(file.tensor("step")); }, ErrorKind::io,
              {"to_float(tensor 'step' of " + path + ")", "dtype I64 is not one of BF16, F16, F32"});
  TensorView ragged = file.tensor("model.norm.weight");
  ragged.bytes = ragged.bytes.first(15);
  check_error([&] { (void)xgr::engine::to_float(ragged); }, ErrorKind::invalid_argument, {"do not match its shape [4]"});

  // Views stay valid when the file object moves; the object itself cannot be copied.
  static_assert(!std::is_copy_constructible_v<SafetensorsFile> && std::is_nothrow_move_constructible_v<SafetensorsFile>);
  SafetensorsFile source = SafetensorsFile::open(path);
  const TensorView before = source.tensor("model.norm.weight");
  const SafetensorsFile moved = std::move(source);
  CHECK(before.file == path);
  CHECK(before.name == "model.norm.weight");
  CHECK(xgr::engine::to_float(before) == tensors[1].values);
  CHECK(moved.tensor("model.norm.weight").bytes.data() == before.bytes.data());
}

TEST_CASE("write_safetensors rejects what it cannot write as Error(invalid_argument), an unwritable path as Error(io)") {
  TempDir dir;
  const float values[4] = {1, 2, 3, 4};
  const auto bytes = std::as_bytes(std::span(values));
  const std::string path = dir.file("out.safetensors");
  check_error([&] { xgr::engine::write_safetensors(path, {{"w", TensorDType::f32, {4}, bytes}, {"w", TensorDType::f32, {4}, bytes}}); },
              ErrorKind::invalid_argument, {"tensor 'w'", "appears twice"});
  check_error([&] { xgr::engine::write_safetensors(path, {{"w", TensorDType::f32, {3}, bytes}}); }, ErrorKind::invalid_argument,
              {"shape [3] of F32 needs 12 bytes, got 16"});
  check_error([&] { xgr::engine::write_safetensors(path, {{"w", TensorDType::bf16, {4}, bytes}}); }, ErrorKind::invalid_argument,
              {"needs 8 bytes, got 16"});
  check_error([&] { xgr::engine::write_safetensors(path, {{"__metadata__", TensorDType::f32, {4}, bytes}}); },
              ErrorKind::invalid_argument, {"reserved"});
  check_error([&] { xgr::engine::write_safetensors(path, {{"w\xFF", TensorDType::f32, {4}, bytes}}); }, ErrorKind::invalid_argument,
              {"not valid UTF-8"});
  check_error([&] { xgr::engine::write_safetensors(path, {}, {{"k", "\xC0"}}); }, ErrorKind::invalid_argument, {"not valid UTF-8"});
  check_error([&] { xgr::engine::write_safetensors(path, {{"w", TensorDType::u8, {1ull << 32, 1ull << 32, 1ull << 32}, bytes}}); },
              ErrorKind::invalid_argument, {"overflows"});
  CHECK_FALSE(std::filesystem::exists(path));  // nothing is created for a rejected call
  check_error([&] { xgr::engine::write_safetensors(dir.file("no_such_dir/out.safetensors"), {}); }, ErrorKind::io,
              {"no_such_dir", "cannot create the file"});
}

// ------------------------------------------------------------------------------------------------
// config.json

namespace {

// Qwen2.5-0.5B's config.json as published.
const char* const qwen25_05b_config = R"({
  "architectures": [
    "Qwen2ForCausalLM"
  ],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 24,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
}
)";

}  // namespace

TEST_CASE("ModelConfig reads a real Qwen2 config.json, from text and from a file") {
  const ModelConfig c = ModelConfig::parse(qwen25_05b_config, "Qwen2.5-0.5B/config.json");
  CHECK(c.hidden_size == 896);
  CHECK(c.intermediate_size == 4864);
  CHECK(c.num_hidden_layers == 24);
  CHECK(c.num_attention_heads == 14);
  CHECK(c.num_key_value_heads == 2);
  CHECK(c.vocab_size == 151936);
  CHECK(c.max_position_embeddings == 32768);
  CHECK(c.head_dim == 64);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.rope_theta == 1e6);
  CHECK(c.tie_word_embeddings);
  CHECK(c.torch_dtype == "bfloat16");
  CHECK_NOTHROW(c.validate());

  TempDir dir;
  const std::string path = dir.file("config.json");
  write_file(path, qwen25_05b_config);
  CHECK(ModelConfig::load(path) == c);
  check_error([&] { (void)ModelConfig::load(dir.file("absent.json")); }, ErrorKind::io, {"absent.json", "cannot open the file"});
  check_error([&] { (void)ModelConfig::load(dir.file("")); }, ErrorKind::io, {"not a regular file"});
}

namespace {

// A config.json from the required fields plus `changes` (key -> JSON text; "" removes the key).
std::string config_text(const std::vector<std::pair<std::string, std::string>>& changes) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"hidden_size", "64"}, {"intermediate_size", "128"}, {"num_hidden_layers", "2"}, {"num_attention_heads", "4"}, {"vocab_size", "1000"}};
  for (const auto& change : changes) {
    const auto found = std::find_if(fields.begin(), fields.end(), [&](const auto& field) { return field.first == change.first; });
    if (found != fields.end()) {
      found->second = change.second;
    } else {
      fields.push_back(change);
    }
  }
  std::string text = "{";
  for (const auto& [key, value] : fields) {
    if (value.empty()) continue;
    text += text.size() > 1 ? ",\n  " : "\n  ";
    text += json::quote(key) + ": " + value;
  }
  return text + "\n}";
}

}  // namespace

TEST_CASE("ModelConfig reads the config.json that transformers 5.17's save_pretrained wrote") {
  // rope_theta nested in rope_parameters, "dtype" instead of torch_dtype, layer_types, a null
  // sliding_window: the shape of today's files (tests/oracle/hf_engine_oracle.py made this one).
  const xgr::engine::ModelConfig config = xgr::engine::ModelConfig::load(XGR_HF_CONFIG_FIXTURE);
  CHECK(config.hidden_size == 128);
  CHECK(config.intermediate_size == 256);
  CHECK(config.num_hidden_layers == 2);
  CHECK(config.num_attention_heads == 2);
  CHECK(config.num_key_value_heads == 1);
  CHECK(config.head_dim == 64);
  CHECK(config.vocab_size == 50);
  CHECK(config.rope_theta == 10000.0);
  CHECK(config.rms_norm_eps == 1e-6);
  CHECK_FALSE(config.tie_word_embeddings);
  CHECK(config.torch_dtype == "float32");
}

TEST_CASE("ModelConfig applies transformers' defaults; null counts as absent") {
  const ModelConfig c = ModelConfig::parse(config_text({}), "minimal.json");
  CHECK(c.num_key_value_heads == 4);
  CHECK(c.head_dim == 16);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.rope_theta == 10000.0);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.max_position_embeddings == 32768);
  CHECK(c.torch_dtype.empty());

  const ModelConfig nulls = ModelConfig::parse(
      config_text({{"num_key_value_heads", "null"}, {"head_dim", "null"}, {"rms_norm_eps", "null"}, {"rope_theta", "null"},
                   {"tie_word_embeddings", "null"}, {"max_position_embeddings", "null"}, {"torch_dtype", "null"},
                   {"architectures", "null"}, {"rope_scaling", "null"}, {"use_sliding_window", "null"}, {"sliding_window", "null"}}),
      "nulls.json");
  CHECK(nulls == c);

  // head_dim given: heads need not divide hidden_size (Qwen3-style shapes).
  const ModelConfig explicit_head = ModelConfig::parse(
      config_text({{"hidden_size", "100"}, {"num_attention_heads", "3"}, {"num_key_value_heads", "1"}, {"head_dim", "32"}}), "x");
  CHECK(explicit_head.head_dim == 32);
  CHECK(explicit_head.num_key_value_heads == 1);
  // transformers >= 4.56 writes "dtype"; torch_dtype wins where both are present.
  CHECK(ModelConfig::parse(config_text({{"dtype", "\"float16\""}}), "x").torch_dtype == "float16");
  CHECK(ModelConfig::parse(config_text({{"dtype", "\"float16\""}, {"torch_dtype", "\"float32\""}}), "x").torch_dtype == "float32");
  // Plain RoPE spelled as newer transformers write it; transformers 5 nests rope_theta.
  CHECK(ModelConfig::parse(config_text({{"rope_scaling", R"({"rope_type": "default"})"}}), "x") == c);
  CHECK(ModelConfig::parse(config_text({{"rope_scaling", R"({"type": "default"})"}}), "x") == c);
  const ModelConfig nested = ModelConfig::parse(config_text({{"rope_parameters", R"({"rope_type": "default", "rope_theta": 1000000.0})"}}), "x");
  CHECK(nested.rope_theta == 1e6);
  CHECK(ModelConfig::parse(config_text({{"rope_parameters", R"({"rope_type": "default", "rope_theta": 5.0})"}, {"rope_theta", "7.0"}}), "x")
            .rope_theta == 7.0);
  // Unused keys, and the unused parts of a Qwen2 config, are ignored.
  CHECK(ModelConfig::parse(config_text({{"use_sliding_window", "false"}, {"initializer_range", "0.02"}, {"quantization", "{\"a\": [1]}"}}),
                           "x") == c);
}

TEST_CASE("ModelConfig rejects each invalid field with Error(io) naming the source and the key") {
  struct Case {
    std::vector<std::pair<std::string, std::string>> changes;
    std::vector<std::string> fragments;
  };
  const std::vector<Case> cases = {
      {{{"hidden_size", ""}}, {"missing required key \"hidden_size\""}},
      {{{"intermediate_size", ""}}, {"missing required key \"intermediate_size\""}},
      {{{"num_hidden_layers", ""}}, {"missing required key \"num_hidden_layers\""}},
      {{{"num_attention_heads", ""}}, {"missing required key \"num_attention_heads\""}},
      {{{"vocab_size", ""}}, {"missing required key \"vocab_size\""}},
      {{{"vocab_size", "null"}}, {"missing required key \"vocab_size\""}},
      {{{"hidden_size", "0"}}, {"$.hidden_size: must be positive, got 0"}},
      {{{"hidden_size", "-64"}}, {"$.hidden_size", "got -64"}},
      {{{"hidden_size", "\"64\""}}, {"$.hidden_size", "got the string \"64\""}},
      {{{"hidden_size", "64.0"}}, {"$.hidden_size", "got 64.0"}},
      {{{"hidden_size", "6.4e1"}}, {"$.hidden_size", "got 6.4e1"}},
      {{{"hidden_size", "18446744073709551616"}}, {"$.hidden_size", "below 2^64"}},
      {{{"hidden_size", "true"}}, {"$.hidden_size", "got true"}},
      {{{"intermediate_size", "0"}}, {"$.intermediate_size: must be positive"}},
      {{{"num_hidden_layers", "0"}}, {"$.num_hidden_layers: must be positive"}},
      {{{"num_attention_heads", "0"}}, {"$.num_attention_heads: must be positive"}},
      {{{"vocab_size", "0"}}, {"$.vocab_size: must be positive"}},
      {{{"num_key_value_heads", "0"}}, {"$.num_key_value_heads: must be positive"}},
      {{{"max_position_embeddings", "0"}}, {"$.max_position_embeddings: must be positive"}},
      {{{"head_dim", "0"}}, {"$.head_dim: must be positive"}},
      {{{"num_key_value_heads", "3"}}, {"$.num_key_value_heads: 3 does not divide num_attention_heads 4"}},
      {{{"num_key_value_heads", "8"}}, {"$.num_key_value_heads: 8 does not divide num_attention_heads 4"}},
      {{{"num_attention_heads", "3"}}, {"hidden_size 64 is not a multiple of num_attention_heads 3", "no head_dim"}},
      {{{"head_dim", "15"}}, {"$.head_dim: 15 is odd", "RoPE"}},
      {{{"hidden_size", "60"}}, {"head_dim = hidden_size / num_attention_heads = 15 is odd"}},
      {{{"rms_norm_eps", "0"}}, {"$.rms_norm_eps: must be positive, got 0"}},
      {{{"rms_norm_eps", "-1e-6"}}, {"$.rms_norm_eps", "got -1e-6"}},
      {{{"rms_norm_eps", "\"1e-6\""}}, {"$.rms_norm_eps", "expected a number"}},
      {{{"rope_theta", "0.0"}}, {"$.rope_theta: must be positive"}},
      {{{"rope_theta", "[]"}}, {"$.rope_theta", "expected a number"}},
      {{{"tie_word_embeddings", "\"true\""}}, {"$.tie_word_embeddings", "expected a boolean"}},
      {{{"tie_word_embeddings", "1"}}, {"$.tie_word_embeddings", "expected a boolean, got 1"}},
      {{{"architectures", "[\"LlamaForCausalLM\"]"}}, {"$.architectures", "does not list \"Qwen2ForCausalLM\""}},
      {{{"architectures", "[]"}}, {"$.architectures", "does not list"}},
      {{{"architectures", "\"Qwen2ForCausalLM\""}}, {"$.architectures", "expected an array"}},
      {{{"architectures", "[\"Qwen2ForCausalLM\", 7]"}}, {"$.architectures[1]", "expected a string"}},
      {{{"model_type", "\"llama\""}}, {"$.model_type", "\"llama\"", "only \"qwen2\""}},
      {{{"hidden_act", "\"gelu\""}}, {"$.hidden_act", "only \"silu\""}},
      {{{"rope_scaling", "{\"type\": \"yarn\", \"factor\": 4.0}"}}, {"$.rope_scaling", "without scaling"}},
      {{{"rope_scaling", "{\"rope_type\": \"linear\", \"factor\": 2.0}"}}, {"$.rope_scaling", "rope_type \"default\""}},
      {{{"rope_scaling", "{\"factor\": 2.0}"}}, {"$.rope_scaling", "without scaling"}},
      {{{"rope_scaling", "true"}}, {"$.rope_scaling", "is true"}},
      {{{"rope_parameters", "{\"rope_type\": \"yarn\", \"rope_theta\": 10000.0}"}}, {"$.rope_parameters", "without scaling"}},
      {{{"rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": 0}"}}, {"$.rope_parameters.rope_theta: must be positive"}},
      {{{"use_sliding_window", "true"}}, {"$.use_sliding_window", "full context"}},
      {{{"use_sliding_window", "\"no\""}}, {"$.use_sliding_window", "expected a boolean"}},
      {{{"torch_dtype", "16"}}, {"$.torch_dtype", "expected a string"}},
      {{{"hidden_size", "64, \"hidden_size\": 64"}}, {"duplicate key \"hidden_size\""}},
  };
  for (const Case& c : cases) {
    const std::string text = config_text(c.changes);
    INFO("config.json:\n" << text);
    std::vector<std::string> fragments = c.fragments;
    fragments.push_back("ModelConfig(cfg.json)");
    check_error([&] { (void)ModelConfig::parse(text, "cfg.json"); }, ErrorKind::io, fragments);
  }
  check_error([] { (void)ModelConfig::parse("[1]", "cfg.json"); }, ErrorKind::io, {"cfg.json", "must be a JSON object, got an array"});
  check_error([] { (void)ModelConfig::parse("{", "cfg.json"); }, ErrorKind::io, {"cfg.json", "byte 1 ("});
  check_error([] { (void)ModelConfig::parse("", "cfg.json"); }, ErrorKind::io, {"cfg.json", "byte 0 ("});
}

TEST_CASE("ModelConfig::to_json writes a Qwen2 config.json that parses back to the same config") {
  const ModelConfig qwen = ModelConfig::parse(qwen25_05b_config, "qwen");
  const std::string text = qwen.to_json();
  for (const char* fragment :
       {"\"architectures\": [\n    \"Qwen2ForCausalLM\"\n  ]", "\"model_type\": \"qwen2\"", "\"hidden_act\": \"silu\"",
        "\"attention_dropout\": 0.0", "\"use_sliding_window\": false", "\"bos_token_id\": 0", "\"eos_token_id\": 0",
        "\"rms_norm_eps\": 1e-06", "\"rope_theta\": 1000000.0", "\"tie_word_embeddings\": true", "\"torch_dtype\": \"bfloat16\"",
        "\"head_dim\": 64", "\"num_key_value_heads\": 2", "\"vocab_size\": 151936\n}\n"}) {
    INFO("expected in:\n" << text << "\nthe fragment: " << fragment);
    CHECK(text.find(fragment) != std::string::npos);
  }
  CHECK(ModelConfig::parse(text, "written") == qwen);
  // Keys come sorted, as transformers' save_pretrained writes them.
  const json::Value doc = json::parse(text, "written");
  for (std::size_t i = 1; i < doc.as_object().size(); ++i) CHECK(doc.as_object()[i - 1].key < doc.as_object()[i].key);

  std::mt19937_64 rng = xgr::test::make_rng(905);
  for (int trial = 0; trial < 200; ++trial) {
    ModelConfig c;
    const auto pick = [&](std::size_t low, std::size_t high) { return std::uniform_int_distribution<std::size_t>(low, high)(rng); };
    c.num_key_value_heads = pick(1, 8);
    c.num_attention_heads = c.num_key_value_heads * pick(1, 8);
    c.head_dim = 2 * pick(1, 128);
    c.hidden_size = trial % 2 == 0 ? c.num_attention_heads * c.head_dim : pick(1, 8192);
    c.intermediate_size = pick(1, 30000);
    c.num_hidden_layers = pick(1, 80);
    c.vocab_size = pick(1, 300000);
    c.max_position_embeddings = pick(1, 1 << 20);
    c.rms_norm_eps = std::pow(10.0, std::uniform_real_distribution<double>(-8.0, -3.0)(rng));
    c.rope_theta = trial % 3 == 0 ? 10000.0 : std::uniform_real_distribution<double>(1.0, 1e7)(rng);
    c.tie_word_embeddings = trial % 2 == 1;
    c.torch_dtype = trial % 4 == 0 ? "" : "bfloat16";
    INFO("trial " << trial);
    CHECK(ModelConfig::parse(c.to_json(), "random") == c);
  }

  // A config built in code is checked by validate() (and to_json) with invalid_argument.
  ModelConfig bad = qwen;
  bad.num_key_value_heads = 3;
  check_error([&] { bad.validate(); }, ErrorKind::invalid_argument, {"ModelConfig::validate", "num_key_value_heads: 3 does not divide"});
  check_error([&] { (void)bad.to_json(); }, ErrorKind::invalid_argument, {"num_key_value_heads"});
  bad = qwen;
  bad.head_dim = 0;
  check_error([&] { bad.validate(); }, ErrorKind::invalid_argument, {"head_dim: must be positive"});
  bad = qwen;
  bad.rms_norm_eps = std::nan("");
  check_error([&] { bad.validate(); }, ErrorKind::invalid_argument, {"rms_norm_eps: must be positive and finite"});
  bad = qwen;
  bad.rope_theta = -1.0;
  check_error([&] { bad.validate(); }, ErrorKind::invalid_argument, {"rope_theta"});
}

TEST_CASE("random corruptions of a config.json either parse or throw Error(io); parsed ones read or throw Error") {
  // Byte changes, insertions and deletions of JSON's own characters and of arbitrary bytes: the
  // parser and the config reader never throw anything but xgr::Error, never crash and never read
  // out of bounds (the `sanitize` preset runs this under AddressSanitizer).
  std::mt19937_64 rng = xgr::test::make_rng(911);
  const std::string good = qwen25_05b_config;
  REQUIRE_NOTHROW((void)json::parse(good, "good"));
  std::size_t parsed = 0;
  std::size_t configs = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const std::string text = xgr::test::corrupted(good, rng, "{}[],:\"\\ 0123456789.-+eEtrufalsn", trial % 3 == 0);
    try {
      (void)json::parse(text, "mutated");
      ++parsed;
    } catch (const xgr::Error& error) {
      INFO("trial " << trial << ": " << error.what());
      CHECK(error.kind() == ErrorKind::io);
      continue;
    }
    try {
      const ModelConfig config = ModelConfig::parse(text, "mutated");
      config.validate();
      ++configs;
    } catch (const xgr::Error&) {
      // A field of the wrong type or value: any xgr::Error names it; nothing else may escape.
    }
  }
  MESSAGE("corruptions that still parsed: " << parsed << " of 3000, valid configs among them: " << configs);
}

// ------------------------------------------------------------------------------------------------
// Model folders (config.json + model.safetensors, HF's names and shapes)

TEST_CASE("a model folder round-trips: save_model_folder then load_model_folder give the same config and weights") {
  TempDir dir;
  for (const bool tied : {true, false}) {
    const ModelConfig config = xgr::test::small_model_config(40, tied);
    const xgr::engine::ModelWeights weights = xgr::engine::random_weights(config, tied ? 17 : 18);
    const std::string folder = dir.file(tied ? "tied" : "untied");
    xgr::engine::save_model_folder(folder, config, weights);
    const xgr::engine::LoadedModel loaded = xgr::engine::load_model_folder(folder);
    INFO(folder);
    CHECK(loaded.config == config);
    CHECK(loaded.weights.embed == weights.embed);
    CHECK(loaded.weights.final_norm == weights.final_norm);
    CHECK(loaded.weights.lm_head == weights.lm_head);  // empty when tied
    REQUIRE(loaded.weights.layers.size() == weights.layers.size());
    for (std::size_t l = 0; l < weights.layers.size(); ++l) {
      const auto& a = loaded.weights.layers[l];
      const auto& b = weights.layers[l];
      CHECK(a.input_norm == b.input_norm);
      CHECK((a.q_weight == b.q_weight && a.q_bias == b.q_bias && a.k_weight == b.k_weight && a.k_bias == b.k_bias));
      CHECK((a.v_weight == b.v_weight && a.v_bias == b.v_bias && a.o_weight == b.o_weight));
      CHECK(a.post_attention_norm == b.post_attention_norm);
      CHECK((a.gate_weight == b.gate_weight && a.up_weight == b.up_weight && a.down_weight == b.down_weight));
    }
  }
  // A config that no longer matches the tensors: a missing lm_head, a different width.
  const std::string folder = dir.file("tied");
  ModelConfig untied = xgr::engine::load_model_folder(folder).config;
  untied.tie_word_embeddings = false;
  write_file(folder + "/config.json", untied.to_json());
  check_error([&] { (void)xgr::engine::load_model_folder(folder); }, ErrorKind::io, {"lm_head.weight"});
  ModelConfig wider = untied;
  wider.tie_word_embeddings = true;
  wider.hidden_size = 96;
  write_file(folder + "/config.json", wider.to_json());
  check_error([&] { (void)xgr::engine::load_model_folder(folder); }, ErrorKind::io, {"model.embed_tokens.weight"});
  check_error([&] { (void)xgr::engine::load_model_folder(dir.file("no_such_folder")); }, ErrorKind::io, {"config.json"});
}
