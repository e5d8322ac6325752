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

#include "common/ttq_linear.hpp"
#include "llama/model.hpp"

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

/// The flags every tool takes besides the method's: --data-dir (docs/tools.md, "Bundled data"),
/// --backend scalar|simd|dispatch and --threads N.
const std::set<std::string>& runtime_flags();

/// Applies --threads N (ttq's executor gets a pool of N threads; default: TTQ_NUM_THREADS, else
/// every hardware thread) and returns the thread count in force.
int configure_threads(const Flags& flags);
/// The runner's ParallelFor over ttq's executor: the runner's attention and output head share
/// the projections' thread pool.
ParallelFor runner_parallel();
/// `name` in the bundled data folder (--data-dir, else $TTQ_DATA_DIR, else the install's).
std::string data_file(const Flags& flags, const std::string& name);

/// The flags that select a method: --method --bits --group --rank --p --alpha --lambda --awq-clip
/// --alpha-grid --awq-normalisation.
const std::set<std::string>& method_flags();
const std::set<std::string>& method_switches();
/// Builds a MethodConfig from the flags. Defaults: see docs/tools.md.
MethodConfig method_from_flags(const Flags& flags);
/// The help text of the method flags.
std::string method_help();

/// Progress on stderr: a bar with the rate when stderr is a terminal; otherwise one line at
/// every tenth of the work (so logs of long runs show progress too). `seconds`: time so far.
void progress(std::string_view label, std::size_t done, std::size_t total, double seconds = 0.0);

/// Minimal JSON writing for the tools' one-object outputs.
std::string json_escape(std::string_view s);

}  // namespace ttq::llama::cli
