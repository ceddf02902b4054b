// xgr/xgr.hpp — umbrella header for the host part of xgr (plain C++20, no CUDA headers).
#pragma once

#include "xgr/core/config.hpp"
#include "xgr/core/dtype.hpp"
#include "xgr/core/error.hpp"
#include "xgr/core/exec.hpp"
#include "xgr/core/memory.hpp"
#include "xgr/core/view.hpp"
#include "xgr/core/workspace.hpp"
#include "xgr/topk/host.hpp"
#include "xgr/items/io.hpp"
#include "xgr/items/trie.hpp"
#include "xgr/beam/host.hpp"
#include "xgr/kv/pool.hpp"
#include "xgr/kv/copy_on_fork.hpp"
#include "xgr/kv/host.hpp"
#include "xgr/attention/host.hpp"
#include "xgr/pipeline/pipeline.hpp"
