// What a call throws, as a string a CHECK can compare and print.
#pragma once

#include <string>

#include "xgr/core/error.hpp"

namespace xgr::test {

// "no error", the xgr::ErrorKind's name, or "another exception".
template <class F>
std::string error_of(F&& call) {
  try {
    call();
  } catch (const xgr::Error& error) {
    return std::string(xgr::to_string(error.kind()));
  } catch (...) {
    return "another exception";
  }
  return "no error";
}

inline const std::string invalid_argument_error(xgr::to_string(xgr::ErrorKind::invalid_argument));
inline const std::string capacity_error(xgr::to_string(xgr::ErrorKind::capacity));

}  // namespace xgr::test
