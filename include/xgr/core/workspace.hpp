// xgr/core/workspace.hpp — scratch memory sized once and reused by every call.
//
// The contract is CUB's two-phase temporary storage, made reusable: a primitive describes its
// scratch as a sequence of typed carves from a `WorkspaceArena`. Run against a *sizing* arena (no
// memory) the same code yields `workspace_bytes(shape)`; run against an arena over a `Workspace`
// it yields the pointers. One code path for both means the size can never disagree with the use.
//
//   template <class Arena> static Scratch carve(Arena& arena, Shape s) {
//     return {arena.template take<float>(s.rows), arena.template take<int>(s.rows * s.k)};
//   }
//   std::size_t bytes = workspace_bytes_of([&](WorkspaceArena& a) { carve(a, shape); });
//
// A Workspace is allocated once (at start-up, for the largest shape a caller will use) and then
// serves any number of calls of any shape that fits; a call that does not fit fails with
// Error(capacity) before touching the device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "xgr/core/error.hpp"
#include "xgr/core/memory.hpp"

namespace xgr {

class WorkspaceArena {
 public:
  // An arena that hands out no memory and only counts the bytes the carves would need.
  [[nodiscard]] static WorkspaceArena sizing() noexcept { return WorkspaceArena(nullptr, static_cast<std::size_t>(-1), true); }

  // An arena over `capacity_bytes` bytes at `base` (aligned to memory_alignment).
  WorkspaceArena(std::byte* base, std::size_t capacity_bytes) : WorkspaceArena(base, capacity_bytes, false) {
    require_argument(base != nullptr || capacity_bytes == 0, "WorkspaceArena", "null base with non-zero capacity");
    require_argument(reinterpret_cast<std::uintptr_t>(base) % memory_alignment == 0, "WorkspaceArena",
                     [&] { return "base is not aligned to " + std::to_string(memory_alignment) + " bytes"; });
  }

  // Carves `count` elements of T, aligned to memory_alignment. Returns null in a sizing arena and
  // for count == 0. Throws Error(capacity) when the arena is too small.
  template <class T>
  [[nodiscard]] T* take(std::size_t count) {
    const std::size_t bytes = detail::checked_bytes(count, sizeof(T), "WorkspaceArena::take");
    if (bytes == 0) return nullptr;
    const std::size_t offset = align_up(used_bytes_);
    if (offset < used_bytes_ || offset > capacity_bytes_ || bytes > capacity_bytes_ - offset) {
      throw Error(ErrorKind::capacity, "WorkspaceArena::take " + std::to_string(bytes) + " bytes",
                  "workspace holds " + std::to_string(capacity_bytes_) + " bytes, " + std::to_string(offset) +
                      " already carved; size it with the primitive's workspace_bytes()");
    }
    used_bytes_ = offset + bytes;
    return sizing_ ? nullptr : reinterpret_cast<T*>(base_ + offset);
  }

  [[nodiscard]] std::size_t used_bytes() const noexcept { return used_bytes_; }
  [[nodiscard]] std::size_t capacity_bytes() const noexcept { return capacity_bytes_; }
  [[nodiscard]] bool is_sizing() const noexcept { return sizing_; }

 private:
  WorkspaceArena(std::byte* base, std::size_t capacity_bytes, bool sizing) noexcept
      : base_(base), capacity_bytes_(capacity_bytes), sizing_(sizing) {}

  static std::size_t align_up(std::size_t bytes) noexcept {
    return (bytes + memory_alignment - 1) / memory_alignment * memory_alignment;
  }

  std::byte* base_;
  std::size_t capacity_bytes_;
  std::size_t used_bytes_ = 0;
  bool sizing_;
};

// Runs `carve(WorkspaceArena&)` against a sizing arena and returns the bytes it needs.
template <class Carve>
[[nodiscard]] std::size_t workspace_bytes_of(Carve&& carve) {
  WorkspaceArena arena = WorkspaceArena::sizing();
  std::forward<Carve>(carve)(arena);
  return arena.used_bytes();
}

// Owning scratch memory in one space. Sized once; `arena()` starts a fresh carve for each call.
template <MemorySpace Space>
class Workspace {
 public:
  Workspace() = default;
  explicit Workspace(std::size_t capacity_bytes) : storage_(round_up(capacity_bytes)) {}

  [[nodiscard]] std::size_t capacity_bytes() const noexcept { return storage_.bytes(); }

  // Grows to at least `capacity_bytes` (reallocating, so call it at set-up, never per call);
  // does nothing when the workspace is already large enough.
  void reserve(std::size_t capacity_bytes) {
    if (capacity_bytes > storage_.bytes()) storage_ = Buffer<std::byte, Space>(round_up(capacity_bytes));
  }

  // Throws Error(capacity) unless `bytes` fit; primitives call it before launching anything.
  void require(std::size_t bytes, std::string_view user) const {
    if (bytes > capacity_bytes()) {
      throw Error(ErrorKind::capacity, std::string(user),
                  "needs a workspace of " + std::to_string(bytes) + " bytes, the one given holds " +
                      std::to_string(capacity_bytes()));
    }
  }

  [[nodiscard]] WorkspaceArena arena() { return WorkspaceArena(storage_.data(), storage_.bytes()); }
  [[nodiscard]] std::byte* data() noexcept { return storage_.data(); }

 private:
  static std::size_t round_up(std::size_t bytes) {
    if (bytes > static_cast<std::size_t>(-1) - memory_alignment) {
      throw Error(ErrorKind::invalid_argument, "Workspace", std::to_string(bytes) + " bytes is not a size");
    }
    return (bytes + memory_alignment - 1) / memory_alignment * memory_alignment;
  }

  Buffer<std::byte, Space> storage_;
};

using HostWorkspace = Workspace<MemorySpace::host>;
using DeviceWorkspace = Workspace<MemorySpace::device>;

}  // namespace xgr
