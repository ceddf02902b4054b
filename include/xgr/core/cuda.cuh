// xgr/core/cuda.cuh — the CUDA half of the core: error checking, device memory, streams, events.
//
// Include only from CUDA translation units (.cu). Every CUDA runtime call xgr makes goes through
// XGR_CUDA_CHECK, so a failure anywhere surfaces as one `xgr::Error` naming the call, the CUDA
// error and the source location, never as a silently ignored status code.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "xgr/core/error.hpp"
#include "xgr/core/exec.hpp"
#include "xgr/core/memory.hpp"

namespace xgr {
namespace detail {

inline void cuda_check(cudaError_t status, const char* expression, const char* file, int line) {
  if (status == cudaSuccess) return;
  // Non-sticky errors (a failed allocation, a bad launch configuration) would otherwise be
  // reported again by the next unrelated cudaGetLastError(); consume them here.
  (void)cudaGetLastError();
  throw Error(ErrorKind::cuda, std::string(expression) + " at " + file + ":" + std::to_string(line),
              std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status));
}

}  // namespace detail
}  // namespace xgr

// Turns a failed CUDA runtime call into xgr::Error(kind = cuda).
#define XGR_CUDA_CHECK(expression) ::xgr::detail::cuda_check((expression), #expression, __FILE__, __LINE__)

// Checks the launch that just happened (configuration errors surface only through the last error).
#define XGR_CUDA_CHECK_LAUNCH() ::xgr::detail::cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

namespace xgr {

template <>
struct SpaceAllocator<MemorySpace::device> {
  static void* allocate(std::size_t bytes) {
    void* pointer = nullptr;
    const cudaError_t status = cudaMalloc(&pointer, bytes);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      throw Error(status == cudaErrorMemoryAllocation ? ErrorKind::out_of_memory : ErrorKind::cuda,
                  "cudaMalloc of " + std::to_string(bytes) + " bytes",
                  std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status));
    }
    return pointer;
  }
  // Frees never throw: a destructor may run during unwinding from an earlier CUDA error.
  static void deallocate(void* pointer) noexcept { (void)cudaFree(pointer); }
};

template <>
struct SpaceAllocator<MemorySpace::pinned> {
  static void* allocate(std::size_t bytes) {
    void* pointer = nullptr;
    const cudaError_t status = cudaMallocHost(&pointer, bytes);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      throw Error(status == cudaErrorMemoryAllocation ? ErrorKind::out_of_memory : ErrorKind::cuda,
                  "cudaMallocHost of " + std::to_string(bytes) + " bytes",
                  std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status));
    }
    return pointer;
  }
  static void deallocate(void* pointer) noexcept { (void)cudaFreeHost(pointer); }
};

// Number of usable CUDA devices; 0 (not an error) where there is no device or no driver, so that
// callers can fall back to the host path or skip.
[[nodiscard]] inline int cuda_device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

namespace detail {

// Vector elements loaded or stored as one aligned access (16 bytes: four floats, eight halves).
template <int Vector, class T>
struct alignas(sizeof(T) * Vector) VectorOf {
  T element[Vector];
};

// Programmatic dependent launch (compute capability 9.0 and later). A kernel started with
// launch_overlapping() may become resident while the kernel before it in the stream is still
// running, once every block of that kernel has called allow_dependent_launch() or exited; it may
// do work that does not depend on that kernel (index arithmetic, loading its own inputs) and must
// call wait_for_prior_grid() in every block before it reads or writes anything that kernel writes.
// The wait returns once the prior grid has completed and its writes are visible. On older devices
// both calls compile to nothing and the launch is ordinary stream order.
__device__ inline void wait_for_prior_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ inline void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Counters in global memory that hand work from the blocks of one kernel to those of another
// running at the same time, finer than wait_for_prior_grid()'s whole grid. A writer publishes with
// publish_count() after its writes (and, behind a block barrier, its block's); a reader that
// await_count() returns to sees those writes, and so do the threads of its block after a barrier
// (release / acquire at GPU scope). A block may wait only on blocks that are sure to run: those of
// its own grid that are resident, or those of an earlier kernel it was launched overlapping (a
// programmatic dependent launch starts only after every block of the kernel before it has called
// allow_dependent_launch(), that is, is running). Compute capability 7.0 and later.
__device__ inline void publish_count(std::uint32_t* counter, std::uint32_t value) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(counter), "r"(value) : "memory");
#endif
}

__device__ inline std::uint32_t load_count(const std::uint32_t* counter) {
  std::uint32_t value = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(value) : "l"(counter) : "memory");
#endif
  return value;
}

// Returns once *counter >= target. The back-off stays short: the wait is on the critical path, and
// the readers are a few per multiprocessor.
__device__ inline void await_count(const std::uint32_t* counter, std::uint32_t target) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  unsigned pause = 32;
  while (load_count(counter) < target) {
    __nanosleep(pause);
    pause = pause < 256 ? pause * 2 : pause;
  }
#else
  (void)counter;
  (void)target;
#endif
}

// Whether the current device runs programmatic dependent launches (a cheap attribute query).
[[nodiscard]] inline bool overlapping_launch_supported() {
  int device = 0;
  XGR_CUDA_CHECK(cudaGetDevice(&device));
  int major = 0;
  XGR_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 9;
}

// The current device's multiprocessor count.
[[nodiscard]] inline int multiprocessor_count() {
  int device = 0;
  XGR_CUDA_CHECK(cudaGetDevice(&device));
  int count = 0;
  XGR_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

// Whether the current device launches thread block clusters (launch_with's cluster_blocks).
[[nodiscard]] inline bool cluster_launch_supported() { return overlapping_launch_supported(); }

// How launch_with() launches a kernel, beyond its grid.
struct LaunchOptions {
  // A programmatic dependent launch of the previous work in the stream (see above): every block
  // of the kernel must call wait_for_prior_grid() before touching what that work writes. Ignored
  // (ordinary stream order) on devices without it.
  bool overlapping = false;
  // Blocks per thread block cluster, along x (compute capability 9.0 and later; the grid's x must
  // be a multiple). 1: no clusters.
  unsigned cluster_blocks = 1;
};

template <class... Parameters, class... Arguments>
void launch_with(const LaunchOptions& options, void (*kernel)(Parameters...), dim3 grid, dim3 block, std::size_t shared_bytes,
                 cudaStream_t stream, Arguments&&... arguments) {
  cudaLaunchAttribute attributes[2]{};
  unsigned count = 0;
  if (options.overlapping && overlapping_launch_supported()) {
    attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[count].val.programmaticStreamSerializationAllowed = 1;
    ++count;
  }
  if (options.cluster_blocks > 1) {
    attributes[count].id = cudaLaunchAttributeClusterDimension;
    attributes[count].val.clusterDim.x = options.cluster_blocks;
    attributes[count].val.clusterDim.y = 1;
    attributes[count].val.clusterDim.z = 1;
    ++count;
  }
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = attributes;
  config.numAttrs = count;
  XGR_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Arguments>(arguments)...));
}

// Launches `kernel` as a programmatic dependent of the previous work in `stream` (see above).
template <class... Parameters, class... Arguments>
void launch_overlapping(void (*kernel)(Parameters...), dim3 grid, dim3 block, std::size_t shared_bytes, cudaStream_t stream,
                        Arguments&&... arguments) {
  launch_with(LaunchOptions{.overlapping = true}, kernel, grid, block, shared_bytes, stream, std::forward<Arguments>(arguments)...);
}

// Bulk copies from global to shared memory completed on an mbarrier (the tensor memory
// accelerator's one-dimensional form; compute capability 9.0 and later). A copy of `bytes` (a
// multiple of 16, both addresses 16-byte aligned) is issued by one thread after it arrives on the
// barrier expecting that many bytes; threads waiting on the barrier's phase see the data once it
// has landed. Kernels call these only under __CUDA_ARCH__ >= 900.
__device__ inline std::uint32_t shared_address_of(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

__device__ inline void mbarrier_init(std::uint64_t* barrier, std::uint32_t arrivals) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(shared_address_of(barrier)), "r"(arrivals) : "memory");
#endif
}

// Makes initialised barriers visible to the copy engine (the async proxy) before any copy uses them.
__device__ inline void fence_barrier_init() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

__device__ inline void mbarrier_arrive_expect_bytes(std::uint64_t* barrier, std::uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(shared_address_of(barrier)), "r"(bytes) : "memory");
#endif
}

__device__ inline void mbarrier_arrive(std::uint64_t* barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(shared_address_of(barrier)) : "memory");
#endif
}

// Waits until the barrier's phase of the given parity (0 for its first phase, 1 for its second, ...)
// has completed.
__device__ inline void mbarrier_wait(std::uint64_t* barrier, std::uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  std::uint32_t done = 0;
  do {
    asm volatile(
        "{\n .reg .pred complete;\n mbarrier.try_wait.parity.shared::cta.b64 complete, [%1], %2;\n selp.u32 %0, 1, 0, complete;\n}"
        : "=r"(done)
        : "r"(shared_address_of(barrier)), "r"(parity)
        : "memory");
  } while (done == 0);
#endif
}

__device__ inline void bulk_copy_to_shared(void* target, const void* source, std::uint32_t bytes, std::uint64_t* barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(shared_address_of(target)),
               "l"(source), "r"(bytes), "r"(shared_address_of(barrier))
               : "memory");
#endif
}

// Thread block clusters (compute capability 9.0 and later; launch_with's cluster_blocks): the
// block's rank in its cluster and the cluster's block count, a barrier over the cluster (release /
// acquire: shared memory writes before it, local or remote, are visible to every block of the
// cluster after it), and distributed shared memory with its state space spelled out: addresses of
// another block's shared memory in the shared::cluster window, atomics and stores to them. Kernels
// call these only under __CUDA_ARCH__ >= 900.
__device__ inline unsigned cluster_block_rank() {
  unsigned rank = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
#endif
  return rank;
}

__device__ inline unsigned cluster_block_count() {
  unsigned count = 1;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(count));
#endif
  return count;
}

__device__ inline void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}

// The same barrier split in two, with no ordering of memory: another block's shared memory may be
// accessed only once that block has started, so a kernel whose first cluster access comes after
// some work of its own arrives at entry and waits just before that access, and the work hides the
// wait. Every thread of the block calls both, arrive first.
__device__ inline void cluster_arrive_relaxed() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
}

__device__ inline void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#endif
}

// The address of `pointer` (this block's shared memory) in block `rank` of the cluster.
__device__ inline std::uint32_t cluster_shared_address(const void* pointer, unsigned rank) {
  std::uint32_t mapped = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(mapped) : "r"(shared_address_of(pointer)), "r"(rank));
#endif
  return mapped;
}

__device__ inline std::uint32_t cluster_atomic_add(std::uint32_t address, std::uint32_t value) {
  std::uint32_t old = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("atom.shared::cluster.add.u32 %0, [%1], %2;" : "=r"(old) : "r"(address), "r"(value) : "memory");
#endif
  return old;
}

__device__ inline void cluster_atomic_max(std::uint32_t address, std::uint32_t value) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("red.shared::cluster.max.u32 [%0], %1;" ::"r"(address), "r"(value) : "memory");
#endif
}

__device__ inline void cluster_atomic_min(std::uint32_t address, std::uint32_t value) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("red.shared::cluster.min.u32 [%0], %1;" ::"r"(address), "r"(value) : "memory");
#endif
}

__device__ inline std::uint32_t cluster_load(std::uint32_t address) {
  std::uint32_t value = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("ld.shared::cluster.u32 %0, [%1];" : "=r"(value) : "r"(address) : "memory");
#endif
  return value;
}

__device__ inline void cluster_store(std::uint32_t address, std::uint64_t value) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("st.shared::cluster.u64 [%0], %1;" ::"r"(address), "l"(value) : "memory");
#endif
}

__device__ inline void cluster_store(std::uint32_t address, std::uint32_t value) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("st.shared::cluster.u32 [%0], %1;" ::"r"(address), "r"(value) : "memory");
#endif
}

}  // namespace detail

// RAII CUDA stream. Non-blocking by default: xgr never relies on implicit legacy-stream sync.
class Stream {
 public:
  explicit Stream(unsigned flags = cudaStreamNonBlocking, int priority = 0) {
    XGR_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, flags, priority));
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  Stream& operator=(Stream&& other) noexcept {
    if (this != &other) {
      destroy();
      stream_ = std::exchange(other.stream_, nullptr);
    }
    return *this;
  }
  ~Stream() { destroy(); }

  [[nodiscard]] cudaStream_t get() const noexcept { return stream_; }
  [[nodiscard]] exec::cuda exec() const noexcept { return exec::cuda{stream_}; }
  void synchronize() const { XGR_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  void destroy() noexcept {
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }
  cudaStream_t stream_ = nullptr;
};

// RAII CUDA event. Timing is on by default (it is what benchmarks need); pass
// cudaEventDisableTiming for pure dependency edges, which are cheaper to record and wait on.
class Event {
 public:
  explicit Event(unsigned flags = cudaEventDefault) { XGR_CUDA_CHECK(cudaEventCreateWithFlags(&event_, flags)); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
  Event& operator=(Event&& other) noexcept {
    if (this != &other) {
      destroy();
      event_ = std::exchange(other.event_, nullptr);
    }
    return *this;
  }
  ~Event() { destroy(); }

  [[nodiscard]] cudaEvent_t get() const noexcept { return event_; }
  void record(cudaStream_t stream) { XGR_CUDA_CHECK(cudaEventRecord(event_, stream)); }
  void synchronize() const { XGR_CUDA_CHECK(cudaEventSynchronize(event_)); }
  // True when all work captured by the last record() has completed.
  [[nodiscard]] bool ready() const {
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaErrorNotReady) {
      (void)cudaGetLastError();
      return false;
    }
    XGR_CUDA_CHECK(status);
    return true;
  }
  // Makes `stream` wait (on the device, without blocking the host) for this event.
  void wait_on(cudaStream_t stream) const { XGR_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0)); }

  // Milliseconds between two recorded, completed events.
  [[nodiscard]] static float elapsed_ms(const Event& start, const Event& stop) {
    float ms = 0.0f;
    XGR_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, stop.event_));
    return ms;
  }

 private:
  void destroy() noexcept {
    if (event_ != nullptr) (void)cudaEventDestroy(event_);
    event_ = nullptr;
  }
  cudaEvent_t event_ = nullptr;
};

// Asynchronous copy between any two spans of equal size (host, pinned or device); cudaMemcpyDefault
// lets unified addressing pick the direction. Pageable host memory makes the copy synchronous
// with respect to the host: use pinned buffers on hot paths.
template <class T>
void copy_async(std::span<T> destination, std::span<const T> source, cudaStream_t stream) {
  require_argument(destination.size() == source.size(), "copy_async",
                   [&] { return "destination holds " + std::to_string(destination.size()) + " elements, source " +
                                    std::to_string(source.size()); });
  if (source.empty()) return;
  XGR_CUDA_CHECK(cudaMemcpyAsync(destination.data(), source.data(), source.size_bytes(), cudaMemcpyDefault, stream));
}

template <class T>
void copy_async(std::span<T> destination, std::span<T> source, cudaStream_t stream) {
  copy_async(destination, std::span<const T>(source), stream);
}

// Copies a host span into a new device buffer and waits for it: for set-up and tests, not hot paths.
// A pageable cudaMemcpy to the device may return once the source is staged, before the copy lands,
// and nothing orders it before work on a non-blocking stream: the default stream's sync closes that.
template <class T>
[[nodiscard]] DeviceBuffer<T> to_device(std::span<const T> host) {
  DeviceBuffer<T> device(host.size());
  if (!host.empty()) {
    XGR_CUDA_CHECK(cudaMemcpy(device.data(), host.data(), host.size_bytes(), cudaMemcpyHostToDevice));
    XGR_CUDA_CHECK(cudaStreamSynchronize(nullptr));
  }
  return device;
}

// Copies a device span into a new host buffer and waits for it: for set-up and tests, not hot paths.
template <class T>
[[nodiscard]] HostBuffer<T> to_host(std::span<const T> device) {
  HostBuffer<T> host(device.size());
  if (!device.empty()) XGR_CUDA_CHECK(cudaMemcpy(host.data(), device.data(), device.size_bytes(), cudaMemcpyDeviceToHost));
  return host;
}

}  // namespace xgr
