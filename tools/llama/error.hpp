// LlamaError: the one exception type of the model runner for misuse or bad content above the
// file format (the GGUF reader's own GgufError covers the format itself).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ttq::llama {

// Misuse or bad content above the file format: tokenizer metadata that is missing or
// inconsistent, an unsupported architecture, a tensor of the wrong shape, a token id out of
// range, a sequence longer than the context, a bad command-line value.
class LlamaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An error message from streamable parts: cat("tensor ", name, " has ", n, " dims").
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

}  // namespace ttq::llama
