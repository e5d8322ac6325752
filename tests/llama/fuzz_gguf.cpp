// libFuzzer entry point for the GGUF reader: any byte string must either parse or raise
// GgufError; anything else (a crash, a sanitizer report, another exception escaping, a huge
// allocation) is a bug. Seed it with truncations of tools/data/stories260K.gguf.
#include <cstddef>
#include <cstdint>
#include <span>

#include "llama/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto file = ttq::llama::read_gguf(std::span(reinterpret_cast<const std::byte*>(data), size));
    // Exercise the accessors on whatever parsed.
    for (const auto& kv : file.metadata()) (void)file.find(kv.key);
    for (const auto& t : file.tensors()) (void)file.find_tensor(t.name);
    (void)file.find_uint("general.alignment");
  } catch (const ttq::llama::GgufError&) {
  }
  return 0;
}
