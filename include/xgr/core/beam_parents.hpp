// xgr/core/beam_parents.hpp — the one struct BeamSearcher and KvPool agree on.
//
// A decode step reorders beams: new beam row j continues the sequence of some parent row of the
// previous step. The searcher emits that map, the KV cache records it (KvPool stores the indices,
// the copy-on-fork baseline copies KV along it), and nobody moves the prompt's KV.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace xgr {

// Marks an ancestry entry with no parent (a dead beam); equal to BeamSearcher's no_trie_node.
inline constexpr std::uint32_t no_parent = 0xffffffffu;

// One decode step's beam reordering, in the form BeamSearcher::parents(level) emits and
// KvPool::record_parents consumes: for every row of the batch (rows laid out as the searcher's slots,
// request r owning rows [row_begin(r), row_begin(r) + B_r)), the batch-global row of its parent at
// the previous step, or no_parent for a slot left dead. On a CUDA searcher the rows are device memory.
struct BeamParents {
  std::span<const std::uint32_t> parent_rows;
  std::size_t level = 0;
};

}  // namespace xgr
