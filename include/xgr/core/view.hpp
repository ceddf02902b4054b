// xgr/core/view.hpp — non-owning views of host or device memory.
//
// One-dimensional data travels as `std::span`. Two-dimensional data (scores, logits, KV rows) is a
// `MatrixView`: pointer, shape and row stride together, in the spirit of CuTe layouts, so that a
// kernel never re-derives a stride and a padded or sliced matrix needs no copy. Views are plain
// aggregates that are passed to kernels by value.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <type_traits>

#include "xgr/core/config.hpp"
#include "xgr/core/error.hpp"

namespace xgr {

template <class T>
struct MatrixView {
  T* data = nullptr;
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::size_t row_stride = 0;  // elements between the starts of consecutive rows (>= cols)

  XGR_HOST_DEVICE constexpr T* row(std::size_t r) const noexcept { return data + r * row_stride; }
  XGR_HOST_DEVICE constexpr T& operator()(std::size_t r, std::size_t c) const noexcept { return data[r * row_stride + c]; }
  XGR_HOST_DEVICE constexpr std::size_t size() const noexcept { return rows * cols; }
  XGR_HOST_DEVICE constexpr bool empty() const noexcept { return rows == 0 || cols == 0; }
  // Elements from the first to one past the last addressed element.
  XGR_HOST_DEVICE constexpr std::size_t extent() const noexcept { return empty() ? 0 : (rows - 1) * row_stride + cols; }

  // A view of rows [first, first + count).
  XGR_HOST_DEVICE constexpr MatrixView<T> row_range(std::size_t first, std::size_t count) const noexcept {
    return MatrixView<T>{data + first * row_stride, count, cols, row_stride};
  }

  template <class U = T>
    requires(!std::is_const_v<U>)
  XGR_HOST_DEVICE constexpr operator MatrixView<const U>() const noexcept {
    return MatrixView<const U>{data, rows, cols, row_stride};
  }
};

// Views a raw pointer (host or device) as rows x cols with the given row stride.
template <class T>
[[nodiscard]] MatrixView<T> matrix_view(T* data, std::size_t rows, std::size_t cols, std::size_t row_stride) {
  require_argument(row_stride >= cols, "matrix_view",
                   [&] { return "row_stride " + std::to_string(row_stride) + " is smaller than cols " + std::to_string(cols); });
  require_argument(data != nullptr || rows == 0 || cols == 0, "matrix_view", "null data for a non-empty matrix");
  return MatrixView<T>{data, rows, cols, row_stride};
}

template <class T>
[[nodiscard]] MatrixView<T> matrix_view(T* data, std::size_t rows, std::size_t cols) {
  return matrix_view(data, rows, cols, cols);
}

// Views host storage, checking that every addressed element lies inside it.
template <class T>
[[nodiscard]] MatrixView<T> matrix_view(std::span<T> storage, std::size_t rows, std::size_t cols, std::size_t row_stride) {
  MatrixView<T> view = matrix_view(storage.data(), rows, cols, row_stride);
  require_argument(view.extent() <= storage.size(), "matrix_view",
                   [&] { return std::to_string(rows) + " x " + std::to_string(cols) + " with stride " +
                                    std::to_string(row_stride) +
                                    " needs " + std::to_string(view.extent()) + " elements, storage has " +
                                    std::to_string(storage.size()); });
  return view;
}

template <class T>
[[nodiscard]] MatrixView<T> matrix_view(std::span<T> storage, std::size_t rows, std::size_t cols) {
  return matrix_view(storage, rows, cols, cols);
}

}  // namespace xgr
