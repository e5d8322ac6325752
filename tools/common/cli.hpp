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
#include "llama/gguf.hpp"
#include "llama/model.hpp"

namespace ttq::llama::cli {

/// Parsed `--key value` pairs and `--switch`es. Unknown flags are an error (LlamaError).
class Flags {
 public:
  /// `valued`: flags that take a value; `switches`: flags that do not.
  Flags(int argc, char** argv, const std::set<std::string>& valued, const std::set<std::string>& switches);
  bool has(const std::string& key) const { return values_.count(key) || switches_.count(key); }
  std::string get(const std::string& key, const std::string& fallback) const;
  /// The value of --key as a finite number in [min, max] (`fallback` when absent; not checked).
  /// Strict: the whole value must be a decimal number (no leading space, no trailing text, no
  /// hexadecimal, no inf/nan); otherwise LlamaError naming --key, the range and the value.
  double get_double(const std::string& key, double fallback, double min, double max) const;
  /// The value of --key as an integer in [min, max] (`fallback` when absent; not checked). Strict
  /// as get_double; parsed into 64 bits first, so a value never wraps into the range.
  std::int64_t get_int(const std::string& key, std::int64_t fallback, std::int64_t min, std::int64_t max) const;

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

/// The largest text the tools read (--text, --calib-text, the bundled texts): 256 MiB, 200 times
/// the bundled WikiText-2 test text. A text is held whole with its tokens (about as many bytes
/// again) while the windows are cut; beyond the bound a file is refused before it is read, as a
/// device (/dev/zero) or a FIFO is.
inline constexpr std::uintmax_t kMaxTextBytes = std::uintmax_t{256} << 20;
/// The whole text file at `path`, read with a bound: a missing file, a directory, anything but a
/// regular file, and a file of more than kMaxTextBytes (by its size, and while reading: a file
/// that grows, or a /proc file that claims 0 bytes) are a LlamaError prefixed by `flag` ("--text";
/// "" for a bundled file). Never reads more than kMaxTextBytes + 1 bytes.
std::string read_text(const std::string& flag, const std::string& path);

/// The end of a tool's run: flushes stdout and checks that everything printed reached it (not a
/// full disk, a closed stdout or another write error). Returns `status` if so; otherwise prints
/// "<tool>: cannot write the output to stdout: <reason>" on stderr and returns 1, so that a
/// result that was not written is never reported as success (docs/tools.md, exit codes).
int finish_output(const char* tool, int status = 0);

/// The ranges of the method flags (docs/tools.md, "Strict flags"). The exponent and the norm
/// order are bounded so that the statistic D = c^alpha (c <= d_in) and the p-norm sums stay far
/// from float/double overflow. (Groups below kMinGroup: see ttq_linear.hpp.)
inline constexpr std::int64_t kMaxGroup = 1 << 20;
inline constexpr std::int64_t kMaxRank = 1 << 16;
inline constexpr double kMaxAlpha = 4.0;
inline constexpr double kMaxP = 32.0;

/// The --model path (default: the bundled stories260K).
std::string model_path(const Flags& flags);
/// Reads the GGUF model at model_path(flags); errors name --model when the user gave it.
GgufFile load_model(const Flags& flags);

/// The flags that select a method: --method --bits --group --rank --p --alpha --lambda --awq-clip
/// --alpha-grid --awq-normalisation.
const std::set<std::string>& method_flags();
const std::set<std::string>& method_switches();
/// Builds a MethodConfig from the flags. Defaults: see docs/tools.md. Throws LlamaError naming
/// the flag for a value out of range, and for a method flag the chosen method would ignore.
MethodConfig method_from_flags(const Flags& flags);
/// The help text of the method flags.
std::string method_help();

/// Progress on stderr: a bar with the rate when stderr is a terminal; otherwise one line at
/// every tenth of the work (so logs of long runs show progress too). `seconds`: time so far.
void progress(std::string_view label, std::size_t done, std::size_t total, double seconds = 0.0);

/// Minimal JSON writing for the tools' one-object outputs: the contents of a JSON string for any
/// bytes. Quotes, backslashes and control characters are escaped; valid UTF-8 passes through;
/// every byte that is not part of a valid UTF-8 sequence (a Latin-1 path, a truncated sequence,
/// an overlong form, a surrogate) becomes U+FFFD, so the output is always valid JSON.
std::string json_escape(std::string_view s);
/// A JSON number for a finite double (printf %.17g: round-trips); "null" for NaN or infinity.
std::string json_number(double v);

}  // namespace ttq::llama::cli
