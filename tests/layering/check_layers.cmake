# The layers of include/ttq depend in one direction only (docs/design.md, "Layers"):
#
#   core  <-  quant  <-  stats, residual  <-  backend  <-  op  <-  ttq.hpp
#
# A header may include headers of its own layer and of the layers below it, never above. Run by
# CTest (`cmake -DTTQ_INCLUDE_DIR=.../include -P check_layers.cmake`); fails listing every
# include that runs against the direction.
cmake_minimum_required(VERSION 3.22)
if(NOT TTQ_INCLUDE_DIR)
  message(FATAL_ERROR "pass -DTTQ_INCLUDE_DIR=<repository>/include")
endif()

# Rank of each top-level folder of include/ttq; a header may include folders of rank <= its own,
# except that stats and residual (same rank) are independent of each other.
set(rank_core 0)
set(rank_quant 1)
set(rank_stats 2)
set(rank_residual 2)
set(rank_backend 3)
set(rank_op 4)

file(GLOB_RECURSE headers RELATIVE ${TTQ_INCLUDE_DIR}/ttq ${TTQ_INCLUDE_DIR}/ttq/*.hpp ${TTQ_INCLUDE_DIR}/ttq/*.cuh)
set(violations "")
set(checked 0)
foreach(header IN LISTS headers)
  string(REGEX MATCH "^[^/]+" layer "${header}")
  if(layer STREQUAL header)
    continue()  # ttq.hpp, version.hpp: the top, may include anything
  endif()
  if(NOT DEFINED rank_${layer})
    list(APPEND violations "${header}: folder '${layer}' has no place in the layer order (tests/layering/check_layers.cmake)")
    continue()
  endif()
  file(STRINGS ${TTQ_INCLUDE_DIR}/ttq/${header} includes REGEX "^#include [\"<]ttq/")
  foreach(line IN LISTS includes)
    string(REGEX REPLACE "^#include [\"<]ttq/([^/\">]+).*" "\\1" target "${line}")
    math(EXPR checked "${checked} + 1")
    if(target STREQUAL layer)
      continue()
    endif()
    if(NOT DEFINED rank_${target})
      continue()  # ttq/version.hpp and other top-level headers of the lowest kind
    endif()
    if(rank_${target} GREATER rank_${layer} OR (rank_${target} EQUAL rank_${layer}))
      list(APPEND violations "${header}: ${line}  (${layer} must not depend on ${target})")
    endif()
  endforeach()
endforeach()

list(LENGTH headers header_count)
if(violations)
  list(JOIN violations "\n  " text)
  message(FATAL_ERROR "includes against the layer direction:\n  ${text}")
endif()
message(STATUS "layers: ${header_count} headers, ${checked} ttq includes, all in the direction core <- quant <- stats/residual <- backend <- op")
