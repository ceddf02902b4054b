// xgr/core/memory.hpp — owning buffers in host, pinned-host or device memory.
//
// `Buffer<T, Space>` is a move-only, fixed-size array: it allocates once in its constructor and never
// grows, which is what every xgr primitive wants (sizes are declared up front, the hot path never
// allocates). Host memory is defined here; pinned and device memory need the CUDA runtime, so their
// allocators are defined in `xgr/core/cuda.cuh` and `Buffer<T, MemorySpace::device>` is usable only
// from CUDA translation units.
#pragma once

#include <cstddef>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "xgr/core/error.hpp"

namespace xgr {

enum class MemorySpace {
  host,    // pageable host memory
  pinned,  // page-locked host memory: the source/target of truly asynchronous copies
  device,  // global memory of the current CUDA device
};

[[nodiscard]] constexpr std::string_view to_string(MemorySpace space) noexcept {
  switch (space) {
    case MemorySpace::host: return "host";
    case MemorySpace::pinned: return "pinned";
    case MemorySpace::device: return "device";
  }
  return "?";
}

// Alignment of every Buffer and workspace carve: wide enough for 16-byte vector loads, TMA tiles
// and cache lines alike.
inline constexpr std::size_t memory_alignment = 256;

// allocate(bytes) returns non-null or throws Error(out_of_memory); deallocate(nullptr) is a no-op.
template <MemorySpace Space>
struct SpaceAllocator;

template <>
struct SpaceAllocator<MemorySpace::host> {
  static void* allocate(std::size_t bytes) {
    void* pointer = ::operator new(bytes, std::align_val_t{memory_alignment}, std::nothrow);
    if (pointer == nullptr) {
      throw Error(ErrorKind::out_of_memory, "host allocation of " + std::to_string(bytes) + " bytes",
                  "operator new returned null");
    }
    return pointer;
  }
  static void deallocate(void* pointer) noexcept { ::operator delete(pointer, std::align_val_t{memory_alignment}); }
};

// Defined in xgr/core/cuda.cuh.
template <>
struct SpaceAllocator<MemorySpace::pinned>;
template <>
struct SpaceAllocator<MemorySpace::device>;

template <class T, MemorySpace Space>
class Buffer {
  static_assert(std::is_trivially_copyable_v<T>, "Buffer holds trivially copyable elements (they may live on the device)");
  static_assert(alignof(T) <= memory_alignment);

 public:
  using value_type = T;
  static constexpr MemorySpace space = Space;

  Buffer() noexcept = default;

  // Allocates `count` uninitialised elements; zero elements allocate nothing.
  explicit Buffer(std::size_t count) : size_(count) {
    const std::size_t bytes = detail::checked_bytes(count, sizeof(T), "Buffer: allocate");
    if (bytes != 0) data_ = static_cast<T*>(SpaceAllocator<Space>::allocate(bytes));
  }

  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  Buffer(Buffer&& other) noexcept : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }

  ~Buffer() { release(); }

  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t bytes() const noexcept { return size_ * sizeof(T); }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

  // A span over the elements. Dereferencing it on the host is valid only for host and pinned
  // buffers; for device buffers it is a (pointer, size) pair to hand to kernels and copies.
  [[nodiscard]] std::span<T> span() noexcept { return {data_, size_}; }
  [[nodiscard]] std::span<const T> span() const noexcept { return {data_, size_}; }

  // Element access, host-visible spaces only.
  T& operator[](std::size_t i) noexcept
    requires(Space != MemorySpace::device)
  {
    return data_[i];
  }
  const T& operator[](std::size_t i) const noexcept
    requires(Space != MemorySpace::device)
  {
    return data_[i];
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) SpaceAllocator<Space>::deallocate(data_);
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

template <class T>
using HostBuffer = Buffer<T, MemorySpace::host>;
template <class T>
using PinnedBuffer = Buffer<T, MemorySpace::pinned>;
template <class T>
using DeviceBuffer = Buffer<T, MemorySpace::device>;

}  // namespace xgr
