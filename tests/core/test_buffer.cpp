#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <utility>

#include "xgr/core/memory.hpp"

TEST_CASE("HostBuffer allocates aligned storage of the requested size") {
  xgr::HostBuffer<double> buffer(1000);
  CHECK(buffer.size() == 1000);
  CHECK(buffer.bytes() == 8000);
  CHECK(reinterpret_cast<std::uintptr_t>(buffer.data()) % xgr::memory_alignment == 0);
  for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<double>(i) * 0.5;
  CHECK(buffer.span()[999] == 499.5);
}

TEST_CASE("zero-sized and default buffers own nothing") {
  xgr::HostBuffer<int> empty(0);
  CHECK(empty.empty());
  CHECK(empty.data() == nullptr);
  xgr::HostBuffer<int> defaulted;
  CHECK(defaulted.size() == 0);
}

TEST_CASE("moving a buffer transfers ownership and empties the source") {
  xgr::HostBuffer<int> source(4);
  source[3] = 42;
  int* const storage = source.data();

  xgr::HostBuffer<int> moved(std::move(source));
  CHECK(moved.data() == storage);
  CHECK(moved[3] == 42);
  CHECK(source.data() == nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state is the contract
  CHECK(source.size() == 0);

  xgr::HostBuffer<int> assigned(2);
  assigned = std::move(moved);
  CHECK(assigned.data() == storage);
  CHECK(assigned.size() == 4);
  CHECK(moved.empty());

  assigned = std::move(assigned);  // self-move keeps the buffer intact
  CHECK(assigned.size() == 4);
  CHECK(assigned[3] == 42);
}

TEST_CASE("a size whose byte count overflows is an invalid argument, not a wrapped allocation") {
  const std::size_t count = std::numeric_limits<std::size_t>::max() / 2;
  try {
    xgr::HostBuffer<std::uint64_t> buffer(count);
    FAIL("allocation of an overflowing size succeeded");
  } catch (const xgr::Error& error) {
    CHECK(error.kind() == xgr::ErrorKind::invalid_argument);
  }
}

TEST_CASE("an allocation the host cannot satisfy is out_of_memory") {
  // 2^62 bytes is beyond any x86-64 or AArch64 user address space, so it fails even with overcommit.
  try {
    xgr::HostBuffer<std::byte> buffer(std::size_t{1} << 62);
    FAIL("allocation of 2^62 bytes succeeded");
  } catch (const xgr::Error& error) {
    CHECK(error.kind() == xgr::ErrorKind::out_of_memory);
  }
}
