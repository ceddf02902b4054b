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

# Adds an executable from one C++ source that runs the host reference everywhere and, compiled as
# CUDA where XGR_CUDA is on, also the CUDA implementation (the examples and the oracle's replay tool).
function(xgr_host_or_cuda_executable name source)
  if(XGR_CUDA)
    set_source_files_properties(${source} PROPERTIES LANGUAGE CUDA)
    xgr_cuda_executable(${name} ${source})
  else()
    add_executable(${name} ${source})
    target_link_libraries(${name} PRIVATE xgr::xgr xgr_warnings)
  endif()
endfunction()
