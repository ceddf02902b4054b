# Third-party packages for xgr's own tests, examples and benchmarks (the library itself needs
# none but the CUDA Toolkit). Each is found through its CMake package where the distribution ships
# one, else through its header, so that the same CMake works on Debian (scripts/install-deps.sh)
# and on machines where the libraries were installed by other means.

find_package(doctest CONFIG QUIET)
if(NOT TARGET doctest::doctest)
  find_path(XGR_DOCTEST_INCLUDE_DIR doctest/doctest.h)
  if(NOT XGR_DOCTEST_INCLUDE_DIR)
    message(FATAL_ERROR "doctest not found: run scripts/install-deps.sh (Debian package doctest-dev)")
  endif()
  add_library(doctest::doctest INTERFACE IMPORTED)
  target_include_directories(doctest::doctest INTERFACE ${XGR_DOCTEST_INCLUDE_DIR})
endif()

find_package(fmt CONFIG QUIET)
if(NOT TARGET fmt::fmt)
  message(FATAL_ERROR "fmt not found: run scripts/install-deps.sh (Debian package libfmt-dev)")
endif()

if(XGR_BUILD_BENCHMARKS)
  find_package(benchmark CONFIG QUIET)
  if(NOT TARGET benchmark::benchmark)
    message(FATAL_ERROR "Google Benchmark not found: run scripts/install-deps.sh (Debian package libbenchmark-dev)")
  endif()
endif()

find_package(Threads REQUIRED)
