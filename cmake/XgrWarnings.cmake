# Warnings for xgr's own targets (never imposed on consumers of xgr::xgr).
add_library(xgr_warnings INTERFACE)
target_compile_options(xgr_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)

# Adds a CUDA test or benchmark executable built for XGR_CUDA_ARCHITECTURES.
function(xgr_cuda_executable name)
  add_executable(${name} ${ARGN})
  set_target_properties(${name} PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
  target_link_libraries(${name} PRIVATE xgr::cuda xgr_warnings)
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
endfunction()
