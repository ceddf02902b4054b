// Test files: a temporary directory removed with its contents, and writing raw bytes.
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <system_error>

#include "support/random.hpp"

namespace xgr::test {

// A fresh directory under the system's temporary directory, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    std::random_device entropy;
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "_" + std::to_string(entropy()) + "_" + std::to_string(base_seed() % 100000));
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

// `bytes` with one to three random edits: a byte changed, inserted or deleted. The new bytes come
// from `alphabet` (a format's own characters, which reach deeper into a parser) or, with
// `any_byte`, from all 256 values.
inline std::string corrupted(std::string bytes, std::mt19937_64& rng, std::string_view alphabet, bool any_byte) {
  const int edits = std::uniform_int_distribution<int>(1, 3)(rng);
  for (int i = 0; i < edits && !bytes.empty(); ++i) {
    const std::size_t at = std::uniform_int_distribution<std::size_t>(0, bytes.size() - 1)(rng);
    const char byte = any_byte ? static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng))
                               : alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)];
    switch (std::uniform_int_distribution<int>(0, 2)(rng)) {
      case 0: bytes[at] = byte; break;
      case 1: bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), byte); break;
      default: bytes.erase(at, 1); break;
    }
  }
  return bytes;
}

}  // namespace xgr::test
