// xgr/items/io.hpp — item tables (item id -> L codes) on disk, in a text and a binary format.
//
// Text format (UTF-8/ASCII, one record per line, '#' starts a comment, blank lines ignored):
//
//     xgr-items 1                  magic and version
//     codebook 256 256 256         one codebook size per level (this fixes L = 3)
//     1001 17 250 3                item id, then L codes
//     1002 17 250 4
//
// Binary format (little-endian), for catalogues of millions of items:
//
//     8 bytes  "XGRITEMS"
//     u32      version (1)
//     u32      levels L
//     u32 x L  codebook sizes
//     u64      item count N
//     N x (u64 item id, u32 x L codes)
//
// load_item_table() detects the format from the first bytes (a file that is neither, such as a binary
// table whose magic is damaged, is reported as such). Every malformed input — wrong magic,
// a line with the wrong number of codes, a code outside its codebook, a truncated file — throws
// Error(io) naming the file and, for text, the line.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "xgr/core/error.hpp"
#include "xgr/core/view.hpp"
#include "xgr/items/trie.hpp"

namespace xgr {

struct ItemTable {
  std::vector<std::uint32_t> codebook_sizes;  // one per level
  std::vector<ItemId> item_ids;               // one per item
  std::vector<std::uint32_t> codes;           // items x levels, row-major

  [[nodiscard]] std::size_t levels() const noexcept { return codebook_sizes.size(); }
  [[nodiscard]] std::size_t size() const noexcept { return item_ids.size(); }
  [[nodiscard]] MatrixView<const std::uint32_t> code_matrix() const noexcept {
    return {codes.data(), size(), levels(), levels()};
  }
};

[[nodiscard]] inline ItemTrie build_item_trie(const ItemTable& table) {
  require_argument(table.codes.size() == table.size() * table.levels(), "build_item_trie",
                   [&] { return "the table holds " + std::to_string(table.codes.size()) + " codes for " +
                                    std::to_string(table.size()) + " items of " + std::to_string(table.levels()) + " levels"; });
  return ItemTrie::build(table.codebook_sizes, table.code_matrix(), table.item_ids);
}

enum class ItemFileFormat { text, binary };

namespace items::detail {

inline constexpr char binary_magic[8] = {'X', 'G', 'R', 'I', 'T', 'E', 'M', 'S'};
inline constexpr std::uint32_t format_version = 1;

[[noreturn]] inline void fail(const std::string& path, const std::string& reason) {
  throw Error(ErrorKind::io, "load_item_table(" + path + ")", reason);
}

inline void check_levels(const std::string& path, const std::vector<std::uint32_t>& codebook_sizes) {
  if (codebook_sizes.empty() || codebook_sizes.size() > max_item_levels) {
    fail(path, "the codebook line must give 1 to " + std::to_string(max_item_levels) + " sizes, got " +
                   std::to_string(codebook_sizes.size()));
  }
  for (std::size_t level = 0; level < codebook_sizes.size(); ++level) {
    if (codebook_sizes[level] == 0 || codebook_sizes[level] > max_codebook_size) {
      fail(path, "codebook size of level " + std::to_string(level) + " must be in [1, " + std::to_string(max_codebook_size) +
                     "], got " + std::to_string(codebook_sizes[level]));
    }
  }
}

// Parses an unsigned decimal integer that fits `limit`; false on anything else.
inline bool parse_unsigned(const std::string& word, std::uint64_t limit, std::uint64_t& value) {
  if (word.empty() || word.size() > 20) return false;
  std::uint64_t result = 0;
  for (char c : word) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (result > (limit - digit) / 10) return false;
    result = result * 10 + digit;
  }
  value = result;
  return true;
}

inline ItemTable load_text(std::istream& in, const std::string& path) {
  ItemTable table;
  std::string line;
  std::size_t line_number = 0;
  int header_lines = 0;  // 0: expect magic, 1: expect codebook, 2: items
  std::vector<std::string> words;
  while (std::getline(in, line)) {
    ++line_number;
    if (const std::size_t comment = line.find('#'); comment != std::string::npos) line.resize(comment);
    std::istringstream fields(line);
    words.clear();
    for (std::string word; fields >> word;) words.push_back(word);
    if (words.empty()) continue;
    const std::string where = "line " + std::to_string(line_number) + ": ";
    if (header_lines == 0) {
      if (words.size() != 2 || words[0] != "xgr-items" || words[1] != std::to_string(format_version)) {
        fail(path, where + "expected the header 'xgr-items " + std::to_string(format_version) + "'");
      }
      header_lines = 1;
      continue;
    }
    if (header_lines == 1) {
      if (words[0] != "codebook") fail(path, where + "expected 'codebook <size per level>'");
      for (std::size_t i = 1; i < words.size(); ++i) {
        std::uint64_t size = 0;
        if (!parse_unsigned(words[i], std::numeric_limits<std::uint32_t>::max(), size)) {
          fail(path, where + "codebook size '" + words[i] + "' is not an unsigned integer");
        }
        table.codebook_sizes.push_back(static_cast<std::uint32_t>(size));
      }
      check_levels(path, table.codebook_sizes);
      header_lines = 2;
      continue;
    }
    const std::size_t levels = table.levels();
    if (words.size() != levels + 1) {
      fail(path, where + "expected an item id and " + std::to_string(levels) + " codes, got " +
                     std::to_string(words.size()) + " fields");
    }
    std::uint64_t id = 0;
    if (!parse_unsigned(words[0], std::numeric_limits<std::uint64_t>::max(), id)) {
      fail(path, where + "item id '" + words[0] + "' is not an unsigned 64-bit integer");
    }
    table.item_ids.push_back(id);
    for (std::size_t level = 0; level < levels; ++level) {
      std::uint64_t code = 0;
      if (!parse_unsigned(words[level + 1], std::numeric_limits<std::uint32_t>::max(), code) ||
          code >= table.codebook_sizes[level]) {
        fail(path, where + "code '" + words[level + 1] + "' of level " + std::to_string(level) +
                       " is not an integer below the codebook size " + std::to_string(table.codebook_sizes[level]));
      }
      table.codes.push_back(static_cast<std::uint32_t>(code));
    }
  }
  if (header_lines < 2) fail(path, "missing header: a text item table starts with 'xgr-items 1' and a 'codebook' line");
  return table;
}

template <class T>
bool read_le(std::istream& in, T& value) {
  unsigned char bytes[sizeof(T)];
  if (!in.read(reinterpret_cast<char*>(bytes), sizeof(T))) return false;
  T result = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) result |= static_cast<T>(static_cast<T>(bytes[i]) << (8 * i));
  value = result;
  return true;
}

template <class T>
void write_le(std::ostream& out, T value) {
  unsigned char bytes[sizeof(T)];
  for (std::size_t i = 0; i < sizeof(T); ++i) bytes[i] = static_cast<unsigned char>(value >> (8 * i));
  out.write(reinterpret_cast<const char*>(bytes), sizeof(T));
}

inline ItemTable load_binary(std::istream& in, const std::string& path, std::uintmax_t file_bytes) {
  ItemTable table;
  char magic[8];
  std::uint32_t version = 0;
  std::uint32_t levels = 0;
  if (!in.read(magic, 8) || std::memcmp(magic, binary_magic, 8) != 0) fail(path, "not an xgr binary item table");
  if (!read_le(in, version) || version != format_version) fail(path, "unsupported binary version " + std::to_string(version));
  if (!read_le(in, levels) || levels == 0 || levels > max_item_levels) fail(path, "bad level count " + std::to_string(levels));
  table.codebook_sizes.resize(levels);
  for (auto& size : table.codebook_sizes) {
    if (!read_le(in, size)) fail(path, "truncated header");
  }
  check_levels(path, table.codebook_sizes);
  std::uint64_t count = 0;
  if (!read_le(in, count)) fail(path, "truncated header");
  const std::uint64_t record_bytes = 8 + 4 * std::uint64_t{levels};
  const std::uint64_t header_bytes = 8 + 4 + 4 + 4 * std::uint64_t{levels} + 8;
  // Check the size before allocating, so a corrupt count cannot ask for terabytes.
  if (file_bytes < header_bytes || count > (file_bytes - header_bytes) / record_bytes) {
    fail(path, "the header announces " + std::to_string(count) + " items, the file is too short for them");
  }
  table.item_ids.resize(count);
  table.codes.resize(count * levels);
  for (std::uint64_t item = 0; item < count; ++item) {
    if (!read_le(in, table.item_ids[item])) fail(path, "truncated at item " + std::to_string(item));
    for (std::uint32_t level = 0; level < levels; ++level) {
      std::uint32_t& code = table.codes[item * levels + level];
      if (!read_le(in, code)) fail(path, "truncated at item " + std::to_string(item));
      if (code >= table.codebook_sizes[level]) {
        fail(path, "item " + std::to_string(table.item_ids[item]) + " has code " + std::to_string(code) + " at level " +
                       std::to_string(level) + ", not below the codebook size " + std::to_string(table.codebook_sizes[level]));
      }
    }
  }
  return table;
}

}  // namespace items::detail

// Reads a text or binary item table (the format is detected from the first bytes).
[[nodiscard]] inline ItemTable load_item_table(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) items::detail::fail(path, "cannot open the file");
  const auto file_bytes = static_cast<std::uintmax_t>(in.tellg());
  in.seekg(0);
  char first[64] = {};
  in.read(first, sizeof first);
  const auto read = static_cast<std::size_t>(in.gcount());
  const bool binary = read >= 8 && std::memcmp(first, items::detail::binary_magic, 8) == 0;
  // A file that is not the binary format but whose first bytes hold what no text table has (NUL,
  // control characters: the binary header's integers) is most likely a binary table with a damaged
  // magic: say so, rather than report a bad text header.
  const bool text_like = std::all_of(first, first + read, [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte >= 0x20 || byte == '\t' || byte == '\n' || byte == '\r';
  });
  if (!binary && !text_like) {
    items::detail::fail(path, "neither a text item table nor a binary one: binary bytes, but the first 8 are not the magic "
                              "'XGRITEMS' (a damaged binary file?)");
  }
  in.clear();
  in.seekg(0);
  return binary ? items::detail::load_binary(in, path, file_bytes) : items::detail::load_text(in, path);
}

inline void save_item_table(const std::string& path, const ItemTable& table, ItemFileFormat format) {
  const char* op = "save_item_table";
  require_argument(table.codes.size() == table.size() * table.levels(), op, "codes must hold items x levels entries");
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(ErrorKind::io, op, "cannot create " + path);
  if (format == ItemFileFormat::text) {
    out << "xgr-items " << items::detail::format_version << "\ncodebook";
    for (std::uint32_t size : table.codebook_sizes) out << ' ' << size;
    out << '\n';
    for (std::size_t item = 0; item < table.size(); ++item) {
      out << table.item_ids[item];
      for (std::size_t level = 0; level < table.levels(); ++level) out << ' ' << table.codes[item * table.levels() + level];
      out << '\n';
    }
  } else {
    out.write(items::detail::binary_magic, 8);
    items::detail::write_le(out, items::detail::format_version);
    items::detail::write_le(out, static_cast<std::uint32_t>(table.levels()));
    for (std::uint32_t size : table.codebook_sizes) items::detail::write_le(out, size);
    items::detail::write_le(out, static_cast<std::uint64_t>(table.size()));
    for (std::size_t item = 0; item < table.size(); ++item) {
      items::detail::write_le(out, table.item_ids[item]);
      for (std::size_t level = 0; level < table.levels(); ++level) items::detail::write_le(out, table.codes[item * table.levels() + level]);
    }
  }
  if (!out.flush()) throw Error(ErrorKind::io, op, "writing " + path + " failed");
}

}  // namespace xgr
