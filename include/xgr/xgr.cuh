// xgr/xgr.cuh — umbrella header for CUDA translation units: the host part plus device code.
#pragma once

#include "xgr/xgr.hpp"
#include "xgr/core/cuda.cuh"
#include "xgr/topk/cuda.cuh"
#include "xgr/items/cuda.cuh"
#include "xgr/beam/cuda.cuh"
#include "xgr/kv/cuda.cuh"
#include "xgr/attention/cuda.cuh"
#include "xgr/pipeline/cuda.cuh"
