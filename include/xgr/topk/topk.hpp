// xgr/topk/topk.hpp — MaskedTopK: the k best candidates of each group of score rows.
//
// A *group* is a set of consecutive rows selected from together: the B beams of one request,
// flattened to B x V candidates (beam search), or a single row (plain per-row top-k). Candidate
// (row r of group g, column c) has
//     flat index  (r - first_row(g)) * vocab + c
//     score       float(scores[r][c]) + row_offsets[r]          (row_offsets optional, default 0)
// and is a candidate only where the mask allows column c of row r. For each group the k candidates
// of highest score are returned, best first, ties broken by the lower flat index (keys.hpp makes
// this one integer order). Candidates scoring NaN or -inf are never selected. A group with fewer
// than k selectable candidates returns them all and reports the count; the slots past the count
// hold score -inf and index topk::empty_index.
//
// Implementations (same results bit for bit):
//   xgr/topk/host.hpp   masked_topk(exec::host, ...)   the readable reference
//   xgr/topk/cuda.cuh   masked_topk(exec::cuda{s}, ...) sample bound -> filter -> select kernels
// Scratch comes from a Workspace sized once with masked_topk_workspace_bytes(limits, ...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "xgr/core/dtype.hpp"
#include "xgr/core/error.hpp"
#include "xgr/core/view.hpp"
#include "xgr/topk/keys.hpp"

namespace xgr {

enum class MaskKind : std::uint8_t {
  none,    // every column is allowed
  bitset,  // bit (c % 32) of word (c / 32) of the row's mask words allows column c
  sparse,  // the row lists its allowed columns (CSR): columns[row_ptr[r] .. row_ptr[r + 1])
};

// Which columns each row allows. Build with the named constructors.
struct TopKMask {
  MaskKind kind = MaskKind::none;
  MatrixView<const std::uint32_t> bits;      // bitset: rows x ceil(vocab / 32) words (row stride allowed)
  std::span<const std::uint32_t> row_ptr;    // sparse: rows + 1 offsets into columns
  std::span<const std::uint32_t> columns;    // sparse: allowed columns, each < vocab, unique within a row

  static TopKMask all() { return {}; }
  static TopKMask bitset(MatrixView<const std::uint32_t> words) { return {MaskKind::bitset, words, {}, {}}; }
  static TopKMask sparse(std::span<const std::uint32_t> row_ptr, std::span<const std::uint32_t> columns) {
    return {MaskKind::sparse, {}, row_ptr, columns};
  }
};

// One call's inputs. All spans and views point into the memory space of the implementation that
// runs (host memory for exec::host, device memory for exec::cuda).
template <class T>
struct TopKProblem {
  MatrixView<const T> scores;                          // rows x vocab
  std::size_t k = 0;                                   // results per group, >= 1
  // Group g owns rows [group_row_offsets[g], group_row_offsets[g + 1]). When empty, groups are
  // rows_per_group consecutive rows each (rows_per_group must divide the row count).
  std::span<const std::uint32_t> group_row_offsets;
  std::size_t rows_per_group = 1;
  std::span<const float> row_offsets;                  // optional: added to every score of the row
  // Optional: an upper bound on every score of the row (offset included), e.g. the beam score for
  // log-probabilities (log p <= 0). Rows whose bound cannot beat the running k-th bound are skipped
  // without reading them. A wrong bound yields wrong results; omit it when unsure.
  std::span<const float> row_score_bounds;
  // Optional: scores of candidates the caller has already seen, a few per row (rows x hints, NaN
  // or -inf where there is none), each the score of a different candidate of its row, such as the
  // best allowed score of each part of the row. The CUDA EarlyExit policy takes the k-th best hint
  // of each group as the group's bound (at least k candidates reach it) instead of sampling the
  // group. Results are exact for any values: where fewer than k candidates reach the bound, the
  // group is selected over its input instead (slower). A group's hints (its rows x hints) must
  // number at most max_group_score_hints. The host reference checks the shape and ignores them.
  MatrixView<const float> row_score_hints;
  TopKMask mask;

  [[nodiscard]] std::size_t rows() const noexcept { return scores.rows; }
  [[nodiscard]] std::size_t vocab() const noexcept { return scores.cols; }
  [[nodiscard]] std::size_t groups() const noexcept {
    if (!group_row_offsets.empty()) return group_row_offsets.size() - 1;
    return rows_per_group == 0 ? 0 : scores.rows / rows_per_group;
  }
};

// Where results go: groups x k values and indices (row strides allowed), and a count per group.
struct TopKResult {
  MatrixView<float> values;
  MatrixView<std::uint32_t> indices;
  std::span<std::uint32_t> counts;
};

// The largest problems a workspace must serve. Any call within these limits reuses it.
struct TopKLimits {
  std::size_t max_groups = 1;
  std::size_t max_rows = 1;            // rows over all groups
  std::size_t max_rows_per_group = 1;
  std::size_t max_vocab = 1;
  std::size_t max_k = 1;
  std::size_t max_sparse_entries = 0;  // sparse masks only: allowed entries over all rows
};

// Limits that fit exactly one problem shape.
template <class T>
[[nodiscard]] TopKLimits limits_of(const TopKProblem<T>& problem, std::size_t max_rows_per_group) {
  return {problem.groups(), problem.rows(), max_rows_per_group, problem.vocab(), problem.k, problem.mask.columns.size()};
}

// The most score hints a group may have (TopKProblem::row_score_hints): what one block of the
// CUDA bound kernel holds.
inline constexpr std::size_t max_group_score_hints = 4096;

// The largest k xgr's kernels accept; the host reference has no such limit but checks it too so
// that both implementations accept the same problems.
inline constexpr std::size_t max_topk_k = 1024;

namespace detail {

inline void validate_limits(const TopKLimits& limits) {
  const char* op = "MaskedTopK limits";
  require_argument(limits.max_k >= 1 && limits.max_k <= max_topk_k, op,
                   [&] { return "max_k must be in [1, " + std::to_string(max_topk_k) + "], got " +
                                    std::to_string(limits.max_k); });
  require_argument(limits.max_vocab >= 1 && limits.max_rows_per_group >= 1 && limits.max_groups >= 1, op,
                   "max_vocab, max_rows_per_group and max_groups must be positive");
  // Flat indices are 32-bit and topk::empty_index is reserved.
  require_argument(limits.max_rows_per_group <= (std::size_t{0xffffffffu} - 1) / limits.max_vocab, op,
                   [&] { return "max_rows_per_group x max_vocab = " + std::to_string(limits.max_rows_per_group) + " x " +
                                    std::to_string(limits.max_vocab) + " does not fit 32-bit flat indices"; });
}

// Checks everything that can be checked without reading the (possibly device-resident) data.
template <class T>
void validate_shape(const TopKProblem<T>& problem, const TopKResult& result, const TopKLimits& limits) {
  const char* op = "masked_topk";
  validate_limits(limits);
  const std::size_t groups = problem.groups();
  require_argument(problem.k >= 1, op, "k must be at least 1");
  require_argument(problem.k <= limits.max_k, op,
                   [&] { return "k = " + std::to_string(problem.k) + " exceeds the workspace's max_k = " +
                                    std::to_string(limits.max_k); });
  require_argument(problem.vocab() >= 1 && problem.vocab() <= limits.max_vocab, op,
                   [&] { return "vocab = " + std::to_string(problem.vocab()) + " must be in [1, " +
                                    std::to_string(limits.max_vocab) + "]"; });
  require_argument(problem.rows() <= limits.max_rows, op,
                   [&] { return std::to_string(problem.rows()) + " rows exceed the workspace's max_rows = " +
                                    std::to_string(limits.max_rows); });
  require_argument(problem.scores.row_stride >= problem.vocab(), op, "score row stride is smaller than vocab");
  require_argument(problem.scores.data != nullptr || problem.rows() == 0, op, "scores are null");
  if (problem.group_row_offsets.empty()) {
    require_argument(problem.rows_per_group >= 1 && problem.rows_per_group <= limits.max_rows_per_group, op,
                     [&] { return "rows_per_group must be in [1, max_rows_per_group = " +
                                      std::to_string(limits.max_rows_per_group) + "]"; });
    require_argument(problem.rows() % problem.rows_per_group == 0, op,
                     [&] { return std::to_string(problem.rows()) + " rows are not a multiple of rows_per_group = " +
                                      std::to_string(problem.rows_per_group); });
  } else {
    require_argument(problem.group_row_offsets.size() >= 2, op, "group_row_offsets needs groups + 1 entries");
  }
  require_argument(groups <= limits.max_groups, op,
                   [&] { return std::to_string(groups) + " groups exceed the workspace's max_groups = " +
                                    std::to_string(limits.max_groups); });
  require_argument(problem.row_offsets.empty() || problem.row_offsets.size() >= problem.rows(), op,
                   "row_offsets must be empty or hold one value per row");
  require_argument(problem.row_score_bounds.empty() || problem.row_score_bounds.size() >= problem.rows(), op,
                   "row_score_bounds must be empty or hold one value per row");
  if (problem.row_score_hints.cols != 0) {
    require_argument(problem.row_score_hints.rows >= problem.rows() && problem.row_score_hints.data != nullptr, op,
                     "row_score_hints must hold a row of hints per score row");
    require_argument(limits.max_rows_per_group * problem.row_score_hints.cols <= max_group_score_hints, op, [&] {
      return "max_rows_per_group x hints per row = " + std::to_string(limits.max_rows_per_group) + " x " +
             std::to_string(problem.row_score_hints.cols) + " exceeds max_group_score_hints = " +
             std::to_string(max_group_score_hints);
    });
  }
  switch (problem.mask.kind) {
    case MaskKind::none: break;
    case MaskKind::bitset:
      require_argument(problem.mask.bits.rows >= problem.rows() && problem.mask.bits.cols * 32 >= problem.vocab(), op,
                       "bitset mask must hold rows x ceil(vocab / 32) words");
      require_argument(problem.mask.bits.data != nullptr || problem.rows() == 0, op, "bitset mask words are null");
      break;
    case MaskKind::sparse:
      require_argument(problem.mask.row_ptr.size() == problem.rows() + 1, op, "sparse mask row_ptr must hold rows + 1 entries");
      require_argument(problem.mask.columns.size() <= limits.max_sparse_entries, op,
                       [&] { return std::to_string(problem.mask.columns.size()) +
                                        " sparse entries exceed the workspace's max_sparse_entries = " +
                                        std::to_string(limits.max_sparse_entries); });
      break;
  }
  require_argument(result.values.rows >= groups && result.values.cols >= problem.k, op, "values must hold groups x k");
  require_argument(result.indices.rows >= groups && result.indices.cols >= problem.k, op, "indices must hold groups x k");
  require_argument(result.counts.size() >= groups, op, "counts must hold one entry per group");
}

}  // namespace detail
}  // namespace xgr
