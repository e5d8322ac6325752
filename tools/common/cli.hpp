// Command-line handling shared by the real-model tools: `--key value` flags, boolean
// switches, the method flags every tool accepts, a progress bar on stderr, and JSON output.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "llama/ttq_linear.hpp"

namespace ttq::llama::cli {

/// Parsed `--key value` pairs and `--switch`es. Unknown flags are an error (LlamaError).
class Flags {
 public:
  /// `valued`: flags that take a value; `switches`: flags that do not.
  Flags(int argc, char** argv, const std::set<std::string>& valued, const std::set<std::string>& switches);
  bool has(const std::string& key) const { return values_.count(key) || switches_.count(key); }
  std::string get(const std::string& key, const std::string& fallback) const;
  double get_double(const std::string& key, double fallback) const;
  std::int64_t get_int(const std::string& key, std::int64_t fallback) const;

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> switches_;
};

/// The flags that select a method: --method --bits --group --rank --p --alpha --lambda --awq-clip
/// --alpha-grid --awq-normalisation.
const std::set<std::string>& method_flags();
const std::set<std::string>& method_switches();
/// Builds a MethodConfig from the flags. Defaults: see docs/tools.md.
MethodConfig method_from_flags(const Flags& flags);
/// The help text of the method flags.
std::string method_help();

/// A progress bar on stderr, drawn only when stderr is a terminal.
void progress(std::string_view label, std::size_t done, std::size_t total);

/// Minimal JSON writing for the tools' one-object outputs.
std::string json_escape(std::string_view s);

}  // namespace ttq::llama::cli
