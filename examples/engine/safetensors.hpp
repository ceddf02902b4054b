// engine/safetensors.hpp — model weights in the safetensors format (Hugging Face), read and written.
//
// The format (https://github.com/huggingface/safetensors), all integers little-endian:
//
//     u64       N, the header length in bytes
//     N bytes   JSON header: {"<name>": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
//                             ..., "__metadata__": {"<key>": "<string>"}}   (metadata optional)
//     ...       the data buffer; data_offsets are [begin, end) byte offsets into it
//
// SafetensorsFile::open() reads the whole file into memory and checks everything the Python
// library checks before handing out a single byte: the header length against the file and a 100 MB
// cap, the header as strict JSON (engine/json.hpp), every dtype, shape and offset pair, each byte
// size against product(shape) x dtype size (overflow-checked), and that the tensors tile the data
// buffer exactly — in offset order, no overlap, no hole, nothing after the last one. A file that
// passes cannot make a later read go out of bounds. Every failure is Error(io) naming the file and,
// where there is one, the tensor.
//
// Tensors hold raw little-endian bytes; the host is assumed little-endian (checked below). Their
// spans are not aligned to the element type (the data buffer starts at 8 + N inside a byte vector):
// copy with memcpy, or use to_float().
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include "json.hpp"
#include "xgr/core/dtype.hpp"
#include "xgr/core/error.hpp"

namespace xgr::engine {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader hands out the bytes as stored");

// The element types of the format with whole-byte elements. (The sub-byte F4/F6 types of newer
// writers are rejected as unknown: their byte size is not product(shape) x element size.)
enum class TensorDType : std::uint8_t { boolean, u8, i8, f8_e5m2, f8_e4m3, i16, u16, f16, bf16, i32, u32, f32, i64, u64, f64 };

namespace safetensors::detail {

struct DTypeInfo {
  TensorDType dtype;
  std::string_view name;  // as spelled in the header
  std::size_t bytes;
};

inline constexpr std::array<DTypeInfo, 15> dtypes = {{
    {TensorDType::boolean, "BOOL", 1},  {TensorDType::u8, "U8", 1},   {TensorDType::i8, "I8", 1},
    {TensorDType::f8_e5m2, "F8_E5M2", 1}, {TensorDType::f8_e4m3, "F8_E4M3", 1}, {TensorDType::i16, "I16", 2},
    {TensorDType::u16, "U16", 2},       {TensorDType::f16, "F16", 2}, {TensorDType::bf16, "BF16", 2},
    {TensorDType::i32, "I32", 4},       {TensorDType::u32, "U32", 4}, {TensorDType::f32, "F32", 4},
    {TensorDType::i64, "I64", 8},       {TensorDType::u64, "U64", 8}, {TensorDType::f64, "F64", 8},
}};

[[nodiscard]] constexpr const DTypeInfo& info(TensorDType dtype) noexcept {
  return dtypes[static_cast<std::size_t>(dtype)];  // the table lists the enum in order
}

}  // namespace safetensors::detail

// The header spelling: "BF16", "F32", ...
[[nodiscard]] constexpr std::string_view to_string(TensorDType dtype) noexcept { return safetensors::detail::info(dtype).name; }
[[nodiscard]] constexpr std::size_t dtype_bytes(TensorDType dtype) noexcept { return safetensors::detail::info(dtype).bytes; }
[[nodiscard]] constexpr std::optional<TensorDType> parse_tensor_dtype(std::string_view name) noexcept {
  for (const auto& entry : safetensors::detail::dtypes) {
    if (entry.name == name) return entry.dtype;
  }
  return std::nullopt;
}

// "[2, 3]"; "[]" for a scalar.
[[nodiscard]] inline std::string shape_string(std::span<const std::size_t> shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

// product(shape), or nothing when it overflows std::size_t. A zero dimension makes it 0 whatever the others.
[[nodiscard]] inline std::optional<std::size_t> element_count(std::span<const std::size_t> shape) noexcept {
  if (std::find(shape.begin(), shape.end(), std::size_t{0}) != shape.end()) return std::size_t{0};
  std::size_t count = 1;
  for (const std::size_t extent : shape) {
    if (count > std::numeric_limits<std::size_t>::max() / extent) return std::nullopt;
    count *= extent;
  }
  return count;
}

// One tensor of a file: valid while the SafetensorsFile it came from lives (moves included).
struct TensorView {
  std::string_view name;
  TensorDType dtype = TensorDType::f32;
  std::vector<std::size_t> shape;   // empty for a 0-d scalar
  std::span<const std::byte> bytes;  // little-endian elements, row-major, not aligned
  std::string_view file;             // the file's path, for messages ("" for a view made by hand)

  [[nodiscard]] std::size_t elements() const noexcept { return element_count(shape).value_or(0); }
};

// Move-only: it holds the whole file, which an accidental copy would duplicate. Its storage is on
// the heap, so views stay valid when the object is moved.
class SafetensorsFile {
 public:
  // The format's own cap (safetensors' MAX_HEADER_SIZE): a larger length is a corrupt file, and
  // checking it first keeps us from parsing gigabytes of noise.
  static constexpr std::uint64_t max_header_bytes = 100'000'000;

  // Reads and validates the whole file; throws Error(io) naming the file (and tensor) on any defect.
  [[nodiscard]] static SafetensorsFile open(const std::string& path) {
    SafetensorsFile file;
    file.path_ = std::make_unique<const std::string>(path);
    file.read_all();
    file.parse_header();
    return file;
  }

  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;

  [[nodiscard]] const std::string& path() const noexcept { return *path_; }
  // Tensor names in data-offset order (the order of the data buffer).
  [[nodiscard]] const std::vector<std::string>& names() const noexcept { return names_; }
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
  [[nodiscard]] bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  // The header length N as stored (a multiple of 8 for files written by the reference writers).
  [[nodiscard]] std::size_t header_bytes() const noexcept { return data_start_ - 8; }

  // The tensor called `name`; Error(io) when the file has none.
  [[nodiscard]] TensorView tensor(std::string_view name) const {
    const auto found = index_.find(name);
    if (found == index_.end()) {
      fail_lookup("tensor", "no tensor named '" + std::string(name) + "' among its " + std::to_string(entries_.size()) + " tensors");
    }
    return view(entries_[found->second]);
  }

  // The tensor called `name`, which must have `expected_shape`: the check an engine makes for each
  // weight its config implies, so that a config and weights of different models fail here, by name.
  [[nodiscard]] TensorView require(std::string_view name, std::span<const std::size_t> expected_shape) const {
    const auto found = index_.find(name);
    if (found == index_.end()) {
      fail_lookup("require", "the model needs tensor '" + std::string(name) + "' of shape " + shape_string(expected_shape) +
           ", which the file lacks (" + std::to_string(entries_.size()) +
           " tensors; weights of a different model, or one shard of several?)");
    }
    const Entry& entry = entries_[found->second];
    if (!std::equal(entry.shape.begin(), entry.shape.end(), expected_shape.begin(), expected_shape.end())) {
      fail_lookup("require", "tensor '" + entry.name + "' has shape " + shape_string(entry.shape) + ", the model expects " +
           shape_string(expected_shape) + " (config and weights of different models?)");
    }
    return view(entry);
  }
  [[nodiscard]] TensorView require(std::string_view name, std::initializer_list<std::size_t> expected_shape) const {
    return require(name, std::span<const std::size_t>(expected_shape.begin(), expected_shape.size()));
  }

 private:
  struct Entry {
    std::string name;
    TensorDType dtype = TensorDType::f32;
    std::vector<std::size_t> shape;
    std::size_t begin = 0, end = 0;  // into the data buffer
  };

  SafetensorsFile() = default;

  [[noreturn]] void fail(const std::string& reason) const { fail_lookup("open", reason); }
  [[noreturn]] void fail_lookup(const char* method, const std::string& reason) const {
    throw Error(ErrorKind::io, "SafetensorsFile::" + std::string(method) + "(" + *path_ + ")", reason);
  }

  [[nodiscard]] TensorView view(const Entry& entry) const {
    return {entry.name, entry.dtype, entry.shape,
            std::span<const std::byte>(bytes_).subspan(data_start_ + entry.begin, entry.end - entry.begin), *path_};
  }

  void read_all() {
    // A directory opens as a stream on Linux and reports a nonsense size: ask the file system first.
    std::error_code error;
    const std::filesystem::file_status status = std::filesystem::status(*path_, error);
    if (!std::filesystem::exists(status)) fail("cannot open the file");
    if (!std::filesystem::is_regular_file(status)) fail("not a regular file");
    std::ifstream in(*path_, std::ios::binary | std::ios::ate);
    if (!in) fail("cannot open the file");
    const std::streamoff size = in.tellg();
    if (size < 0) fail("cannot determine the file's size");
    in.seekg(0);
    try {
      bytes_.resize(static_cast<std::size_t>(size));
    } catch (const std::bad_alloc&) {
      throw Error(ErrorKind::out_of_memory, "SafetensorsFile::open(" + *path_ + ")",
                  "cannot hold the " + std::to_string(size) + "-byte file in memory");
    }
    if (!in.read(reinterpret_cast<char*>(bytes_.data()), static_cast<std::streamsize>(size))) fail("reading the file failed");
  }

  void parse_header() {
    if (bytes_.size() < 8) {
      fail("the file is " + std::to_string(bytes_.size()) + " bytes, shorter than the 8-byte header length");
    }
    std::uint64_t header_length = 0;
    for (std::size_t i = 0; i < 8; ++i) header_length |= std::uint64_t{std::to_integer<std::uint8_t>(bytes_[i])} << (8 * i);
    if (header_length > max_header_bytes) {
      fail("header length " + std::to_string(header_length) + " exceeds the format's limit of " +
           std::to_string(max_header_bytes) + " bytes (not a safetensors file, or a corrupt one)");
    }
    if (header_length > bytes_.size() - 8) {
      fail("header length " + std::to_string(header_length) + " runs past the end of the file (" +
           std::to_string(bytes_.size()) + " bytes: truncated?)");
    }
    data_start_ = 8 + static_cast<std::size_t>(header_length);
    const std::size_t data_bytes = bytes_.size() - data_start_;

    const std::string_view text(reinterpret_cast<const char*>(bytes_.data() + 8), static_cast<std::size_t>(header_length));
    const std::string source = "SafetensorsFile::open(" + *path_ + ")";
    json::Value header;
    try {
      header = json::parse(text, source);
    } catch (const Error& error) {
      fail("the header is not valid JSON: header " + error.reason());
    }
    if (!header.is_object()) fail("the header is not a JSON object but " + header.summary());

    for (const json::Member& member : header.as_object()) {
      if (member.key == "__metadata__") {
        read_metadata(member.value);
      } else {
        entries_.push_back(read_entry(member.key, member.value, data_bytes));
      }
    }

    // The tensors must tile the data buffer: sorted by offsets, each begins where the previous
    // ended, and the last ends where the file does. (An empty tensor may sit at any offset on that
    // path, even one shared with other tensors, but never inside another tensor.)
    std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
      return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
    });
    std::size_t covered = 0;
    const Entry* previous = nullptr;
    for (const Entry& entry : entries_) {
      if (entry.begin < covered) {
        fail("tensor '" + entry.name + "' (data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) +
             "]) overlaps tensor '" + previous->name + "' (data_offsets [" + std::to_string(previous->begin) + ", " +
             std::to_string(previous->end) + "])");
      }
      if (entry.begin > covered) {
        fail("bytes [" + std::to_string(covered) + ", " + std::to_string(entry.begin) +
             ") of the data buffer belong to no tensor (a hole before tensor '" + entry.name +
             "'; safetensors requires the tensors to cover the buffer contiguously)");
      }
      covered = entry.end;
      previous = &entry;
    }
    if (covered != data_bytes) {
      fail("the data buffer holds " + std::to_string(data_bytes) + " bytes but the tensors cover only " + std::to_string(covered) +
           " (" + std::to_string(data_bytes - covered) + " bytes after the last tensor)");
    }

    names_.reserve(entries_.size());
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      names_.push_back(entries_[i].name);
      index_.emplace(entries_[i].name, i);
    }
  }

  void read_metadata(const json::Value& value) {
    if (!value.is_object()) fail("__metadata__ must be an object of strings, got " + value.summary());
    for (const json::Member& member : value.as_object()) {
      if (!member.value.is_string()) {
        fail("__metadata__ must map strings to strings, but key '" + member.key + "' holds " + member.value.summary());
      }
      metadata_.emplace(member.key, member.value.as_string());
    }
  }

  Entry read_entry(const std::string& name, const json::Value& value, std::size_t data_bytes) const {
    const std::string what = "tensor '" + name + "': ";
    if (!value.is_object()) fail(what + "expected an object with dtype, shape and data_offsets, got " + value.summary());
    for (const json::Member& member : value.as_object()) {
      if (member.key != "dtype" && member.key != "shape" && member.key != "data_offsets") {
        fail(what + "unknown field '" + member.key + "' (expected dtype, shape and data_offsets)");
      }
    }
    const auto field = [&](const char* key) -> const json::Value& {
      const json::Value* found = value.find(key);
      if (found == nullptr) fail(what + "missing field '" + key + "'");
      return *found;
    };
    Entry entry;
    entry.name = name;

    const json::Value& dtype = field("dtype");
    if (!dtype.is_string()) fail(what + "dtype must be a string, got " + dtype.summary());
    const std::optional<TensorDType> parsed = parse_tensor_dtype(dtype.as_string());
    if (!parsed) fail(what + "unknown dtype " + json::quote(dtype.as_string()));
    entry.dtype = *parsed;

    const json::Value& shape = field("shape");
    if (!shape.is_array()) fail(what + "shape must be an array of non-negative integers, got " + shape.summary());
    for (const json::Value& extent : shape.as_array()) {
      const std::optional<std::uint64_t> parsed_extent = extent.to_uint64();
      if (!parsed_extent || *parsed_extent > std::numeric_limits<std::size_t>::max()) {
        fail(what + "shape entries must be non-negative integers, got " + extent.summary());
      }
      entry.shape.push_back(static_cast<std::size_t>(*parsed_extent));
    }

    const json::Value& offsets = field("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2) {
      fail(what + "data_offsets must be [begin, end], got " + offsets.summary());
    }
    const std::optional<std::uint64_t> begin = offsets.at(std::size_t{0}).to_uint64();
    const std::optional<std::uint64_t> end = offsets.at(std::size_t{1}).to_uint64();
    if (!begin || !end) {
      fail(what + "data_offsets must be two non-negative integers, got [" + offsets.at(std::size_t{0}).summary() + ", " +
           offsets.at(std::size_t{1}).summary() + "]");
    }
    const std::string offsets_text = "data_offsets [" + std::to_string(*begin) + ", " + std::to_string(*end) + "]";
    if (*begin > *end) fail(what + offsets_text + " end before they begin");
    if (*end > data_bytes) {
      fail(what + offsets_text + " run past the end of the data buffer (" + std::to_string(data_bytes) + " bytes)");
    }
    entry.begin = static_cast<std::size_t>(*begin);
    entry.end = static_cast<std::size_t>(*end);

    const std::optional<std::size_t> count = element_count(entry.shape);
    const std::size_t element_bytes = dtype_bytes(entry.dtype);
    if (!count || *count > std::numeric_limits<std::size_t>::max() / element_bytes) {
      fail(what + "shape " + shape_string(entry.shape) + " of " + std::string(to_string(entry.dtype)) +
           " overflows a 64-bit byte count");
    }
    if (*count * element_bytes != entry.end - entry.begin) {
      fail(what + "shape " + shape_string(entry.shape) + " of " + std::string(to_string(entry.dtype)) + " needs " +
           std::to_string(*count * element_bytes) + " bytes but " + offsets_text + " hold " +
           std::to_string(entry.end - entry.begin));
    }
    return entry;
  }

  std::unique_ptr<const std::string> path_;
  std::vector<std::byte> bytes_;  // the whole file
  std::size_t data_start_ = 0;    // 8 + header length
  std::vector<Entry> entries_;    // in data-offset order
  std::vector<std::string> names_;
  std::map<std::string, std::size_t, std::less<>> index_;  // name -> entries_ index (string_view lookups)
  std::map<std::string, std::string> metadata_;
};

// The elements of a BF16, F16 or F32 tensor as floats (the conversions of xgr/core/dtype.hpp).
// Any other dtype throws Error(io): the file does not hold the floating-point weights the model needs.
[[nodiscard]] inline std::vector<float> to_float(const TensorView& tensor) {
  const std::string operation =
      "to_float(tensor '" + std::string(tensor.name) + "'" + (tensor.file.empty() ? "" : " of " + std::string(tensor.file)) + ")";
  const std::optional<std::size_t> count = element_count(tensor.shape);
  require_argument(count && *count <= tensor.bytes.size() / dtype_bytes(tensor.dtype) &&
                       *count * dtype_bytes(tensor.dtype) == tensor.bytes.size(),
                   operation, [&] { return "the view's bytes do not match its shape " + shape_string(tensor.shape); });
  std::vector<float> values(*count);
  const std::byte* data = tensor.bytes.data();
  const auto bits16 = [data](std::size_t i) {
    std::uint16_t bits = 0;
    std::memcpy(&bits, data + 2 * i, 2);
    return bits;
  };
  switch (tensor.dtype) {
    case TensorDType::f32:
      if (!values.empty()) std::memcpy(values.data(), data, values.size() * sizeof(float));
      break;
    case TensorDType::f16:
      for (std::size_t i = 0; i < values.size(); ++i) values[i] = xgr::to_float(half::from_bits(bits16(i)));
      break;
    case TensorDType::bf16:
      for (std::size_t i = 0; i < values.size(); ++i) values[i] = xgr::to_float(bfloat16::from_bits(bits16(i)));
      break;
    default:
      throw Error(ErrorKind::io, operation,
                  "dtype " + std::string(to_string(tensor.dtype)) + " is not one of BF16, F16, F32");
  }
  return values;
}

// One tensor to write: `bytes` are its little-endian elements, row-major.
struct TensorData {
  std::string name;
  TensorDType dtype = TensorDType::f32;
  std::vector<std::size_t> shape;
  std::span<const std::byte> bytes;
};

// Writes `tensors` in the given order (header and data buffer alike), metadata first. The header is
// padded with spaces to a multiple of 8 bytes, as the Python library does, so that the data buffer
// starts 8-byte aligned in the file. Caller errors (a duplicate or reserved name, bytes that do not
// match the shape) are Error(invalid_argument); failing to create or write the file is Error(io).
inline void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  const std::string operation = "write_safetensors(" + path + ")";
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      require_argument(json::detail::is_valid_utf8(key) && json::detail::is_valid_utf8(value), operation,
                       [&] { return "metadata key '" + key + "' or its value is not valid UTF-8"; });
      if (!first) header += ",";
      header += json::quote(key) + ":" + json::quote(value);
      first = false;
    }
    header += "}";
  }
  std::unordered_set<std::string_view> seen;
  std::size_t offset = 0;
  for (const TensorData& tensor : tensors) {
    const std::string what = "tensor '" + tensor.name + "': ";
    require_argument(tensor.name != "__metadata__", operation, "'__metadata__' is reserved and cannot name a tensor");
    require_argument(json::detail::is_valid_utf8(tensor.name), operation, [&] { return what + "the name is not valid UTF-8"; });
    require_argument(seen.insert(tensor.name).second, operation, [&] { return what + "the name appears twice"; });
    const std::optional<std::size_t> count = element_count(tensor.shape);
    require_argument(count.has_value(), operation,
                     [&] { return what + "shape " + shape_string(tensor.shape) + " overflows size_t"; });
    const std::size_t bytes = xgr::detail::checked_bytes(*count, dtype_bytes(tensor.dtype), operation);
    require_argument(bytes == tensor.bytes.size(), operation,
                     [&] { return what + "shape " + shape_string(tensor.shape) + " of " + std::string(to_string(tensor.dtype)) +
                                      " needs " +
                                      std::to_string(bytes) + " bytes, got " + std::to_string(tensor.bytes.size()); });
    if (header.size() > 1) header += ",";
    header += json::quote(tensor.name) + ":{\"dtype\":\"" + std::string(to_string(tensor.dtype)) + "\",\"shape\":[";
    for (std::size_t i = 0; i < tensor.shape.size(); ++i) {
      if (i > 0) header += ",";
      header += std::to_string(tensor.shape[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(ErrorKind::io, operation, "cannot create the file");
  char length[8];
  for (std::size_t i = 0; i < 8; ++i) length[i] = static_cast<char>((std::uint64_t{header.size()} >> (8 * i)) & 0xffu);
  out.write(length, 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const TensorData& tensor : tensors) {
    out.write(reinterpret_cast<const char*>(tensor.bytes.data()), static_cast<std::streamsize>(tensor.bytes.size()));
  }
  if (!out.flush()) throw Error(ErrorKind::io, operation, "writing the file failed");
}

}  // namespace xgr::engine
