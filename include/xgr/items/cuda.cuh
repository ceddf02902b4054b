// xgr/items/cuda.cuh — the ItemTrie on the device, and per-beam allowed sets built there.
//
// DeviceItemTrie copies the host trie's arrays once; its view() is the same ItemTrieView the host
// uses, so lookups (children ranges, binary-searched child) are one code path. The allowed-set
// builders write into caller-owned buffers sized once (see ItemTrie::max_children), never allocate,
// and never write past the buffers they are given.
#pragma once

#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "xgr/core/cuda.cuh"
#include "xgr/core/exec.hpp"
#include "xgr/items/trie.hpp"

namespace xgr {

class DeviceItemTrie {
 public:
  // Copies `trie` to the device on exec.stream and waits for the copy (set-up, not a hot path).
  DeviceItemTrie(const ItemTrie& trie, exec::cuda exec)
      : codebook_sizes_(trie.codebook_sizes().begin(), trie.codebook_sizes().end()),
        item_count_(trie.item_count()),
        node_count_(trie.node_count()),
        level_begin_(trie.level_begin().size()),
        child_begin_(trie.child_begin().size()),
        node_code_(trie.node_code().size()),
        leaf_item_begin_(trie.leaf_item_begin().size()),
        item_ids_(trie.item_ids().size()) {
    require_argument(trie.levels() >= 1, "DeviceItemTrie", "the trie is empty (build it first)");
    for (std::size_t depth = 0; depth <= trie.levels(); ++depth) {
      max_children_.push_back(trie.max_children(depth));
      nodes_at_depth_.push_back(trie.nodes_at_depth(depth));
    }
    copy_async(level_begin_.span(), trie.level_begin(), exec.stream);
    copy_async(child_begin_.span(), trie.child_begin(), exec.stream);
    copy_async(node_code_.span(), trie.node_code(), exec.stream);
    copy_async(leaf_item_begin_.span(), trie.leaf_item_begin(), exec.stream);
    copy_async(item_ids_.span(), trie.item_ids(), exec.stream);
    XGR_CUDA_CHECK(cudaStreamSynchronize(exec.stream));
  }

  // Device pointers; pass by value to kernels.
  [[nodiscard]] ItemTrieView view() const noexcept {
    return {static_cast<std::uint32_t>(levels()), level_begin_.data(),     child_begin_.data(),
            node_code_.data(),                    leaf_item_begin_.data(), item_ids_.data()};
  }
  [[nodiscard]] std::size_t levels() const noexcept { return codebook_sizes_.size(); }
  [[nodiscard]] std::span<const std::uint32_t> codebook_sizes() const noexcept { return codebook_sizes_; }
  [[nodiscard]] std::size_t max_children(std::size_t depth) const { return max_children_.at(depth); }
  [[nodiscard]] std::size_t nodes_at_depth(std::size_t depth) const { return nodes_at_depth_.at(depth); }
  [[nodiscard]] std::size_t item_count() const noexcept { return item_count_; }
  [[nodiscard]] std::size_t node_count() const noexcept { return node_count_; }
  [[nodiscard]] std::size_t device_bytes() const noexcept {
    return level_begin_.bytes() + child_begin_.bytes() + node_code_.bytes() + leaf_item_begin_.bytes() + item_ids_.bytes();
  }

 private:
  std::vector<std::uint32_t> codebook_sizes_;
  std::vector<std::size_t> max_children_;
  std::vector<std::size_t> nodes_at_depth_;
  std::size_t item_count_;
  std::size_t node_count_;
  DeviceBuffer<std::uint32_t> level_begin_;
  DeviceBuffer<std::uint32_t> child_begin_;
  DeviceBuffer<std::uint16_t> node_code_;
  DeviceBuffer<std::uint32_t> leaf_item_begin_;
  DeviceBuffer<ItemId> item_ids_;
};

namespace items::cuda_detail {

inline constexpr int scan_threads = 1024;
inline constexpr int scan_rows_per_thread = 2;
inline constexpr unsigned scan_cluster_blocks = 8;  // the portable cluster size
inline constexpr int fill_threads = 256;
inline constexpr std::size_t max_fill_blocks = 1024;
inline constexpr int mask_threads = 256;
// Kernels are templates (on their block size) so that this header can be included by several
// translation units of one program without duplicate definitions.

// One cluster of up to scan_cluster_blocks blocks scans the rows' child counts into CSR offsets.
// Rows are at most a few ten thousand beams, so one cluster (a running prefix across passes of
// blocks x BlockThreads x scan_rows_per_thread rows, the blocks' totals exchanged through
// distributed shared memory) is cheaper than a device-wide scan with its extra launches. One block
// alone was bound by one multiprocessor's loads in flight: at 32 x 512 beams (16,384 rows, three
// scattered loads each) it took about 30 us on an H100 and held the beam step's first wave of
// normalisation blocks for 20 us. Each thread takes consecutive rows and issues all their loads
// (node, then the two child offsets) before the scan, so a pass costs two memory round trips.
// Offsets are clamped to the columns' capacity: an undersized buffer truncates the sets instead of
// overflowing. Without clusters (before compute capability 9.0) the grid is one block.
template <int BlockThreads>
__global__ void __launch_bounds__(BlockThreads) allowed_row_ptr_kernel(ItemTrieView trie, const std::uint32_t* row_nodes,
                                                                      std::uint32_t rows, std::uint32_t capacity,
                                                                      std::uint32_t* row_ptr) {
  namespace device = ::xgr::detail;
  device::allow_dependent_launch();  // a consumer launched to overlap waits for the offsets itself
  using BlockScan = cub::BlockScan<std::uint32_t, BlockThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ std::uint32_t pass_total;  // this block's entries in the pass, read by the cluster's blocks
  const unsigned blocks = gridDim.x;      // the grid is one cluster
  const unsigned rank = blockIdx.x;
  constexpr std::uint32_t block_rows = BlockThreads * scan_rows_per_thread;
  const std::uint32_t pass_rows = block_rows * blocks;
  std::uint32_t carried = 0;  // every block's: the entries of the earlier passes
  for (std::uint32_t pass = 0; pass < rows; pass += pass_rows) {
    const std::uint32_t first = pass + rank * block_rows + threadIdx.x * scan_rows_per_thread;
    std::uint32_t nodes[scan_rows_per_thread];
    std::uint32_t counts[scan_rows_per_thread];
#pragma unroll
    for (int i = 0; i < scan_rows_per_thread; ++i) nodes[i] = first + i < rows ? row_nodes[first + i] : no_trie_node;
#pragma unroll
    for (int i = 0; i < scan_rows_per_thread; ++i) counts[i] = trie.child_count(nodes[i]);
    std::uint32_t offsets[scan_rows_per_thread];
    std::uint32_t block_total = 0;
    BlockScan(scan_storage).ExclusiveSum(counts, offsets, block_total);
    if (threadIdx.x == 0) pass_total = block_total;
    __syncthreads();
    device::cluster_sync();  // every block's total is written
    std::uint32_t before = 0;  // entries of this pass in lower-ranked blocks
    std::uint32_t all = 0;
    for (unsigned block = 0; block < blocks; ++block) {
      const std::uint32_t total = blocks == 1 ? pass_total : device::cluster_load(device::cluster_shared_address(&pass_total, block));
      before += block < rank ? total : 0u;
      all += total;
    }
#pragma unroll
    for (int i = 0; i < scan_rows_per_thread; ++i) {
      if (first + i < rows) row_ptr[first + i] = min(carried + before + offsets[i], capacity);
    }
    carried += all;
    __syncthreads();
    device::cluster_sync();  // every block has read the totals before the next pass writes them
  }
  if (rank == 0 && threadIdx.x == 0) row_ptr[rows] = min(carried, capacity);
}

// One thread per allowed token, whatever the rows' fan-outs: a step at level 0 has a few beams with
// thousands of children each, deeper levels thousands of beams with a handful each, and a warp per
// row would leave the first case to a few warps walking long lists. A block takes a tile of
// consecutive entries; two searches over the CSR offsets find the rows the tile spans, and each
// thread finds its row by a binary search among those only (one or two probes where rows are long).
template <int BlockThreads>
__global__ void __launch_bounds__(BlockThreads) allowed_fill_kernel(ItemTrieView trie, const std::uint32_t* row_nodes, std::uint32_t rows, std::uint32_t token_offset,
                                    const std::uint32_t* row_ptr, std::uint32_t* columns) {
  __shared__ std::uint32_t tile_rows[2];
  const std::uint32_t total = row_ptr[rows];  // clamped to the capacity by the scan
  // The last row whose offset is <= entry, searched in [low, high) (rows without entries are skipped).
  const auto row_of = [row_ptr](std::uint32_t entry, std::uint32_t low, std::uint32_t high) {
    while (high - low > 1) {
      const std::uint32_t middle = low + (high - low) / 2;
      if (row_ptr[middle] <= entry) {
        low = middle;
      } else {
        high = middle;
      }
    }
    return low;
  };
  for (std::uint32_t tile = blockIdx.x * BlockThreads; tile < total; tile += gridDim.x * BlockThreads) {
    const std::uint32_t last = min(tile + BlockThreads, total) - 1;
    __syncthreads();  // the previous tile's rows are read
    if (threadIdx.x < 2) tile_rows[threadIdx.x] = row_of(threadIdx.x == 0 ? tile : last, 0, rows);
    __syncthreads();
    const std::uint32_t entry = tile + threadIdx.x;
    if (entry < total) {
      const std::uint32_t row = row_of(entry, tile_rows[0], tile_rows[1] + 1);
      columns[entry] = token_offset + trie.node_code[trie.children_begin(row_nodes[row]) + (entry - row_ptr[row])];
    }
  }
}

template <int BlockThreads>
__global__ void __launch_bounds__(BlockThreads) allowed_mask_kernel(ItemTrieView trie, const std::uint32_t* row_nodes, std::uint32_t token_offset,
                                    std::uint32_t* words, std::size_t row_stride, std::uint32_t words_per_row) {
  const std::uint32_t row = blockIdx.x;
  std::uint32_t* row_words = words + row * row_stride;
  for (std::uint32_t word = threadIdx.x; word < words_per_row; word += BlockThreads) row_words[word] = 0;
  __syncthreads();  // the block's clears are visible before any of its bits are set
  const std::uint32_t node = row_nodes[row];
  for (std::uint32_t child = trie.children_begin(node) + threadIdx.x; child < trie.children_end(node); child += BlockThreads) {
    const std::uint32_t token = token_offset + trie.node_code[child];
    if (token / 32 < words_per_row) atomicOr(row_words + token / 32, 1u << (token % 32));
  }
}

}  // namespace items::cuda_detail

// The CSR offsets alone (row_ptr, rows + 1 entries, clamped to `capacity`): the first half of
// allowed_tokens, for a caller that writes the columns itself while it walks each row's children
// anyway (the CUDA BeamSearcher's normalisation does). One launch, no sync.
inline void allowed_token_offsets(exec::cuda exec, const ItemTrieView& trie, std::span<const std::uint32_t> row_nodes,
                                  std::span<std::uint32_t> row_ptr, std::size_t capacity) {
  const char* op = "allowed_token_offsets(cuda)";
  require_argument(row_ptr.size() >= row_nodes.size() + 1, op, "row_ptr needs rows + 1 entries");
  require_argument(capacity <= 0xffffffffu, op, "columns exceed 32-bit offsets");
  // A block for every block_rows rows, up to a cluster's worth; one block without clusters.
  constexpr std::size_t block_rows = std::size_t{items::cuda_detail::scan_threads} * items::cuda_detail::scan_rows_per_thread;
  const unsigned blocks = ::xgr::detail::cluster_launch_supported()
                              ? static_cast<unsigned>(std::clamp<std::size_t>((row_nodes.size() + block_rows - 1) / block_rows, 1,
                                                                              items::cuda_detail::scan_cluster_blocks))
                              : 1u;
  ::xgr::detail::launch_with(::xgr::detail::LaunchOptions{.cluster_blocks = blocks},
                             items::cuda_detail::allowed_row_ptr_kernel<items::cuda_detail::scan_threads>, blocks,
                             items::cuda_detail::scan_threads, 0, exec.stream, trie, row_nodes.data(),
                             static_cast<std::uint32_t>(row_nodes.size()), static_cast<std::uint32_t>(capacity), row_ptr.data());
  XGR_CUDA_CHECK_LAUNCH();
}

// CSR allowed tokens of every row (see allowed_tokens(exec::host, ...) for the contract), on the
// device: row_nodes, row_ptr (rows + 1) and columns are device memory. Two launches, no sync.
// columns should hold allowed_token_count() entries (bounded by rows x ItemTrie::max_children of
// the level); with fewer, the sets are truncated, never overrun.
inline void allowed_tokens(exec::cuda exec, const ItemTrieView& trie, std::span<const std::uint32_t> row_nodes,
                           std::uint32_t token_offset, std::span<std::uint32_t> row_ptr, std::span<std::uint32_t> columns) {
  allowed_token_offsets(exec, trie, row_nodes, row_ptr, columns.size());
  const auto rows = static_cast<std::uint32_t>(row_nodes.size());
  if (rows == 0) return;
  // The total is on the device; the grid covers the capacity, up to a few waves, and strides beyond.
  const std::size_t wanted = (columns.size() + items::cuda_detail::fill_threads - 1) / items::cuda_detail::fill_threads;
  const auto blocks = static_cast<unsigned>(std::clamp<std::size_t>(wanted, 1, items::cuda_detail::max_fill_blocks));
  items::cuda_detail::allowed_fill_kernel<items::cuda_detail::fill_threads><<<blocks, items::cuda_detail::fill_threads, 0, exec.stream>>>(
      trie, row_nodes.data(), rows, token_offset, row_ptr.data(), columns.data());
  XGR_CUDA_CHECK_LAUNCH();
}

// Bitset rows of allowed tokens (see allowed_mask(exec::host, ...)), on the device. One launch.
inline void allowed_mask(exec::cuda exec, const ItemTrieView& trie, std::span<const std::uint32_t> row_nodes,
                         std::uint32_t token_offset, MatrixView<std::uint32_t> words) {
  require_argument(words.rows >= row_nodes.size(), "allowed_mask(cuda)", "the mask needs one row per beam");
  if (row_nodes.empty()) return;
  items::cuda_detail::allowed_mask_kernel<items::cuda_detail::mask_threads><<<static_cast<unsigned>(row_nodes.size()), items::cuda_detail::mask_threads, 0, exec.stream>>>(
      trie, row_nodes.data(), token_offset, words.data, words.row_stride, static_cast<std::uint32_t>(words.cols));
  XGR_CUDA_CHECK_LAUNCH();
}

}  // namespace xgr
