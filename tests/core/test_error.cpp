#include <doctest/doctest.h>

#include <limits>
#include <string>

#include "xgr/core/error.hpp"

TEST_CASE("Error carries what was attempted and why it failed") {
  const xgr::Error error(xgr::ErrorKind::capacity, "KvPool::admit request 7", "no free pages");
  CHECK(error.kind() == xgr::ErrorKind::capacity);
  CHECK(error.operation() == "KvPool::admit request 7");
  CHECK(error.reason() == "no free pages");
  CHECK(std::string(error.what()) == "xgr: KvPool::admit request 7: capacity exceeded: no free pages");
}

TEST_CASE("Error is a std::runtime_error so generic handlers catch it") {
  CHECK_THROWS_AS(throw xgr::Error(xgr::ErrorKind::io, "read", "eof"), std::runtime_error);
}

TEST_CASE("require_argument throws invalid_argument with the reason only when the condition fails") {
  CHECK_NOTHROW(xgr::require_argument(true, "op", "never shown"));
  try {
    xgr::require_argument(false, "MaskedTopK::run", "k must be positive");
    FAIL("require_argument(false) did not throw");
  } catch (const xgr::Error& error) {
    CHECK(error.kind() == xgr::ErrorKind::invalid_argument);
    CHECK(error.operation() == "MaskedTopK::run");
    CHECK(error.reason() == "k must be positive");
  }
}

TEST_CASE("a reason given as a callable is built only when the check fails") {
  int built = 0;
  const auto reason = [&] {
    ++built;
    return "k = " + std::to_string(7) + " exceeds max_k";
  };
  xgr::require_argument(true, "op", reason);
  xgr::require(true, xgr::ErrorKind::capacity, "op", reason);
  CHECK(built == 0);
  try {
    xgr::require(false, xgr::ErrorKind::capacity, "op", reason);
    FAIL("a failed check must throw");
  } catch (const xgr::Error& error) {
    CHECK(error.kind() == xgr::ErrorKind::capacity);
    CHECK(error.reason() == "k = 7 exceeds max_k");
  }
  CHECK(built == 1);
  CHECK_THROWS_AS(xgr::require_argument(false, "op", reason), xgr::Error);
  CHECK(built == 2);
}

TEST_CASE("checked_bytes rejects products that overflow size_t") {
  CHECK(xgr::detail::checked_bytes(10, 4, "op") == 40);
  CHECK(xgr::detail::checked_bytes(0, 8, "op") == 0);
  const std::size_t huge = std::numeric_limits<std::size_t>::max() / 4 + 1;
  CHECK_THROWS_AS((void)xgr::detail::checked_bytes(huge, 4, "op"), xgr::Error);
  CHECK(xgr::detail::checked_bytes(huge - 1, 4, "op") == (huge - 1) * 4);
}

TEST_CASE("every error kind has a name") {
  for (const auto kind : {xgr::ErrorKind::invalid_argument, xgr::ErrorKind::out_of_memory, xgr::ErrorKind::capacity,
                          xgr::ErrorKind::cuda, xgr::ErrorKind::io, xgr::ErrorKind::internal}) {
    CHECK(xgr::to_string(kind) != "unknown error");
  }
}
