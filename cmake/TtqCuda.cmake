# The CUDA backend switch. TTQ_ENABLE_CUDA is OFF by default; ON requires a CUDA compiler;
# AUTO turns CUDA on when CMake finds nvcc and says so either way. When on, this enables the
# CUDA language (CMAKE_CUDA_ARCHITECTURES defaults to "80;90": Ampere and Hopper, the oldest
# with bf16 tensor-core mma and the one the performance targets are set on) and defines the
# internal target ttq_cuda_options that ttq's own CUDA tests and benchmarks link. Consumers of
# ttq::ttq are not affected: the CUDA headers are header-only like the rest (docs/cuda.md).
#
# Sets TTQ_CUDA_ENABLED (ON/OFF) for tests/ and benchmarks/.

set(TTQ_ENABLE_CUDA OFF CACHE STRING "Build ttq's CUDA tests and benchmarks: OFF, ON, or AUTO (on if nvcc is found)")
set_property(CACHE TTQ_ENABLE_CUDA PROPERTY STRINGS OFF ON AUTO)

set(TTQ_CUDA_ENABLED OFF)
string(TOUPPER "${TTQ_ENABLE_CUDA}" ttq_cuda_request)
if(ttq_cuda_request STREQUAL "AUTO")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(TTQ_CUDA_ENABLED ON)
    message(STATUS "ttq: CUDA backend ON (TTQ_ENABLE_CUDA=AUTO found ${CMAKE_CUDA_COMPILER})")
  else()
    message(STATUS "ttq: CUDA backend OFF (TTQ_ENABLE_CUDA=AUTO found no CUDA compiler; put nvcc on PATH or set CMAKE_CUDA_COMPILER)")
  endif()
elseif(ttq_cuda_request)
  set(TTQ_CUDA_ENABLED ON)
  message(STATUS "ttq: CUDA backend ON (TTQ_ENABLE_CUDA=${TTQ_ENABLE_CUDA})")
else()
  message(STATUS "ttq: CUDA backend OFF (the default; -DTTQ_ENABLE_CUDA=ON or AUTO builds its tests and benchmarks)")
endif()

if(TTQ_CUDA_ENABLED)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)
  endif()
  enable_language(CUDA)
  if(CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 12.0)
    message(FATAL_ERROR "ttq: the CUDA backend needs nvcc 12.0 or newer (C++20); found ${CMAKE_CUDA_COMPILER_VERSION}")
  endif()
  # C++20 for every CUDA target of this project (set after enable_language: CMake's compiler
  # checks must not be asked for a dialect before it has identified nvcc). CMake before 3.26
  # does not know nvcc's C++20 flag; nvcc 12+ spells it as the host compilers do.
  if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION OR CMAKE_CUDA20_STANDARD_COMPILE_OPTION STREQUAL "")
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  set(CMAKE_CUDA_EXTENSIONS OFF)
  # The host compiler's own include directories (e.g. /usr/include, where Debian's xsimd and
  # Eigen targets point) must never be passed to nvcc as -isystem: that breaks libstdc++'s
  # #include_next <math.h>. CMake filters them for C++ targets only; do the same for CUDA.
  list(APPEND CMAKE_CUDA_IMPLICIT_INCLUDE_DIRECTORIES ${CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES})
  list(REMOVE_DUPLICATES CMAKE_CUDA_IMPLICIT_INCLUDE_DIRECTORIES)
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "ttq: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, CUDA architectures ${CMAKE_CUDA_ARCHITECTURES}")

  add_library(ttq_cuda_options INTERFACE)
  # EIGEN_NO_CUDA: ttq's host headers use Eigen on the host only; without it Eigen marks its
  # functions __host__ __device__ under nvcc and floods the build with warnings.
  target_compile_definitions(ttq_cuda_options INTERFACE EIGEN_NO_CUDA)
  # Host warnings as ttq_project_options (designated initializers that omit trailing members
  # are ttq's options idiom). 554: EDG's note that MatrixView's constrained conversion operator is never used for the
  # const instantiation (it is excluded by its requires-clause; GCC agrees and says nothing).
  # Never --use_fast_math or -prec-div=false: the quantize kernels' codes depend on IEEE
  # division and round-half-even (docs/cuda.md "Numerics").
  target_compile_options(ttq_cuda_options INTERFACE
    $<$<COMPILE_LANGUAGE:CUDA>:--diag-suppress=554 -Xcompiler=-Wall,-Wextra,-Wno-missing-field-initializers>)
  target_link_libraries(ttq_cuda_options INTERFACE CUDA::cudart)
endif()
