# Project-internal build settings for ttq's own tests, benchmarks and examples.
# Consumers of ttq::ttq never see these.
# ttq_warnings: warnings, numerics and sanitizers, for every target of ttq's own.
# ttq_project_options: those plus the instruction set of the tests and benchmarks (the top-level
# CMakeLists.txt adds -march=native to it); ttq::dispatch sets its ISAs per file instead.
add_library(ttq_warnings INTERFACE)
add_library(ttq_project_options INTERFACE)
target_link_libraries(ttq_project_options INTERFACE ttq_warnings)
# Designated initializers that omit trailing members are our options idiom, and GCC 12 warns on
# them (-Wmissing-field-initializers) and on std::string internals (-Wrestrict, GCC bug 105329).
target_compile_options(ttq_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  -Wno-missing-field-initializers $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
# Implicit FMA contraction changes decoded values and D by an ulp depending on the target ISA;
# the tests compare the scalar oracle bit for bit, so ttq's own targets never contract.
target_compile_options(ttq_warnings INTERFACE $<$<CXX_COMPILER_ID:GNU,Clang>:-ffp-contract=off>)
if(TTQ_SANITIZE)
  target_compile_options(ttq_warnings INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  # Compile time bounds CI, and ASan's poisoning of every local's scope was most of it: without
  # it a SIMD kernel unit compiles in 67 s instead of 218 s (GCC 12, -O1, ASan alone), and the
  # stage's build in 22 instead of 36 CPU minutes. Out-of-bounds (heap, stack, global) and
  # use-after-free are still caught; only the use of a local after its scope is given up.
  target_compile_options(ttq_warnings INTERFACE -fno-sanitize-address-use-after-scope)
  target_link_options(ttq_warnings INTERFACE -fsanitize=address,undefined)
endif()
# GCC 12's AVX-512 intrinsics (_mm512_undefined_* as pass-through operands) draw false
# -W(maybe-)uninitialized at inlined calls (GCC PR 105593, fixed in 13), in Eigen and ttq.
# The one place for this workaround.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(ttq_warnings INTERFACE -Wno-maybe-uninitialized -Wno-uninitialized)
endif()
