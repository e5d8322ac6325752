# Driven by CTest: builds one consumer project and runs it.
#   -DMODE=find_package|add_subdirectory -DTTQ_SOURCE_DIR=... -DWORK_DIR=... [-DTTQ_BINARY_DIR=...]
# find_package mode first installs ttq into WORK_DIR/prefix: the build tree TTQ_BINARY_DIR (built,
# ttq::dispatch included) when given, else a fresh configure and build of TTQ_SOURCE_DIR.
cmake_minimum_required(VERSION 3.22)
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
endfunction()
set(consumer_dir ${TTQ_SOURCE_DIR}/tests/package/${MODE}_consumer)
if(MODE STREQUAL "find_package")
  if(TTQ_BINARY_DIR)
    # Install the build tree that ran this test (its ttq::dispatch is already compiled).
    run(${CMAKE_COMMAND} --install ${TTQ_BINARY_DIR} --prefix ${WORK_DIR}/prefix)
  else()
    run(${CMAKE_COMMAND} -S ${TTQ_SOURCE_DIR} -B ${WORK_DIR}/ttq-build -DTTQ_BUILD_TESTS=OFF
        -DTTQ_BUILD_BENCHMARKS=OFF -DTTQ_BUILD_EXAMPLES=OFF -DTTQ_BUILD_TOOLS=OFF -DTTQ_BUILD_DISPATCH=ON
        -DTTQ_INSTALL=ON -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
    run(${CMAKE_COMMAND} --build ${WORK_DIR}/ttq-build)
    run(${CMAKE_COMMAND} --install ${WORK_DIR}/ttq-build)
  endif()
  run(${CMAKE_COMMAND} -S ${consumer_dir} -B ${WORK_DIR}/consumer-build -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
else()
  run(${CMAKE_COMMAND} -S ${consumer_dir} -B ${WORK_DIR}/consumer-build -DTTQ_SOURCE_DIR=${TTQ_SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
run(${WORK_DIR}/consumer-build/consumer)
