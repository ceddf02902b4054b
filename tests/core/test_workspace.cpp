#include <doctest/doctest.h>

#include <cstdint>

#include "xgr/core/workspace.hpp"

namespace {

struct Shape {
  std::size_t rows;
  std::size_t k;
};

struct Scratch {
  float* row_bounds;
  int* indices;
  double* values;
};

// The pattern every primitive follows: one carve function for sizing and for use.
Scratch carve(xgr::WorkspaceArena& arena, Shape shape) {
  return {arena.take<float>(shape.rows), arena.take<int>(shape.rows * shape.k), arena.take<double>(shape.k)};
}

std::size_t workspace_bytes(Shape shape) {
  return xgr::workspace_bytes_of([&](xgr::WorkspaceArena& arena) { (void)carve(arena, shape); });
}

bool aligned(const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % xgr::memory_alignment == 0; }

}  // namespace

TEST_CASE("sizing counts exactly what the real carve uses") {
  for (const Shape shape : {Shape{1, 1}, Shape{3, 7}, Shape{128, 1024}, Shape{1000, 3}}) {
    const std::size_t bytes = workspace_bytes(shape);
    xgr::HostWorkspace workspace(bytes);
    xgr::WorkspaceArena arena = workspace.arena();
    const Scratch scratch = carve(arena, shape);
    CHECK(arena.used_bytes() == bytes);
    CHECK(aligned(scratch.row_bounds));
    CHECK(aligned(scratch.indices));
    CHECK(aligned(scratch.values));
    // Carves do not overlap: each starts after the previous one ends.
    CHECK(reinterpret_cast<std::byte*>(scratch.indices) >= reinterpret_cast<std::byte*>(scratch.row_bounds + shape.rows));
    CHECK(reinterpret_cast<std::byte*>(scratch.values) >= reinterpret_cast<std::byte*>(scratch.indices + shape.rows * shape.k));
    // The memory is really usable end to end.
    scratch.values[shape.k - 1] = 1.0;
    scratch.indices[shape.rows * shape.k - 1] = 7;
  }
}

TEST_CASE("a sizing arena hands out no memory") {
  xgr::WorkspaceArena arena = xgr::WorkspaceArena::sizing();
  CHECK(arena.is_sizing());
  CHECK(arena.take<float>(100) == nullptr);
  CHECK(arena.used_bytes() == 400);
  CHECK(arena.take<float>(0) == nullptr);
  CHECK(arena.used_bytes() == 400);
}

TEST_CASE("one workspace serves many calls of any shape up to its capacity") {
  const Shape largest{256, 512};
  xgr::HostWorkspace workspace(workspace_bytes(largest));
  std::byte* const base = workspace.data();
  for (const Shape shape : {Shape{1, 1}, largest, Shape{17, 33}, Shape{256, 1}}) {
    workspace.require(workspace_bytes(shape), "test");
    xgr::WorkspaceArena arena = workspace.arena();
    const Scratch scratch = carve(arena, shape);
    CHECK(reinterpret_cast<std::byte*>(scratch.row_bounds) == base);  // every call starts afresh
  }
  CHECK(workspace.data() == base);  // and nothing was reallocated
}

TEST_CASE("a carve beyond the capacity throws Error(capacity) and names the fix") {
  xgr::HostWorkspace workspace(workspace_bytes({4, 4}));
  CHECK_THROWS_AS(workspace.require(workspace_bytes({64, 64}), "test"), xgr::Error);
  xgr::WorkspaceArena arena = workspace.arena();
  try {
    (void)carve(arena, {64, 64});
    FAIL("over-capacity carve succeeded");
  } catch (const xgr::Error& error) {
    CHECK(error.kind() == xgr::ErrorKind::capacity);
    CHECK(error.reason().find("workspace_bytes") != std::string::npos);
  }
}

TEST_CASE("reserve grows only when needed") {
  xgr::HostWorkspace workspace(1000);
  CHECK(workspace.capacity_bytes() == 1024);  // rounded up to the alignment
  std::byte* const before = workspace.data();
  workspace.reserve(500);
  CHECK(workspace.data() == before);
  workspace.reserve(5000);
  CHECK(workspace.capacity_bytes() >= 5000);
}

TEST_CASE("an arena over unaligned or null memory is rejected") {
  alignas(256) std::byte storage[512];
  CHECK_THROWS_AS(xgr::WorkspaceArena(storage + 1, 256), xgr::Error);
  CHECK_THROWS_AS(xgr::WorkspaceArena(nullptr, 256), xgr::Error);
  CHECK_NOTHROW(xgr::WorkspaceArena(storage, 512));
}
