# Project-internal build settings for ttq's own tests, benchmarks and examples.
# Consumers of ttq::ttq never see these.
add_library(ttq_project_options INTERFACE)
# Designated initializers that omit trailing members are our options idiom, and GCC 12 warns on
# them (-Wmissing-field-initializers) and on std::string internals (-Wrestrict, GCC bug 105329).
target_compile_options(ttq_project_options INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  -Wno-missing-field-initializers $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
if(TTQ_SANITIZE)
  target_compile_options(ttq_project_options INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(ttq_project_options INTERFACE -fsanitize=address,undefined)
endif()
