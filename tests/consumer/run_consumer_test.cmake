# Configures, builds and runs tests/consumer against xgr, as a user's project would.
#   MODE=find_package      install xgr from XGR_BUILD_DIR into a fresh prefix, then find_package it
#   MODE=add_subdirectory  add the xgr source tree to the consumer's build
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run_step description)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${description} failed (${result}):\n${output}")
  endif()
  message(STATUS "${description}: ok")
endfunction()

set(configure_args -S "${XGR_SOURCE_DIR}/tests/consumer" -B "${WORK_DIR}/build" -G "${GENERATOR}"
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCONSUMER_WITH_CUDA=${WITH_CUDA})
if(WITH_CUDA)
  list(APPEND configure_args -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER} "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}")
endif()

if(MODE STREQUAL "find_package")
  run_step("install xgr" ${CMAKE_COMMAND} --install "${XGR_BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
  list(APPEND configure_args -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
else()
  list(APPEND configure_args -DXGR_SOURCE_DIR=${XGR_SOURCE_DIR} -DXGR_CUDA=${WITH_CUDA})
endif()

run_step("configure consumer (${MODE})" ${CMAKE_COMMAND} ${configure_args})
run_step("build consumer (${MODE})" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run_step("run host consumer" "${WORK_DIR}/build/consumer_host")
if(WITH_CUDA)
  run_step("run CUDA consumer" "${WORK_DIR}/build/consumer_cuda")
endif()
