// Catch2 entry point of the ttq test suite (kept alone so test files recompile independently).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
