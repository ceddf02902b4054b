#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "support/beam_inputs.hpp"
#include "support/files.hpp"
#include "support/random.hpp"
#include "xgr/items/io.hpp"

namespace {

// Every test's files live in a fresh directory of its own.
class TempDir : public xgr::test::TempDir {
 public:
  TempDir() : xgr::test::TempDir("xgr_item_io") {}
};

using xgr::test::write_file;

bool same_table(const xgr::ItemTable& a, const xgr::ItemTable& b) {
  return a.codebook_sizes == b.codebook_sizes && a.item_ids == b.item_ids && a.codes == b.codes;
}

// Little-endian fields, written independently of io.hpp.
void put_u32(std::string& bytes, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((value >> (8 * i)) & 0xffu));
}
void put_u64(std::string& bytes, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((value >> (8 * i)) & 0xffu));
}

// A binary file: header, then `records` (id, codes...) as given. `count` is what the header announces.
std::string binary_file(const std::vector<std::uint32_t>& codebooks, std::uint64_t count,
                        const std::vector<std::vector<std::uint64_t>>& records, std::uint32_t version = 1,
                        const char* magic = "XGRITEMS") {
  std::string bytes(magic, 8);
  put_u32(bytes, version);
  put_u32(bytes, static_cast<std::uint32_t>(codebooks.size()));
  for (std::uint32_t size : codebooks) put_u32(bytes, size);
  put_u64(bytes, count);
  for (const auto& record : records) {
    put_u64(bytes, record[0]);
    for (std::size_t i = 1; i < record.size(); ++i) put_u32(bytes, static_cast<std::uint32_t>(record[i]));
  }
  return bytes;
}

struct LoadFailure {
  bool thrown = false;
  xgr::ErrorKind kind = xgr::ErrorKind::internal;
  std::string what;
};

LoadFailure load_failure(const std::string& path) {
  LoadFailure failure;
  try {
    (void)xgr::load_item_table(path);
  } catch (const xgr::Error& error) {
    failure.thrown = true;
    failure.kind = error.kind();
    failure.what = error.what();
  }
  return failure;
}

// Loading `path` fails with Error(io), naming the file and every one of `fragments`.
void check_io_error(const std::string& path, const std::vector<std::string>& fragments) {
  const LoadFailure failure = load_failure(path);
  INFO("file " << path << ": " << failure.what);
  REQUIRE(failure.thrown);
  CHECK(failure.kind == xgr::ErrorKind::io);
  CHECK(failure.what.find(path) != std::string::npos);
  for (const std::string& fragment : fragments) {
    INFO("expected in the message: '" << fragment << "'");
    CHECK(failure.what.find(fragment) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("text and binary files round-trip item tables") {
  TempDir dir;
  std::mt19937_64 rng = xgr::test::make_rng(401);
  for (int trial = 0; trial < 24; ++trial) {
    const std::size_t levels = 1 + static_cast<std::size_t>(trial % 8);
    std::vector<std::uint32_t> codebooks(levels);
    for (auto& size : codebooks) size = trial % 5 == 0 ? 65536u : std::uniform_int_distribution<std::uint32_t>(1, 1000)(rng);
    const std::size_t items = trial % 6 == 0 ? 0 : std::uniform_int_distribution<std::size_t>(1, 3000)(rng);
    xgr::ItemTable table = xgr::test::random_item_table(rng, codebooks, items, 0.05);
    if (items >= 2) {  // the extreme ids
      table.item_ids[0] = 0;
      table.item_ids[1] = 0xffffffffffffffffull;
    }
    for (const auto format : {xgr::ItemFileFormat::text, xgr::ItemFileFormat::binary}) {
      const std::string path = dir.file("table_" + std::to_string(trial) + (format == xgr::ItemFileFormat::text ? ".txt" : ".bin"));
      xgr::save_item_table(path, table, format);
      const xgr::ItemTable loaded = xgr::load_item_table(path);
      INFO("trial " << trial << ", " << path);
      CHECK(same_table(loaded, table));
      // Same trie either way.
      const xgr::ItemTrie a = xgr::build_item_trie(loaded);
      const xgr::ItemTrie b = xgr::build_item_trie(table);
      CHECK(std::vector<xgr::ItemId>(a.item_ids().begin(), a.item_ids().end()) ==
            std::vector<xgr::ItemId>(b.item_ids().begin(), b.item_ids().end()));
    }
  }
}

TEST_CASE("binary files are little-endian with the documented layout") {
  TempDir dir;
  const xgr::ItemTable table{{256, 3}, {0x0102030405060708ull}, {255, 2}};
  const std::string path = dir.file("layout.bin");
  xgr::save_item_table(path, table, xgr::ItemFileFormat::binary);
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(bytes == binary_file({256, 3}, 1, {{0x0102030405060708ull, 255, 2}}));
}

TEST_CASE("text files may carry comments, blank lines and any whitespace") {
  TempDir dir;
  const std::string path = dir.file("commented.txt");
  write_file(path,
             "# a catalogue of three items\n"
             "\n"
             "   xgr-items 1   # magic and version\n"
             "codebook\t256 256  256\r\n"
             "\n"
             "1001 17 250 3\n"
             "  # an indented comment\n"
             "1002\t17 250 4   # trailing comment\n"
             "18446744073709551615 0 0 255\r\n"
             "\n");
  const xgr::ItemTable loaded = xgr::load_item_table(path);
  const xgr::ItemTable want{{256, 256, 256}, {1001, 1002, 18446744073709551615ull}, {17, 250, 3, 17, 250, 4, 0, 0, 255}};
  CHECK(same_table(loaded, want));
  // A header and no items is an empty table.
  write_file(path, "xgr-items 1\ncodebook 8 8\n");
  const xgr::ItemTable empty = xgr::load_item_table(path);
  CHECK(empty.codebook_sizes == std::vector<std::uint32_t>{8, 8});
  CHECK(empty.size() == 0);
}

TEST_CASE("malformed text files throw Error(io) naming the file, the line and the problem") {
  TempDir dir;
  const std::string header = "xgr-items 1\ncodebook 4 4 4\n";
  struct Case {
    const char* name;
    std::string content;
    std::vector<std::string> fragments;
  };
  const std::vector<Case> cases = {
      {"empty", "", {"missing header"}},
      {"only comments", "# nothing\n\n", {"missing header"}},
      {"wrong magic", "xgr-itemz 1\ncodebook 4\n0 1\n", {"line 1", "xgr-items 1"}},
      {"wrong version", "xgr-items 2\ncodebook 4\n", {"line 1", "xgr-items 1"}},
      {"magic only", "xgr-items 1\n", {"missing header"}},
      {"no codebook line", "xgr-items 1\n7 1 2 3\n", {"line 2", "codebook"}},
      {"codebook without sizes", "xgr-items 1\ncodebook\n", {"got 0"}},
      {"codebook size 0", "xgr-items 1\ncodebook 4 0\n", {"level 1", "got 0"}},
      {"codebook size 65537", "xgr-items 1\ncodebook 65537\n", {"level 0", "65537"}},
      {"codebook size not a number", "xgr-items 1\ncodebook 4 x4\n", {"line 2", "'x4'"}},
      {"nine levels", "xgr-items 1\ncodebook 2 2 2 2 2 2 2 2 2\n", {"got 9"}},
      {"too few codes", header + "1 0 1 2\n2 0 1\n", {"line 4", "3 codes", "got 3 fields"}},
      {"too many codes", header + "# comment\n\n1 0 1 2 3\n", {"line 5", "got 5 fields"}},
      {"id only", header + "1\n", {"line 3", "got 1 fields"}},
      {"code out of range", header + "1 0 1 2\n2 0 4 0\n", {"line 4", "'4'", "level 1", "codebook size 4"}},
      {"negative code", header + "1 0 -1 2\n", {"line 3", "'-1'"}},
      {"fractional code", header + "1 0 1.5 2\n", {"line 3", "'1.5'"}},
      {"code not a number", header + "1 0 one 2\n", {"line 3", "'one'"}},
      {"code past 32 bits", header + "1 0 4294967296 2\n", {"line 3", "'4294967296'"}},
      {"id not a number", header + "x1 0 1 2\n", {"line 3", "item id 'x1'"}},
      {"id past 64 bits", header + "18446744073709551616 0 1 2\n", {"line 3", "item id"}},
  };
  for (const Case& c : cases) {
    INFO("case: " << c.name);
    const std::string path = dir.file("bad.txt");
    write_file(path, c.content);
    check_io_error(path, c.fragments);
  }
}

TEST_CASE("malformed binary files throw Error(io) naming the file and the problem") {
  TempDir dir;
  const std::vector<std::uint32_t> codebooks{4, 300};
  const std::vector<std::vector<std::uint64_t>> records{{10, 0, 299}, {11, 3, 0}, {12, 1, 1}};
  const std::string good = binary_file(codebooks, 3, records);
  const std::string path = dir.file("bad.bin");
  write_file(path, good);
  CHECK(xgr::load_item_table(path).size() == 3);

  SUBCASE("wrong version") {
    write_file(path, binary_file(codebooks, 3, records, 2));
    check_io_error(path, {"version 2"});
  }
  SUBCASE("zero or nine levels") {
    write_file(path, binary_file({}, 0, {}));
    check_io_error(path, {"level count 0"});
    write_file(path, binary_file(std::vector<std::uint32_t>(9, 2), 0, {}));
    check_io_error(path, {"level count 9"});
  }
  SUBCASE("codebook size out of range") {
    write_file(path, binary_file({4, 0}, 0, {}));
    check_io_error(path, {"level 1", "got 0"});
    write_file(path, binary_file({65537}, 0, {}));
    check_io_error(path, {"level 0", "65537"});
  }
  SUBCASE("truncated anywhere") {
    // Every prefix of a valid file is an error (the first 8 bytes alone are not even a binary
    // magic then, but read as a text file without its header).
    for (std::size_t length = 0; length < good.size(); ++length) {
      write_file(path, good.substr(0, length));
      const LoadFailure failure = load_failure(path);
      INFO("truncated to " << length << " of " << good.size() << " bytes: " << failure.what);
      CHECK(failure.thrown);
      CHECK(failure.kind == xgr::ErrorKind::io);
    }
    write_file(path, good.substr(0, good.size() - 1));
    check_io_error(path, {"announces 3 items", "too short"});
    write_file(path, good.substr(0, 8 + 4 + 4 + 4));  // the header stops inside the codebook sizes
    check_io_error(path, {"truncated header"});
  }
  SUBCASE("an item count larger than the file") {
    write_file(path, binary_file(codebooks, std::uint64_t{1} << 60, records));
    check_io_error(path, {"too short"});
    write_file(path, binary_file(codebooks, 4, records));
    check_io_error(path, {"announces 4 items"});
  }
  SUBCASE("code out of range") {
    write_file(path, binary_file(codebooks, 3, {{10, 0, 299}, {11, 3, 300}, {12, 1, 1}}));
    check_io_error(path, {"item 11", "code 300", "level 1", "codebook size 300"});
  }
  SUBCASE("wrong magic") {
    // Printable but wrong: the bytes after it are binary (the version's zero bytes), so the file is
    // reported as neither format, naming the magic it lacks.
    write_file(path, binary_file(codebooks, 3, records, 1, "XGRITEMZ"));
    check_io_error(path, {"XGRITEMS", "damaged"});
    // A magic with a control byte in it: the same.
    write_file(path, binary_file(codebooks, 3, records, 1, "XGR\x01TEMS"));
    check_io_error(path, {"XGRITEMS", "damaged"});
  }
}

TEST_CASE("missing files and unwritable paths throw Error(io)") {
  TempDir dir;
  check_io_error(dir.file("does_not_exist.txt"), {"cannot open"});
  const xgr::ItemTable table{{4}, {1}, {2}};
  try {
    xgr::save_item_table(dir.file("no_such_dir/table.txt"), table, xgr::ItemFileFormat::text);
    FAIL("saving into a missing directory succeeded");
  } catch (const xgr::Error& error) {
    CHECK(error.kind() == xgr::ErrorKind::io);
  }
  // A table whose codes do not match its shape is a caller error, not an I/O one.
  const xgr::ItemTable ragged{{4, 4}, {1}, {2}};
  try {
    xgr::save_item_table(dir.file("ragged.txt"), ragged, xgr::ItemFileFormat::binary);
    FAIL("a ragged table was saved");
  } catch (const xgr::Error& error) {
    CHECK(error.kind() == xgr::ErrorKind::invalid_argument);
  }
}

TEST_CASE("random corruptions of item files either load a valid table or throw Error(io)") {
  // Byte changes, insertions and deletions anywhere in a text and a binary file: a file that still
  // loads yields a table that builds a trie; anything else is Error(io), never another exception,
  // a crash or an out-of-bounds read (the `sanitize` preset runs this under AddressSanitizer).
  TempDir dir;
  std::mt19937_64 rng = xgr::test::make_rng(411);
  const xgr::ItemTable table = xgr::test::random_item_table(rng, std::vector<std::uint32_t>{300, 40, 7}, 60, 0.1);
  for (const auto format : {xgr::ItemFileFormat::text, xgr::ItemFileFormat::binary}) {
    const std::string path = dir.file(format == xgr::ItemFileFormat::text ? "table.txt" : "table.bin");
    xgr::save_item_table(path, table, format);
    std::ifstream in(path, std::ios::binary);
    const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::size_t loaded = 0;
    for (int trial = 0; trial < 1000; ++trial) {
      write_file(path, xgr::test::corrupted(good, rng, "0123456789 \t\n#-+x", trial % 2 == 0));
      try {
        const xgr::ItemTable corrupted = xgr::load_item_table(path);
        ++loaded;
        const xgr::ItemTrie trie = xgr::build_item_trie(corrupted);
        CHECK(trie.item_ids().size() == corrupted.size());
      } catch (const xgr::Error& error) {
        INFO("trial " << trial << ": " << error.what());
        CHECK(error.kind() == xgr::ErrorKind::io);
      }
    }
    MESSAGE(std::string(format == xgr::ItemFileFormat::text ? "text" : "binary") << ": " << loaded
                                                                                 << " of 1000 corruptions still loaded");
  }
}
