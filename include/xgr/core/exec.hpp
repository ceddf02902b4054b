// xgr/core/exec.hpp — execution tags that pick an implementation.
//
// Every primitive offers one interface with two implementations: `run(exec::host, ...)` is the
// readable reference, `run(exec::cuda{stream}, ...)` enqueues device work on `stream` and returns
// without synchronising. The tag is a value, so the choice is explicit at every call site.
#pragma once

// The CUDA runtime's stream handle is a pointer to this opaque struct (`cudaStream_t` is
// `CUstream_st*`); naming it here keeps this header free of CUDA includes.
struct CUstream_st;

namespace xgr::exec {

struct host_t {
  explicit constexpr host_t() = default;
};
inline constexpr host_t host{};

struct cuda {
  CUstream_st* stream = nullptr;  // null is the legacy default stream
};

template <class Exec>
inline constexpr bool is_host_v = false;
template <>
inline constexpr bool is_host_v<host_t> = true;

template <class Exec>
inline constexpr bool is_cuda_v = false;
template <>
inline constexpr bool is_cuda_v<cuda> = true;

}  // namespace xgr::exec
