// xgr/core/config.hpp — compiler portability macros shared by host and device code.
//
// Every xgr header that may be compiled by nvcc as well as by a plain C++20 compiler includes this
// first. Nothing here pulls in CUDA headers: a host-only build never sees them.
#pragma once

#define XGR_VERSION_MAJOR 0
#define XGR_VERSION_MINOR 1
#define XGR_VERSION_PATCH 0

#if defined(__CUDACC__)
#define XGR_HOST_DEVICE __host__ __device__
#define XGR_DEVICE __device__
#else
#define XGR_HOST_DEVICE
#define XGR_DEVICE
#endif

// Inside a function compiled for both sides, true only in the device pass.
#if defined(__CUDA_ARCH__)
#define XGR_DEVICE_PASS 1
#else
#define XGR_DEVICE_PASS 0
#endif
