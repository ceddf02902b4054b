// xgr/topk/policies.hpp — selection algorithms, chosen at compile time.
//
// All policies compute the same function (bit-identical results); they differ in how much of the
// input they read, sort and write. The baselines exist so that every speed-up of the default is
// measurable side by side in one binary.
#pragma once

namespace xgr::topk {

// Default. A cheap exact top-k over an evenly spread sample of each group gives a lower bound of the
// group's k-th key; one streaming pass keeps only candidates at or above it (and skips rows whose
// score bound cannot reach it); a final exact selection over the few survivors gives the result.
struct EarlyExit {};

// Baseline: no bound. One block per group selects directly over all of the group's candidates,
// re-reading the input once per range-splitting pass.
struct NoEarlyExit {};

// Baseline: materialise every candidate key and sort each group completely (CUB segmented radix
// sort), then take the first k.
struct FullSort {};

// Baseline: exact top-k of every row on its own, then a top-k over the rows x k row winners.
struct RowTopKThenMerge {};

}  // namespace xgr::topk
