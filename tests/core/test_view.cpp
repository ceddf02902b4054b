#include <doctest/doctest.h>

#include <vector>

#include "xgr/core/view.hpp"

TEST_CASE("MatrixView addresses rows through the row stride") {
  std::vector<int> storage(3 * 5);
  for (std::size_t i = 0; i < storage.size(); ++i) storage[i] = static_cast<int>(i);
  const auto view = xgr::matrix_view(std::span<int>(storage), 3, 4, 5);  // 3 x 4 inside 3 x 5
  CHECK(view(0, 0) == 0);
  CHECK(view(1, 0) == 5);
  CHECK(view(2, 3) == 13);
  CHECK(view.row(2)[1] == 11);
  CHECK(view.size() == 12);
  CHECK(view.extent() == 14);
  const auto tail = view.row_range(1, 2);
  CHECK(tail.rows == 2);
  CHECK(tail(0, 0) == 5);
  const xgr::MatrixView<const int> read_only = view;
  CHECK(read_only(2, 2) == 12);
}

TEST_CASE("matrix_view rejects strides below the row length and storage that is too short") {
  std::vector<float> storage(10);
  CHECK_THROWS_AS((void)xgr::matrix_view(std::span<float>(storage), 2, 4, 3), xgr::Error);
  CHECK_THROWS_AS((void)xgr::matrix_view(std::span<float>(storage), 3, 4), xgr::Error);  // needs 12
  CHECK_NOTHROW((void)xgr::matrix_view(std::span<float>(storage), 2, 4, 6));              // needs exactly 10
  CHECK_THROWS_AS((void)xgr::matrix_view(static_cast<float*>(nullptr), 2, 2), xgr::Error);
  CHECK(xgr::matrix_view(static_cast<float*>(nullptr), 0, 7).empty());
}
