// The Catch2 main of ttq_llama_tests (kept in its own translation unit so that editing a test
// does not recompile Catch2's runner).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
