// xgr/core/error.hpp — the one exception type of the library.
//
// Every failure a caller can cause or observe (a bad argument, an exhausted buffer, a failed CUDA
// call, a corrupt file) surfaces as `xgr::Error`, which says *what* was attempted and *why* it
// failed. Callers that only want a message use `what()`; callers that react use `kind()`.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace xgr {

enum class ErrorKind {
  invalid_argument,  // the caller passed something the contract forbids
  out_of_memory,     // an allocation (host or device) failed
  capacity,          // a fixed-size resource (workspace, pool) is too small for the request
  cuda,              // a CUDA runtime call or kernel launch failed
  io,                // reading or parsing external data failed
  internal,          // a broken invariant inside xgr: a bug, please report it
};

[[nodiscard]] constexpr std::string_view to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::invalid_argument: return "invalid argument";
    case ErrorKind::out_of_memory: return "out of memory";
    case ErrorKind::capacity: return "capacity exceeded";
    case ErrorKind::cuda: return "CUDA error";
    case ErrorKind::io: return "I/O error";
    case ErrorKind::internal: return "internal error";
  }
  return "unknown error";
}

class Error : public std::runtime_error {
 public:
  // `operation`: what was attempted ("Buffer<float, device>: allocate 4096 bytes").
  // `reason`: why it failed ("cudaErrorMemoryAllocation: out of memory").
  Error(ErrorKind kind, std::string operation, std::string reason)
      : std::runtime_error(compose(kind, operation, reason)),
        kind_(kind),
        operation_(std::move(operation)),
        reason_(std::move(reason)) {}

  [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }
  [[nodiscard]] const std::string& operation() const noexcept { return operation_; }
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }

 private:
  static std::string compose(ErrorKind kind, const std::string& operation, const std::string& reason) {
    std::string message = "xgr: ";
    message += operation;
    message += ": ";
    message += to_string(kind);
    if (!reason.empty()) {
      message += ": ";
      message += reason;
    }
    return message;
  }

  ErrorKind kind_;
  std::string operation_;
  std::string reason_;
};

// Throws `Error` with the given kind unless `condition` holds. A function, not a macro, so that
// the message arguments are ordinary expressions. The reason is a string, or a callable that
// returns one: a reason that formats numbers allocates, and most checks sit on paths taken on every
// call or step (argument validation, copies, views), so such a reason is passed as a lambda and
// built only on failure:
//
//   require_argument(k <= max_k, op, [&] { return "k = " + std::to_string(k) + " exceeds max_k"; });
inline void require(bool condition, ErrorKind kind, std::string_view operation, std::string_view reason) {
  if (!condition) [[unlikely]] throw Error(kind, std::string(operation), std::string(reason));
}

template <class MakeReason>
  requires std::is_invocable_r_v<std::string, MakeReason&>
inline void require(bool condition, ErrorKind kind, std::string_view operation, MakeReason&& make_reason) {
  if (!condition) [[unlikely]] throw Error(kind, std::string(operation), make_reason());
}

inline void require_argument(bool condition, std::string_view operation, std::string_view reason) {
  require(condition, ErrorKind::invalid_argument, operation, reason);
}

template <class MakeReason>
  requires std::is_invocable_r_v<std::string, MakeReason&>
inline void require_argument(bool condition, std::string_view operation, MakeReason&& make_reason) {
  require(condition, ErrorKind::invalid_argument, operation, make_reason);
}

namespace detail {

// Multiplies counts by element sizes without silent wrap-around: every byte count in xgr that
// derives from user-supplied sizes goes through here.
[[nodiscard]] inline std::size_t checked_bytes(std::size_t count, std::size_t element_bytes, std::string_view operation) {
  if (element_bytes != 0 && count > static_cast<std::size_t>(-1) / element_bytes) {
    throw Error(ErrorKind::invalid_argument, std::string(operation),
                std::to_string(count) + " elements of " + std::to_string(element_bytes) +
                    " bytes overflow std::size_t");
  }
  return count * element_bytes;
}

}  // namespace detail
}  // namespace xgr
