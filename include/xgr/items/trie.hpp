// xgr/items/trie.hpp — ItemTrie: the catalogue of valid items as a trie over their semantic-ID codes.
//
// Every item is a tuple of L codes (one per level, code < codebook_size[level]). Decoding may only
// extend a prefix that some item has, so the searcher asks one question per beam and step: "which
// codes may follow this prefix?". The trie answers it in O(1) and without pointers:
//
//   * Nodes are numbered breadth first. Depth d (0 = the root, L = complete items) owns the node ids
//     [level_begin[d], level_begin[d + 1]).
//   * Items are sorted by code tuple before the build, so the children of a node are consecutive ids,
//     sorted by code: node n's children are [child_begin[n], child_begin[n + 1]). One offset array
//     (CSR) serves every level, and a node's allowed codes are node_code[child_begin[n] ..].
//   * Finding the child with a given code searches those sorted codes, O(log fan-out) (see child()).
//   * Depth-L nodes (leaves) are complete tuples; leaf i owns item_ids[leaf_item_begin[i] ..
//     leaf_item_begin[i + 1]). Several items with the same tuple share a leaf (duplicates, reported
//     by the build); their ids keep the order of the input table.
//
// The arrays are plain, so the same `ItemTrieView` addresses a host copy (this header) or a device
// copy (xgr/items/cuda.cuh). Per-beam allowed sets come out as CSR token lists or as bitset rows,
// written into caller-owned buffers: nothing is allocated or rebuilt per step.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "xgr/core/config.hpp"
#include "xgr/core/error.hpp"
#include "xgr/core/exec.hpp"
#include "xgr/core/view.hpp"

namespace xgr {

using ItemId = std::uint64_t;

inline constexpr std::size_t max_item_levels = 8;
inline constexpr std::size_t max_codebook_size = std::size_t{1} << 16;
// "No node": a beam that is not live, or a code that no item has after the given prefix.
inline constexpr std::uint32_t no_trie_node = 0xffffffffu;

// The trie's arrays, host or device. Passed to kernels by value.
struct ItemTrieView {
  std::uint32_t levels = 0;
  const std::uint32_t* level_begin = nullptr;      // levels + 2 entries
  const std::uint32_t* child_begin = nullptr;      // (internal nodes = level_begin[levels]) + 1 entries
  const std::uint16_t* node_code = nullptr;        // one per node; the root's is 0
  const std::uint32_t* leaf_item_begin = nullptr;  // leaves + 1 entries
  const ItemId* item_ids = nullptr;                // items, sorted by code tuple

  [[nodiscard]] XGR_HOST_DEVICE std::uint32_t node_count() const noexcept { return level_begin[levels + 1]; }
  [[nodiscard]] XGR_HOST_DEVICE std::uint32_t first_leaf() const noexcept { return level_begin[levels]; }
  [[nodiscard]] XGR_HOST_DEVICE bool is_internal(std::uint32_t node) const noexcept { return node < first_leaf(); }

  // The children of `node` are the node ids [children_begin, children_end); none for leaves and
  // for no_trie_node (a dead end yields no candidates).
  [[nodiscard]] XGR_HOST_DEVICE std::uint32_t children_begin(std::uint32_t node) const noexcept {
    return is_internal(node) ? child_begin[node] : 0;
  }
  [[nodiscard]] XGR_HOST_DEVICE std::uint32_t children_end(std::uint32_t node) const noexcept {
    return is_internal(node) ? child_begin[node + 1] : 0;
  }
  [[nodiscard]] XGR_HOST_DEVICE std::uint32_t child_count(std::uint32_t node) const noexcept {
    return children_end(node) - children_begin(node);
  }

  // The child of `node` reached by `code`, or no_trie_node: a search of the sorted codes that
  // narrows the range eightfold a round, with seven independent loads, then counts the last 16 or
  // fewer codes at once. On a GPU each round is a trip to memory, and a binary search makes one
  // per halving: 7 for a node of 122 children, here 2; 13 for 8,192, here 4.
  [[nodiscard]] XGR_HOST_DEVICE std::uint32_t child(std::uint32_t node, std::uint32_t code) const noexcept {
    const std::uint32_t end = children_end(node);
    std::uint32_t low = children_begin(node);
    std::uint32_t high = end;  // the first child whose code is >= `code` lies in [low, high]
    while (high - low > 16) {
      const std::uint32_t step = (high - low) / 8;
      std::uint32_t below = 0;  // pivots low + p * step (p = 1..7) with a smaller code: a prefix of them
      for (std::uint32_t p = 1; p < 8; ++p) below += node_code[low + p * step] < code ? 1u : 0u;
      const std::uint32_t new_low = below == 0 ? low : low + below * step + 1;
      high = below == 7 ? high : low + (below + 1) * step;
      low = new_low;
    }
    std::uint32_t first = low;  // + the codes of [low, high) below `code`, a prefix of them
    for (std::uint32_t i = 0; i < 16; ++i) first += low + i < high && node_code[low + i] < code ? 1u : 0u;
    return first < end && node_code[first] == code ? first : no_trie_node;
  }
};

// What the build found, beyond the trie itself.
struct ItemTrieReport {
  std::size_t items = 0;
  std::size_t leaves = 0;            // distinct code tuples
  std::size_t duplicate_items = 0;   // items whose tuple an earlier item of the table already has
  std::vector<std::uint32_t> duplicate_leaves;  // leaf indices (node - first leaf) holding more than one item
};

class ItemTrie {
 public:
  ItemTrie() = default;

  // Builds the trie of `codes` (items x levels, row i = the codes of item i) with codebook sizes per
  // level. `item_ids` names the items (row index when empty). Throws Error(invalid_argument) on a
  // code out of range, a shape mismatch, more than max_item_levels levels or a codebook above
  // max_codebook_size. Cost: O(items x levels) time (a stable radix sort by code), O(items + nodes)
  // memory.
  static ItemTrie build(std::span<const std::uint32_t> codebook_sizes, MatrixView<const std::uint32_t> codes,
                        std::span<const ItemId> item_ids = {}) {
    const char* op = "ItemTrie::build";
    const std::size_t levels = codebook_sizes.size();
    require_argument(levels >= 1 && levels <= max_item_levels, op,
                     [&] { return "levels must be in [1, " + std::to_string(max_item_levels) + "], got " +
                                      std::to_string(levels); });
    for (std::size_t level = 0; level < levels; ++level) {
      require_argument(codebook_sizes[level] >= 1 && codebook_sizes[level] <= max_codebook_size, op,
                       [&] { return "codebook size of level " + std::to_string(level) + " must be in [1, " +
                                        std::to_string(max_codebook_size) + "], got " + std::to_string(codebook_sizes[level]); });
    }
    const std::size_t items = codes.rows;
    require_argument(items == 0 || codes.cols == levels, op,
                     [&] { return "each item needs " + std::to_string(levels) + " codes (one per level), the table has " +
                                      std::to_string(codes.cols); });
    require_argument(item_ids.empty() || item_ids.size() == items, op,
                     [&] { return std::to_string(item_ids.size()) + " item ids for " + std::to_string(items) + " items"; });
    // Node ids are 32-bit: at most items + 1 nodes per level.
    require_argument(items < std::size_t{no_trie_node} / (levels + 1), op,
                     [&] { return std::to_string(items) + " items exceed the 32-bit node numbering"; });
    for (std::size_t item = 0; item < items; ++item) {
      for (std::size_t level = 0; level < levels; ++level) {
        if (codes(item, level) >= codebook_sizes[level]) {
          throw Error(ErrorKind::invalid_argument, op,
                      "item " + std::to_string(item_ids.empty() ? item : item_ids[item]) + " (row " + std::to_string(item) +
                          ") has code " + std::to_string(codes(item, level)) + " at level " + std::to_string(level) +
                          ", not below the codebook size " + std::to_string(codebook_sizes[level]));
        }
      }
    }

    ItemTrie trie;
    trie.codebook_sizes_.assign(codebook_sizes.begin(), codebook_sizes.end());

    // Stable LSD radix sort of the rows by tuple: one counting sort per level, last level first.
    std::vector<std::uint32_t> order(items);
    for (std::size_t item = 0; item < items; ++item) order[item] = static_cast<std::uint32_t>(item);
    std::vector<std::uint32_t> sorted(items);
    for (std::size_t level = levels; level-- > 0;) {
      std::vector<std::uint32_t> bucket_begin(codebook_sizes[level] + 1, 0);
      for (std::uint32_t item : order) ++bucket_begin[codes(item, level) + 1];
      for (std::size_t code = 0; code < codebook_sizes[level]; ++code) bucket_begin[code + 1] += bucket_begin[code];
      for (std::uint32_t item : order) sorted[bucket_begin[codes(item, level)]++] = item;
      order.swap(sorted);
    }

    // first_difference[i]: the first level at which sorted row i differs from row i - 1 (levels when
    // the tuples are equal). Row i starts a new node at every depth d > first_difference[i].
    const auto first_difference = [&](std::size_t i) -> std::size_t {
      if (i == 0) return 0;
      std::size_t level = 0;
      while (level < levels && codes(order[i], level) == codes(order[i - 1], level)) ++level;
      return level;
    };

    std::vector<std::uint32_t> node_depth_count(levels + 1, 0);
    node_depth_count[0] = 1;
    std::vector<std::uint8_t> differences(items);
    for (std::size_t i = 0; i < items; ++i) {
      differences[i] = static_cast<std::uint8_t>(first_difference(i));
      for (std::size_t depth = differences[i] + 1; depth <= levels; ++depth) ++node_depth_count[depth];
    }
    trie.level_begin_.assign(levels + 2, 0);
    for (std::size_t depth = 0; depth <= levels; ++depth) {
      trie.level_begin_[depth + 1] = trie.level_begin_[depth] + node_depth_count[depth];
    }
    const std::uint32_t node_total = trie.level_begin_[levels + 1];
    trie.node_code_.assign(node_total, 0);
    trie.child_begin_.assign(trie.level_begin_[levels] + 1, 0);
    trie.leaf_item_begin_.reserve(node_depth_count[levels] + 1);
    trie.item_ids_.resize(items);

    // One walk over the sorted rows numbers the nodes of every depth in order. A row that starts a
    // node at depth d + 1 also starts a child of the current depth-d node, so child_begin of each
    // depth-d node is the id of the next depth-(d + 1) node at the moment it starts.
    std::vector<std::uint32_t> next_node(levels + 1);
    for (std::size_t depth = 0; depth <= levels; ++depth) next_node[depth] = trie.level_begin_[depth];
    trie.child_begin_[0] = trie.level_begin_[1];  // the root, also when the catalogue is empty
    next_node[0] = 1;
    for (std::size_t i = 0; i < items; ++i) {
      const std::uint32_t item = order[i];
      for (std::size_t depth = differences[i] + 1; depth <= levels; ++depth) {
        const std::uint32_t node = next_node[depth]++;
        trie.node_code_[node] = static_cast<std::uint16_t>(codes(item, depth - 1));
        if (depth < levels) trie.child_begin_[node] = next_node[depth + 1];
      }
      if (differences[i] == levels) {
        ++trie.report_.duplicate_items;
        if (i - trie.leaf_item_begin_.back() == 1) {  // the leaf's second item: report the leaf once
          trie.report_.duplicate_leaves.push_back(static_cast<std::uint32_t>(trie.leaf_item_begin_.size() - 1));
        }
      } else {
        trie.leaf_item_begin_.push_back(static_cast<std::uint32_t>(i));
      }
      trie.item_ids_[i] = item_ids.empty() ? ItemId{item} : item_ids[item];
    }
    trie.leaf_item_begin_.push_back(static_cast<std::uint32_t>(items));
    // Internal nodes without a later sibling close their child range at the next node's start;
    // child_begin[n + 1] of the last internal node is the end of all leaves.
    trie.child_begin_[trie.level_begin_[levels]] = node_total;
    trie.report_.items = items;
    trie.report_.leaves = node_depth_count[levels];
    trie.compute_fan_out();
    return trie;
  }

  [[nodiscard]] std::size_t levels() const noexcept { return codebook_sizes_.size(); }
  [[nodiscard]] std::span<const std::uint32_t> codebook_sizes() const noexcept { return codebook_sizes_; }
  [[nodiscard]] std::size_t item_count() const noexcept { return item_ids_.size(); }
  [[nodiscard]] std::size_t node_count() const noexcept { return node_code_.size(); }
  [[nodiscard]] std::size_t leaf_count() const noexcept { return leaf_item_begin_.empty() ? 0 : leaf_item_begin_.size() - 1; }
  // Nodes at depth d (0 = root, levels() = leaves).
  [[nodiscard]] std::size_t nodes_at_depth(std::size_t depth) const {
    require_depth(depth, "ItemTrie::nodes_at_depth");
    return level_begin_[depth + 1] - level_begin_[depth];
  }
  // The most children any node at depth d has: sizes the allowed-token buffers of a step at level d.
  [[nodiscard]] std::size_t max_children(std::size_t depth) const {
    require_depth(depth, "ItemTrie::max_children");
    return max_children_[depth];
  }
  [[nodiscard]] const ItemTrieReport& report() const noexcept { return report_; }

  [[nodiscard]] ItemTrieView view() const noexcept {
    return {static_cast<std::uint32_t>(levels()), level_begin_.data(),     child_begin_.data(),
            node_code_.data(),                    leaf_item_begin_.data(), item_ids_.data()};
  }

  // The leaf of a complete tuple, or no_trie_node.
  [[nodiscard]] std::uint32_t find(std::span<const std::uint32_t> tuple) const {
    require_argument(tuple.size() == levels(), "ItemTrie::find",
                     [&] { return "a tuple has " + std::to_string(levels()) + " codes, got " + std::to_string(tuple.size()); });
    if (levels() == 0) return no_trie_node;
    std::uint32_t node = 0;
    for (std::uint32_t code : tuple) {
      if (code > std::numeric_limits<std::uint16_t>::max()) return no_trie_node;
      node = view().child(node, code);
      if (node == no_trie_node) return no_trie_node;
    }
    return node;
  }

  // The items of a leaf node (a node at depth levels()).
  [[nodiscard]] std::span<const ItemId> items_of(std::uint32_t leaf_node) const {
    require_argument(leaf_node >= level_begin_.at(levels()) && leaf_node < node_count(), "ItemTrie::items_of",
                     [&] { return "node " + std::to_string(leaf_node) + " is not a leaf"; });
    const std::uint32_t leaf = leaf_node - level_begin_[levels()];
    return std::span<const ItemId>(item_ids_).subspan(leaf_item_begin_[leaf], leaf_item_begin_[leaf + 1] - leaf_item_begin_[leaf]);
  }

  // Raw arrays, for copies to the device.
  [[nodiscard]] std::span<const std::uint32_t> level_begin() const noexcept { return level_begin_; }
  [[nodiscard]] std::span<const std::uint32_t> child_begin() const noexcept { return child_begin_; }
  [[nodiscard]] std::span<const std::uint16_t> node_code() const noexcept { return node_code_; }
  [[nodiscard]] std::span<const std::uint32_t> leaf_item_begin() const noexcept { return leaf_item_begin_; }
  [[nodiscard]] std::span<const ItemId> item_ids() const noexcept { return item_ids_; }

 private:
  void compute_fan_out() {
    max_children_.assign(levels() + 1, 0);
    for (std::size_t depth = 0; depth < levels(); ++depth) {
      for (std::uint32_t node = level_begin_[depth]; node < level_begin_[depth + 1]; ++node) {
        max_children_[depth] = std::max<std::size_t>(max_children_[depth], child_begin_[node + 1] - child_begin_[node]);
      }
    }
  }

  std::vector<std::uint32_t> codebook_sizes_;
  std::vector<std::uint32_t> level_begin_;
  std::vector<std::uint32_t> child_begin_;
  std::vector<std::uint16_t> node_code_;
  std::vector<std::uint32_t> leaf_item_begin_;
  std::vector<ItemId> item_ids_;
  std::vector<std::size_t> max_children_;

  void require_depth(std::size_t depth, const char* operation) const {
    require_argument(depth <= levels(), operation,
                     [&] { return "depth " + std::to_string(depth) + " is past the leaves (the trie has " +
                                      std::to_string(levels()) + " levels)"; });
  }
  ItemTrieReport report_;
};

// ---- Per-beam allowed sets (host reference; xgr/items/cuda.cuh has the device versions) ----------
//
// Row r of a step belongs to a beam whose prefix ends at trie node row_nodes[r] (no_trie_node for a
// row that is not live). Its allowed tokens are token_offset + code for each child code, ascending.

// CSR: row r's tokens are columns[row_ptr[r] .. row_ptr[r + 1]). row_ptr holds rows + 1 entries;
// columns must hold the total (allowed_token_count); throws Error(capacity) otherwise.
inline std::size_t allowed_token_count(const ItemTrieView& trie, std::span<const std::uint32_t> row_nodes) {
  std::size_t total = 0;
  for (std::uint32_t node : row_nodes) total += trie.child_count(node);
  return total;
}

inline void allowed_tokens(exec::host_t, const ItemTrieView& trie, std::span<const std::uint32_t> row_nodes,
                           std::uint32_t token_offset, std::span<std::uint32_t> row_ptr, std::span<std::uint32_t> columns) {
  const char* op = "allowed_tokens(host)";
  require_argument(row_ptr.size() >= row_nodes.size() + 1, op, "row_ptr needs rows + 1 entries");
  const std::size_t total = allowed_token_count(trie, row_nodes);
  require(total <= columns.size(), ErrorKind::capacity, op,
          [&] { return std::to_string(total) + " allowed tokens do not fit columns of " + std::to_string(columns.size()); });
  std::size_t entry = 0;
  for (std::size_t row = 0; row < row_nodes.size(); ++row) {
    row_ptr[row] = static_cast<std::uint32_t>(entry);
    const std::uint32_t node = row_nodes[row];
    for (std::uint32_t child = trie.children_begin(node); child < trie.children_end(node); ++child) {
      columns[entry++] = token_offset + trie.node_code[child];
    }
  }
  row_ptr[row_nodes.size()] = static_cast<std::uint32_t>(entry);
}

// Bitset rows: bit (t % 32) of word t / 32 of row r is set iff token t is allowed; every other bit
// of the row (including tokens outside the level) is cleared. Needs token_offset + codebook <= 32 x words.
inline void allowed_mask(exec::host_t, const ItemTrieView& trie, std::span<const std::uint32_t> row_nodes,
                         std::uint32_t token_offset, MatrixView<std::uint32_t> words) {
  const char* op = "allowed_mask(host)";
  require_argument(words.rows >= row_nodes.size(), op, "the mask needs one row per beam");
  for (std::size_t row = 0; row < row_nodes.size(); ++row) {
    std::fill_n(words.row(row), words.cols, 0u);
    const std::uint32_t node = row_nodes[row];
    for (std::uint32_t child = trie.children_begin(node); child < trie.children_end(node); ++child) {
      const std::uint32_t token = token_offset + trie.node_code[child];
      require_argument(token / 32 < words.cols, op,
                       [&] { return "token " + std::to_string(token) + " lies beyond the mask row"; });
      words(row, token / 32) |= 1u << (token % 32);
    }
  }
}

}  // namespace xgr
