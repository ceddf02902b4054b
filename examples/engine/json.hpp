// engine/json.hpp — a small, strict JSON reader for the engine's model files (config.json, the
// safetensors header), and the two helpers its writers need (quote, format_double).
//
// Strict means RFC 8259 and nothing more: no comments, no trailing commas, no NaN/Infinity, no
// leading zeros or '+', no byte order mark, only space/tab/CR/LF as whitespace, strings in valid
// UTF-8 with control characters escaped, \uXXXX surrogates only in pairs. Two limits of our own:
// containers nest at most `max_depth` deep (so a hostile file cannot exhaust the stack), and an
// object may not repeat a key (RFC 8259 leaves that open; a model file that does is corrupt, and
// silently keeping the first or the last value would hide it).
//
// Reading, every failure throws xgr::Error(ErrorKind::io): a parse error names the source and the byte
// offset (with line and column); an accessor called on the wrong kind of value, or a missing key,
// names the source and the value's key path ("$.layers[3].name"). Type mismatches are io rather than
// invalid_argument because the accessors are how a reader checks an external document: a mismatch
// means the file is not what it should be, not that the program is wrong. (Writing, format_double()
// throws Error(invalid_argument) for NaN and infinity, which JSON cannot represent.)
//
//     const json::Value doc = json::parse(text, "config.json");
//     const std::uint64_t hidden = doc.at("hidden_size").as_uint64();
//     if (const json::Value* eps = doc.find("rms_norm_eps")) use(eps->as_double());
//
// Numbers keep the text they were written with next to a double, so integers beyond 2^53 (tensor
// offsets in large files) are read exactly by as_uint64().
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include "xgr/core/error.hpp"

namespace xgr::engine::json {

// Arrays and objects may nest this deep; the document's root container is level 1.
inline constexpr std::size_t max_depth = 64;

enum class Kind : std::uint8_t { null, boolean, number, string, array, object };

[[nodiscard]] constexpr std::string_view to_string(Kind kind) noexcept {
  switch (kind) {
    case Kind::null: return "null";
    case Kind::boolean: return "a boolean";
    case Kind::number: return "a number";
    case Kind::string: return "a string";
    case Kind::array: return "an array";
    case Kind::object: return "an object";
  }
  return "?";
}

struct Member;

namespace detail {
class Parser;
}

// One parsed JSON value. It remembers where it came from (the source name given to parse() and its
// key path) so that every accessor can say which value of which file is wrong.
class Value {
 public:
  Value() = default;  // null, with no source: what a default-constructed member holds

  [[nodiscard]] Kind kind() const noexcept { return kind_; }
  [[nodiscard]] bool is_null() const noexcept { return kind_ == Kind::null; }
  [[nodiscard]] bool is_bool() const noexcept { return kind_ == Kind::boolean; }
  [[nodiscard]] bool is_number() const noexcept { return kind_ == Kind::number; }
  [[nodiscard]] bool is_string() const noexcept { return kind_ == Kind::string; }
  [[nodiscard]] bool is_array() const noexcept { return kind_ == Kind::array; }
  [[nodiscard]] bool is_object() const noexcept { return kind_ == Kind::object; }

  [[nodiscard]] bool as_bool() const {
    expect(Kind::boolean, "a boolean");
    return boolean_;
  }
  // The nearest double (a number too large for a double is rejected by the parser).
  [[nodiscard]] double as_double() const {
    expect(Kind::number, "a number");
    return number_;
  }
  // The number exactly as written in the document ("1e-06", "18446744073709551615").
  [[nodiscard]] const std::string& number_text() const {
    expect(Kind::number, "a number");
    return text_;
  }
  // A number written as a plain non-negative integer that fits 64 bits, or nothing. "1.0", "1e3"
  // and "-0" are not: a size or offset written that way means a writer we do not understand.
  [[nodiscard]] std::optional<std::uint64_t> to_uint64() const noexcept {
    if (kind_ != Kind::number || text_.empty() || text_.size() > 20) return std::nullopt;
    std::uint64_t result = 0;
    for (const char c : text_) {
      if (c < '0' || c > '9') return std::nullopt;
      const auto digit = static_cast<std::uint64_t>(c - '0');
      if (result > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
      result = result * 10 + digit;
    }
    return result;
  }
  [[nodiscard]] std::uint64_t as_uint64() const {
    if (const auto value = to_uint64()) return *value;
    fail("expected a non-negative integer below 2^64, got " + summary());
  }
  [[nodiscard]] const std::string& as_string() const {
    expect(Kind::string, "a string");
    return text_;
  }
  [[nodiscard]] const std::vector<Value>& as_array() const {
    expect(Kind::array, "an array");
    return items_;
  }
  // Members in the order the document lists them.
  [[nodiscard]] const std::vector<Member>& as_object() const;

  // The number of elements of an array or members of an object.
  [[nodiscard]] std::size_t size() const;
  // The member named `key` of an object, or nullptr when it has none (throws if not an object).
  [[nodiscard]] const Value* find(std::string_view key) const;
  // The member named `key` of an object; throws naming the key when it is missing.
  [[nodiscard]] const Value& at(std::string_view key) const;
  // Element `index` of an array; throws when out of range.
  [[nodiscard]] const Value& at(std::size_t index) const {
    const std::vector<Value>& items = as_array();
    if (index >= items.size()) {
      fail("index " + std::to_string(index) + " is out of range for an array of " + std::to_string(items.size()) + " values");
    }
    return items[index];
  }

  // "$" for the root, then ".key", "[\"odd key\"]" and "[3]" steps.
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  // The name given to parse(): the operation every error of this document reports.
  [[nodiscard]] const std::string& source() const noexcept {
    static const std::string none;
    return source_ ? *source_ : none;
  }

  // Throws Error(io) for this value: "<source>: I/O error: <path>: <reason>". Readers built on top
  // (config, safetensors) use it for their own checks so that every message has the same shape.
  [[noreturn]] void fail(const std::string& reason) const {
    throw Error(ErrorKind::io, source().empty() ? std::string("json") : source(), path_ + ": " + reason);
  }

  // A short description for messages: `null`, `true`, `12.5`, `"abc"`, `an array of 3 values`.
  [[nodiscard]] std::string summary() const;

 private:
  friend class detail::Parser;

  void expect(Kind wanted, std::string_view description) const {
    if (kind_ != wanted) fail("expected " + std::string(description) + ", got " + summary());
  }

  Kind kind_ = Kind::null;
  bool boolean_ = false;
  double number_ = 0.0;
  std::string text_;  // a string's contents, or a number as written
  std::vector<Value> items_;
  std::vector<Member> members_;
  std::string path_ = "$";
  std::shared_ptr<const std::string> source_;
};

struct Member {
  std::string key;
  Value value;
};

// ---------------------------------------------------------------------------------------------
// Writing: what the engine's writers need to emit valid JSON by hand.

// `text` as a JSON string literal: quotes, backslashes and control characters escaped, everything
// else (UTF-8 included) copied. The caller supplies valid UTF-8 (see detail::is_valid_utf8).
[[nodiscard]] inline std::string quote(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('"');
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (byte < 0x20) {
          out += "\\u00";
          out.push_back(hex[byte >> 4]);
          out.push_back(hex[byte & 0xfu]);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
  return out;
}

// The shortest text that reads back as the same double, written the way Python's repr() writes a
// float ("1e-06", "10000.0", "1e+16") so that a float stays a float for Python readers. JSON has no
// NaN or infinity.
[[nodiscard]] inline std::string format_double(double value) {
  require_argument(std::isfinite(value), "json::format_double", "JSON cannot represent NaN or infinity");
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  if (ec != std::errc()) throw Error(ErrorKind::internal, "json::format_double", "std::to_chars failed");
  std::string text(buffer, end);
  // repr() switches to positional notation for decimal exponents in [-4, 16).
  const std::size_t e = text.find('e');
  int exponent = 0;
  (void)std::from_chars(text.data() + e + (text[e + 1] == '+' ? 2 : 1), text.data() + text.size(), exponent);
  if (exponent < -4 || exponent >= 16) return text;
  const auto [fixed_end, fixed_ec] = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::fixed);
  if (fixed_ec != std::errc()) throw Error(ErrorKind::internal, "json::format_double", "std::to_chars failed");
  text.assign(buffer, fixed_end);
  if (text.find('.') == std::string::npos) text += ".0";
  return text;
}

namespace detail {

// The length of the UTF-8 sequence starting at text[pos] if it is well formed (no overlong forms,
// no UTF-16 surrogates, nothing above U+10FFFF), else 0.
[[nodiscard]] inline std::size_t utf8_sequence_length(std::string_view text, std::size_t pos) noexcept {
  const auto byte = [&](std::size_t i) { return pos + i < text.size() ? static_cast<unsigned char>(text[pos + i]) : 0u; };
  const auto continuation = [](unsigned b) { return b >= 0x80 && b <= 0xbf; };
  const unsigned lead = byte(0);
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return continuation(byte(1)) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    const unsigned second = byte(1);
    const bool second_ok = lead == 0xe0 ? (second >= 0xa0 && second <= 0xbf)    // no overlong
                           : lead == 0xed ? (second >= 0x80 && second <= 0x9f)  // no surrogates
                                          : continuation(second);
    return second_ok && continuation(byte(2)) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const unsigned second = byte(1);
    const bool second_ok = lead == 0xf0 ? (second >= 0x90 && second <= 0xbf)    // no overlong
                           : lead == 0xf4 ? (second >= 0x80 && second <= 0x8f)  // <= U+10FFFF
                                          : continuation(second);
    return second_ok && continuation(byte(2)) && continuation(byte(3)) ? 4 : 0;
  }
  return 0;
}

[[nodiscard]] inline bool is_valid_utf8(std::string_view text) noexcept {
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t length = utf8_sequence_length(text, pos);
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

inline void append_utf8(std::string& out, std::uint32_t code_point) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
  }
}

// The path step for an object key: ".name" when the key reads as an identifier, else ["key"].
[[nodiscard]] inline std::string key_step(std::string_view key) {
  const auto identifier_char = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
  };
  bool identifier = !key.empty();
  for (std::size_t i = 0; i < key.size() && identifier; ++i) identifier = identifier_char(key[i], i == 0);
  return identifier ? "." + std::string(key) : "[" + quote(key) + "]";
}

// Recursive descent over the whole text; `pos_` is always the next unread byte.
class Parser {
 public:
  Parser(std::string_view text, std::shared_ptr<const std::string> source) : text_(text), source_(std::move(source)) {}

  Value parse_document() {
    skip_whitespace();
    Value root = parse_value("$", 0);
    skip_whitespace();
    if (pos_ != text_.size()) fail_at(pos_, "unexpected " + describe_byte(pos_) + " after the JSON value");
    return root;
  }

 private:
  [[noreturn]] void fail_at(std::size_t offset, const std::string& reason) const {
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < offset && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    throw Error(ErrorKind::io, *source_,
                "byte " + std::to_string(offset) + " (line " + std::to_string(line) + ", column " + std::to_string(column) +
                    "): " + reason);
  }

  [[nodiscard]] std::string describe_byte(std::size_t offset) const {
    if (offset >= text_.size()) return "end of input";
    const auto byte = static_cast<unsigned char>(text_[offset]);
    if (byte >= 0x21 && byte < 0x7f) return std::string("character '") + text_[offset] + "'";
    static constexpr char hex[] = "0123456789ABCDEF";
    return std::string("byte 0x") + hex[byte >> 4] + hex[byte & 0xfu];
  }

  [[nodiscard]] bool at_end() const noexcept { return pos_ >= text_.size(); }
  [[nodiscard]] char peek() const noexcept { return at_end() ? '\0' : text_[pos_]; }

  void skip_whitespace() noexcept {
    while (!at_end() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) ++pos_;
  }

  void expect_literal(std::string_view literal) {
    if (text_.substr(pos_, literal.size()) != literal) {
      fail_at(pos_, "invalid literal (expected '" + std::string(literal) + "')");
    }
    pos_ += literal.size();
  }

  Value make(Kind kind, std::string path) const {
    Value value;
    value.kind_ = kind;
    value.path_ = std::move(path);
    value.source_ = source_;
    return value;
  }

  Value parse_value(std::string path, std::size_t depth) {
    if (at_end()) fail_at(pos_, "expected a value, got the end of input");
    switch (text_[pos_]) {
      case '{': return parse_object(std::move(path), depth + 1);
      case '[': return parse_array(std::move(path), depth + 1);
      case '"': {
        Value value = make(Kind::string, std::move(path));
        value.text_ = parse_string();
        return value;
      }
      case 't':
      case 'f': {
        Value value = make(Kind::boolean, std::move(path));
        value.boolean_ = text_[pos_] == 't';
        expect_literal(value.boolean_ ? "true" : "false");
        return value;
      }
      case 'n':
        expect_literal("null");
        return make(Kind::null, std::move(path));
      default:
        if (text_[pos_] == '-' || (text_[pos_] >= '0' && text_[pos_] <= '9')) return parse_number(std::move(path));
        fail_at(pos_, "expected a value, got " + describe_byte(pos_));
    }
  }

  void enter(std::size_t depth) const {
    if (depth > max_depth) fail_at(pos_, "containers nest deeper than " + std::to_string(max_depth) + " levels");
  }

  Value parse_array(std::string path, std::size_t depth) {
    enter(depth);
    Value array = make(Kind::array, std::move(path));
    ++pos_;  // '['
    skip_whitespace();
    if (peek() == ']') {
      ++pos_;
      return array;
    }
    for (;;) {
      skip_whitespace();
      if (peek() == ']') fail_at(pos_, "trailing comma before ']'");
      array.items_.push_back(parse_value(array.path_ + "[" + std::to_string(array.items_.size()) + "]", depth));
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return array;
      }
      fail_at(pos_, "expected ',' or ']' in an array, got " + describe_byte(pos_));
    }
  }

  Value parse_object(std::string path, std::size_t depth) {
    enter(depth);
    Value object = make(Kind::object, std::move(path));
    ++pos_;  // '{'
    skip_whitespace();
    if (peek() == '}') {
      ++pos_;
      return object;
    }
    std::unordered_set<std::string> keys;
    for (;;) {
      skip_whitespace();
      if (peek() == '}') fail_at(pos_, "trailing comma before '}'");
      if (peek() != '"') fail_at(pos_, "expected a string key, got " + describe_byte(pos_));
      const std::size_t key_offset = pos_;
      std::string key = parse_string();
      if (!keys.insert(key).second) fail_at(key_offset, "duplicate key " + quote(key));
      skip_whitespace();
      if (peek() != ':') fail_at(pos_, "expected ':' after the key " + quote(key) + ", got " + describe_byte(pos_));
      ++pos_;
      skip_whitespace();
      Value value = parse_value(object.path_ + key_step(key), depth);
      object.members_.push_back(Member{std::move(key), std::move(value)});
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return object;
      }
      fail_at(pos_, "expected ',' or '}' in an object, got " + describe_byte(pos_));
    }
  }

  std::uint32_t parse_hex4() {
    if (text_.size() - pos_ < 4) fail_at(pos_, "\\u needs 4 hex digits");
    std::uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_];
      std::uint32_t digit = 0;
      if (c >= '0' && c <= '9') {
        digit = static_cast<std::uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        digit = static_cast<std::uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        digit = static_cast<std::uint32_t>(c - 'A' + 10);
      } else {
        fail_at(pos_, "\\u needs 4 hex digits, got " + describe_byte(pos_));
      }
      value = value * 16 + digit;
      ++pos_;
    }
    return value;
  }

  std::string parse_string() {
    const std::size_t start = pos_;
    ++pos_;  // '"'
    std::string out;
    for (;;) {
      if (at_end()) fail_at(start, "unterminated string");
      const auto byte = static_cast<unsigned char>(text_[pos_]);
      if (byte == '"') {
        ++pos_;
        return out;
      }
      if (byte < 0x20) fail_at(pos_, "control character " + describe_byte(pos_) + " in a string must be escaped");
      if (byte >= 0x80) {
        const std::size_t length = utf8_sequence_length(text_, pos_);
        if (length == 0) fail_at(pos_, "invalid UTF-8 in a string");
        out.append(text_.substr(pos_, length));
        pos_ += length;
        continue;
      }
      if (byte != '\\') {
        out.push_back(static_cast<char>(byte));
        ++pos_;
        continue;
      }
      const std::size_t escape = pos_;
      ++pos_;
      if (at_end()) fail_at(start, "unterminated string");
      switch (text_[pos_++]) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          std::uint32_t code_point = parse_hex4();
          if (code_point >= 0xdc00 && code_point <= 0xdfff) fail_at(escape, "unpaired low surrogate \\u" + hex4(code_point));
          if (code_point >= 0xd800 && code_point <= 0xdbff) {
            // UTF-16 spells code points above U+FFFF as a high/low surrogate pair of escapes.
            if (text_.substr(pos_, 2) != "\\u") fail_at(escape, "high surrogate \\u" + hex4(code_point) + " is not followed by a low one");
            pos_ += 2;
            const std::uint32_t low = parse_hex4();
            if (low < 0xdc00 || low > 0xdfff) fail_at(escape, "high surrogate \\u" + hex4(code_point) + " is not followed by a low one");
            code_point = 0x10000 + ((code_point - 0xd800) << 10) + (low - 0xdc00);
          }
          append_utf8(out, code_point);
          break;
        }
        default: fail_at(escape, "invalid escape '\\" + std::string(1, text_[pos_ - 1]) + "'");
      }
    }
  }

  static std::string hex4(std::uint32_t value) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out(4, '0');
    for (int i = 3; i >= 0; --i, value >>= 4) out[static_cast<std::size_t>(i)] = hex[value & 0xfu];
    return out;
  }

  bool digits() {
    const std::size_t begin = pos_;
    while (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    return pos_ > begin;
  }

  Value parse_number(std::string path) {
    const std::size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
      if (peek() >= '0' && peek() <= '9') fail_at(start, "numbers may not have leading zeros");
    } else if (!digits()) {
      fail_at(pos_, "expected a digit after '-', got " + describe_byte(pos_));
    }
    if (peek() == '.') {
      ++pos_;
      if (!digits()) fail_at(pos_, "expected a digit after the decimal point, got " + describe_byte(pos_));
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!digits()) fail_at(pos_, "expected a digit in the exponent, got " + describe_byte(pos_));
    }
    Value value = make(Kind::number, std::move(path));
    value.text_ = std::string(text_.substr(start, pos_ - start));
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    const auto [end, ec] = std::from_chars(first, last, value.number_);
    if (ec == std::errc::result_out_of_range) {
      // from_chars reports both overflow and underflow to zero; only overflow loses the value.
      if (decimal_exponent(value.text_) > 0) fail_at(start, "number " + value.text_ + " is too large for a double");
      value.number_ = value.text_[0] == '-' ? -0.0 : 0.0;
    } else if (ec != std::errc() || end != last) {
      fail_at(start, "cannot convert the number " + value.text_);
    }
    return value;
  }

  // Roughly log10 of |number| for a grammatical number with a nonzero digit: positive means
  // large. Only its sign is used, to tell overflow from underflow.
  static long long decimal_exponent(std::string_view number) {
    std::size_t i = number[0] == '-' ? 1 : 0;
    bool found = false, after_point = false;
    long long integer_digits = 0, leading_fraction_zeros = 0;
    for (; i < number.size() && number[i] != 'e' && number[i] != 'E'; ++i) {
      if (number[i] == '.') {
        after_point = true;
      } else if (!found && number[i] == '0') {
        if (after_point) ++leading_fraction_zeros;
      } else {
        found = true;
        if (!after_point) ++integer_digits;
      }
    }
    // The decimal exponent of the first nonzero digit, plus one.
    const long long position = integer_digits > 0 ? integer_digits : -leading_fraction_zeros;
    long long exponent = 0;
    if (i < number.size()) {
      ++i;
      const bool negative = number[i] == '-';
      if (number[i] == '-' || number[i] == '+') ++i;
      // Saturate: "1e99999999999999999999" must not overflow the count.
      for (; i < number.size(); ++i) exponent = std::min<long long>(exponent * 10 + (number[i] - '0'), 1'000'000'000);
      if (negative) exponent = -exponent;
    }
    return position + exponent;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  std::shared_ptr<const std::string> source_;
};

}  // namespace detail

// Parses a whole JSON document. `source` names it in every error (a path, or "the header of x").
[[nodiscard]] inline Value parse(std::string_view text, std::string source) {
  return detail::Parser(text, std::make_shared<const std::string>(std::move(source))).parse_document();
}

// ---------------------------------------------------------------------------------------------
// Value members that need Member complete.

inline const std::vector<Member>& Value::as_object() const {
  expect(Kind::object, "an object");
  return members_;
}

inline std::size_t Value::size() const {
  if (kind_ == Kind::array) return items_.size();
  if (kind_ == Kind::object) return members_.size();
  fail("expected an array or an object, got " + summary());
}

// A linear search: objects in model files are small, or (safetensors headers) indexed by the reader.
inline const Value* Value::find(std::string_view key) const {
  for (const Member& member : as_object()) {
    if (member.key == key) return &member.value;
  }
  return nullptr;
}

inline const Value& Value::at(std::string_view key) const {
  if (const Value* value = find(key)) return *value;
  fail("missing key " + quote(key));
}

inline std::string Value::summary() const {
  switch (kind_) {
    case Kind::null: return "null";
    case Kind::boolean: return boolean_ ? "true" : "false";
    case Kind::number: return text_;
    case Kind::string: {
      constexpr std::size_t shown = 40;
      return "the string " + (text_.size() <= shown ? quote(text_) : quote(text_.substr(0, shown)) + "...");
    }
    case Kind::array: return "an array of " + std::to_string(items_.size()) + " values";
    case Kind::object: return "an object of " + std::to_string(members_.size()) + " members";
  }
  return "?";
}

}  // namespace xgr::engine::json
