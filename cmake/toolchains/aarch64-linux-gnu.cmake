# Cross build for 64-bit Arm Linux with Debian's g++-aarch64-linux-gnu; the tests run under
# qemu-user (CTest prefixes them with CMAKE_CROSSCOMPILING_EMULATOR). Eigen, xsimd and Catch2
# are header-only, so the build machine's packages serve:
#   cmake -S . -B build/aarch64 --toolchain cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DTTQ_TEST_SCOPE=oracle -DTTQ_BUILD_EXAMPLES=OFF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Programs (and the emulator) come from the build machine; libraries and headers from the
# cross sysroot, except header-only packages' CMake configs, which are architecture-free.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# Debian installs xsimd's (architecture-free) CMake config under the build machine's multiarch
# directory, which a cross build does not search.
if(NOT xsimd_DIR)
  file(GLOB _ttq_xsimd_configs /usr/lib/*/cmake/xsimd/xsimdConfig.cmake)
  if(_ttq_xsimd_configs)
    list(GET _ttq_xsimd_configs 0 _ttq_xsimd_config)
    get_filename_component(_ttq_xsimd_dir ${_ttq_xsimd_config} DIRECTORY)
    set(xsimd_DIR ${_ttq_xsimd_dir} CACHE PATH "xsimd's CMake config (header-only)")
  endif()
endif()

find_program(TTQ_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(TTQ_QEMU_AARCH64)
  # "max": every extension qemu emulates, the dot product included (tests/CMakeLists.txt also
  # runs the dispatch test on a CPU without it).
  set(CMAKE_CROSSCOMPILING_EMULATOR ${TTQ_QEMU_AARCH64} -L /usr/aarch64-linux-gnu -cpu max)
endif()
