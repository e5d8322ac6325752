// Implementation of the shared command-line handling of the real-model tools.
#include "common/cli.hpp"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <vector>

#include <ttq/backend/parallel.hpp>

#include "common/data_dir.hpp"
#include "llama/error.hpp"

namespace ttq::llama::cli {

namespace {

// A number for a message: integers without a decimal point, others as %g.
std::string show(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// Strict decimal syntax for from_chars: it already rejects leading spaces and '+', but accepts
// "inf", "nan" and "infinity" for doubles; those are refused by the finiteness check.
double parse_double(const std::string& key, const std::string& value, double min, double max, const char* also = "") {
  double v = 0.0;
  const char* first = value.data();
  const char* last = value.data() + value.size();
  const auto [ptr, ec] = std::from_chars(first, last, v, std::chars_format::general);
  if (value.empty() || ec != std::errc() || ptr != last || !std::isfinite(v) || v < min || v > max)
    throw LlamaError("--" + key + ": expected a number in [" + show(min) + ", " + show(max) + "]" + also + ", got '" + value + "'");
  return v;
}

}  // namespace

Flags::Flags(int argc, char** argv, const std::set<std::string>& valued, const std::set<std::string>& switches) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) throw LlamaError("unexpected argument '" + arg + "' (flags start with --)");
    const std::string key = arg.substr(2);
    if (switches.count(key)) {
      switches_.insert(key);
    } else if (valued.count(key)) {
      if (i + 1 >= argc) throw LlamaError("flag --" + key + " needs a value");
      // A repeated flag would silently keep one of its values.
      if (values_.count(key))
        throw LlamaError("flag --" + key + " given twice ('" + values_[key] + "' and '" + argv[i + 1] + "')");
      values_[key] = argv[++i];
    } else {
      throw LlamaError("unknown flag --" + key + " (see --help)");
    }
  }
}

std::string Flags::get(const std::string& key, const std::string& fallback) const {
  auto it = values_.find(key);
  return it == values_.end() ? fallback : it->second;
}

double Flags::get_double(const std::string& key, double fallback, double min, double max) const {
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  return parse_double(key, it->second, min, max);
}

std::int64_t Flags::get_int(const std::string& key, std::int64_t fallback, std::int64_t min, std::int64_t max) const {
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  const std::string& value = it->second;
  std::int64_t v = 0;
  const char* last = value.data() + value.size();
  const auto [ptr, ec] = std::from_chars(value.data(), last, v, 10);
  if (value.empty() || ec != std::errc() || ptr != last || v < min || v > max)
    throw LlamaError("--" + key + ": expected an integer in " + std::to_string(min) + ".." + std::to_string(max) + ", got '" +
                     value + "'");
  return v;
}

std::string read_text(const std::string& flag, const std::string& path) {
  const auto fail = [&](const std::string& message) -> void { throw LlamaError(flag.empty() ? message : flag + ": " + message); };
  // A directory opens as a stream that reads as nothing, a device or a FIFO as one that never
  // ends (/dev/zero): only a regular file is read, and only so much of it.
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) fail("cannot open '" + path + "': no such file");
  if (std::filesystem::is_directory(status)) fail("'" + path + "' is a directory, not a text file");
  if (!std::filesystem::is_regular_file(status))
    fail("'" + path + "' is not a regular file (a device, FIFO or socket): texts are read from regular files only");
  const auto too_large = [&](const std::string& size) {
    fail("'" + path + "' is " + size + ", more than the " + std::to_string(kMaxTextBytes >> 20) +
         " MiB the tools read as a text (docs/tools.md); pass a shorter extract");
  };
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxTextBytes) too_large(std::to_string(size) + " bytes");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '" + path + "'");
  std::string text;
  if (!ec) text.reserve(static_cast<std::size_t>(size));
  std::vector<char> buffer(std::size_t{1} << 16);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    text.append(buffer.data(), static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxTextBytes) too_large("over " + std::to_string(kMaxTextBytes) + " bytes (more than its size said)");
  }
  if (in.bad()) fail("cannot read '" + path + "'");
  return text;
}

int finish_output(const char* tool, int status) {
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0;
  const int flush_error = errno;
  if (flushed && !std::ferror(stdout)) return status;
  std::fprintf(stderr, "%s: cannot write the output to stdout: %s\n", tool,
               flush_error != 0 ? std::strerror(flush_error) : "a write failed");
  return 1;
}

const std::set<std::string>& runtime_flags() {
  static const std::set<std::string> flags{"data-dir", "backend", "threads"};
  return flags;
}

int configure_threads(const Flags& flags) {
  if (!flags.has("threads")) return ttq::backend::current_executor()->concurrency();
  const std::int64_t threads = flags.get_int("threads", 0, 1, 1024);
  ttq::backend::set_executor(ttq::backend::thread_pool_executor(static_cast<int>(threads)));
  return static_cast<int>(threads);
}

ParallelFor runner_parallel() {
  return [](int count, const std::function<void(int, int)>& body) {
    const auto executor = ttq::backend::current_executor();
    ttq::backend::parallel_for(*executor, count, 1, [&](ttq::Index begin, ttq::Index end) {
      body(static_cast<int>(begin), static_cast<int>(end));
    });
  };
}

std::string data_file(const Flags& flags, const std::string& name) {
  return bundled_file(flags.has("data-dir") ? std::optional<std::string>(flags.get("data-dir", "")) : std::nullopt, name);
}

std::string model_path(const Flags& flags) {
  return flags.has("model") ? flags.get("model", "") : data_file(flags, "stories260K.gguf");
}

GgufFile load_model(const Flags& flags) {
  const std::string path = model_path(flags);
  if (!flags.has("model")) return read_gguf_file(path);
  try {
    return read_gguf_file(path);
  } catch (const std::exception& e) {
    throw LlamaError(std::string("--model: ") + e.what());
  }
}

const std::set<std::string>& method_flags() {
  static const std::set<std::string> flags{"method", "bits", "group", "rank", "p", "alpha", "lambda", "alpha-grid", "error-rows",
                                          "clip", "clip-rank", "relative-floor", "awq-mode"};
  return flags;
}

const std::set<std::string>& method_switches() {
  static const std::set<std::string> switches{"awq-clip", "awq-normalisation"};
  return switches;
}

namespace {

// A method flag given for a method (or mode) that ignores it would be reported as if it ran.
void require_applies(const Flags& flags, const std::string& key, bool applies, const char* applies_to) {
  if (flags.has(key) && !applies)
    throw LlamaError("--" + key + " applies only to " + applies_to + "; it would be ignored here");
}

}  // namespace

MethodConfig method_from_flags(const Flags& flags) {
  MethodConfig c;
  c.method = parse_method(flags.get("method", "ttq"));
  const bool quantized = c.method != Method::fp32;
  const bool ttq = c.method == Method::ttq;
  // Every number is parsed into 64 bits (or a double) and range-checked before it is narrowed.
  c.bits = static_cast<int>(flags.get_int("bits", 3, 2, 8));
  c.group = static_cast<int>(flags.get_int("group", 32, 0, kMaxGroup));
  c.rank = static_cast<int>(flags.get_int("rank", 0, 0, kMaxRank));
  const std::string alpha = flags.get("alpha", "auto");
  if (alpha == "auto") {
    c.alpha.reset();
  } else {
    c.alpha = flags.get_double("alpha", 0.5, 0.0, kMaxAlpha);
  }
  const bool adaptive = ttq && !c.alpha;
  const bool fixed = ttq && c.alpha;
  // The adaptive exponent and static AWQ use the l1 statistic (as AWQ); fixed-exponent TTQ the
  // max norm with lambda = 0, the best fixed setting of the sweep in docs/results.md.
  const std::string p = flags.get("p", "");
  if (p == "inf" || p == "infinity") c.p = INFINITY;
  else if (flags.has("p")) c.p = parse_double("p", p, 1.0, kMaxP, " or inf");
  else c.p = (c.method == Method::awq || !c.alpha) ? 1.0 : INFINITY;
  c.lambda = flags.get_double("lambda", 0.0, 0.0, 1.0);
  if (flags.has("alpha-grid")) {
    c.alpha_grid.clear();
    const std::string grid = flags.get("alpha-grid", "");
    std::size_t start = 0;
    for (;;) {
      const std::size_t comma = grid.find(',', start);
      const std::string value = grid.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      c.alpha_grid.push_back(parse_double("alpha-grid", value, 0.0, kMaxAlpha));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  if (flags.has("backend")) c.backend = parse_backend(flags.get("backend", ""));
  if (flags.has("error-rows")) c.error_rows = static_cast<int>(flags.get_int("error-rows", 256, 0, 1 << 30));
  if (flags.has("clip")) c.clip = parse_clip(flags.get("clip", "none"));
  c.clip_rank = static_cast<int>(flags.get_int("clip-rank", 0, 0, kMaxGroup));
  c.relative_floor = flags.get_double("relative-floor", c.relative_floor, 0.0, 0.999);
  c.awq_clip_search = flags.has("awq-clip");
  if (flags.has("awq-mode")) c.awq_mode = parse_awq_mode(flags.get("awq-mode", ""));
  c.awq_normalisation = flags.has("awq-normalisation");
  require_applies(flags, "bits", quantized, "the quantized methods (not --method fp32)");
  require_applies(flags, "group", quantized, "the quantized methods (not --method fp32)");
  require_applies(flags, "backend", quantized, "the quantized methods (--method fp32 runs Eigen)");
  require_applies(flags, "p", ttq || c.method == Method::awq, "--method ttq and --method awq");
  require_applies(flags, "alpha", ttq, "--method ttq");
  require_applies(flags, "rank", ttq, "--method ttq");
  require_applies(flags, "lambda", fixed, "--method ttq with a fixed --alpha");
  require_applies(flags, "alpha-grid", adaptive, "--method ttq with --alpha auto");
  require_applies(flags, "awq-normalisation", adaptive, "--method ttq with --alpha auto");
  require_applies(flags, "error-rows", adaptive, "--method ttq with --alpha auto");
  require_applies(flags, "clip", adaptive, "--method ttq with --alpha auto");
  require_applies(flags, "relative-floor", adaptive, "--method ttq with --alpha auto");
  require_applies(flags, "clip-rank", adaptive && c.clip == ClipMode::block, "--clip block");
  require_applies(flags, "awq-clip", c.method == Method::awq, "--method awq");
  require_applies(flags, "awq-mode", c.method == Method::awq, "--method awq");
  // llm-awq's procedure fixes its statistic (mean |x|, p = 1).
  require_applies(flags, "p", c.awq_mode != AwqMode::llm_awq, "--awq-mode per-projection and --method ttq");
  // Groups the AWQ-compatible format would destroy (docs/numerics.md).
  if (quantized) check_group(c.group);
  return c;
}

std::string method_help() {
  return "  --method fp32|rtn|awq|ttq  quantization method (default ttq)\n"
         "  --bits b                   2..8 (default 3)\n"
         "  --group g                  group size, 0 = per-channel (default 32; ragged last groups allowed)\n"
         "  --rank r                   TTQ low-rank residual rank (default 0)\n"
         "  --alpha a|auto             TTQ exponent; auto = chosen per layer and prompt (default auto)\n"
         "  --p p                      norm of the activation statistic, inf allowed (default 1 for auto and awq,\n"
         "                             inf for a fixed alpha)\n"
         "  --lambda l                 TTQ damping toward uniform, fixed alpha only (default 0)\n"
         "  --alpha-grid a,b,...       candidate exponents of --alpha auto (default 0,0.1,...,0.9)\n"
         "  --awq-normalisation        auto: normalise candidate scales as llm-awq (sqrt(max*min))\n"
         "  --error-rows n             auto: measure each candidate's error on every k-th row of layers taller\n"
         "                             than n, k = ceil(rows / n); 0 = every row (default 256)\n"
         "  --clip none|diag|block     auto: online clip search per (row, group) on the prompt; block weighs a\n"
         "                             group's error by the prompt's Gram block, diag by its diagonal (default none)\n"
         "  --clip-rank k              --clip block: top-k eigenpairs of each Gram block plus the rest's diagonal\n"
         "                             (default 0: the exact block)\n"
         "  --relative-floor r         auto: D_j >= r * mean_k D_k, so channels the prompt did not use keep their\n"
         "                             weights for decode tokens (default 0)\n"
         "  --awq-clip                 static AWQ: also search per-group clip ratios\n"
         "  --awq-mode M               static AWQ: per-projection (each scale on its own output, default) or\n"
         "                             llm-awq (llm-awq's procedure: shared q/k/v and gate/up scales searched on\n"
         "                             the block's attention and FFN outputs, clamp clip; docs/tools.md)\n"
         "  --backend B                where the kernels run: dispatch (best ISA of this CPU, default),\n"
         "                             simd (the ISA the tools were compiled for) or scalar (the reference)\n"
         "  --threads N                threads for the projections and the runner (default: all; TTQ_NUM_THREADS)\n"
         "  --data-dir DIR             the bundled model and texts (default: $TTQ_DATA_DIR, else the install's)\n";
}

void progress(std::string_view label, std::size_t done, std::size_t total, double seconds) {
  if (total == 0) return;
  const double rate = seconds > 0.0 ? static_cast<double>(done) / seconds : 0.0;
  if (!isatty(STDERR_FILENO)) {
    // Every tenth of the work, and the end: a log line, not a redrawn bar.
    if (done != total && (done * 10 / total) == ((done - 1) * 10 / total)) return;
    std::fprintf(stderr, "%.*s: %zu/%zu (%.1f s, %.2f/s)\n", static_cast<int>(label.size()), label.data(), done, total, seconds, rate);
    return;
  }
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * done / total);
  std::fprintf(stderr, "\r%.*s [%.*s%*s] %zu/%zu %.1f s, %.2f/s", static_cast<int>(label.size()), label.data(), filled,
               "##############################", kWidth - filled, "", done, total, seconds, rate);
  if (done == total) std::fputc('\n', stderr);
  std::fflush(stderr);
}

namespace {

// The length of the valid UTF-8 sequence at s[i] (1..4), or 0 if the byte there does not start
// one (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) n = 2;
  else if (b0 == 0xE0) { n = 3; lo = 0xA0; }
  else if (b0 == 0xED) { n = 3; hi = 0x9F; }
  else if (b0 >= 0xE1 && b0 <= 0xEF) n = 3;
  else if (b0 == 0xF0) { n = 4; lo = 0x90; }
  else if (b0 >= 0xF1 && b0 <= 0xF3) n = 4;
  else if (b0 == 0xF4) { n = 4; hi = 0x8F; }
  else return 0;
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return n;
}

}  // namespace

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char ch = static_cast<unsigned char>(s[i]);
    const std::size_t n = utf8_sequence(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD for a byte that is not valid UTF-8
      ++i;
      continue;
    }
    if (n > 1) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (ch < 0x20 || ch == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(ch));
          out += buf;
        } else {
          out += static_cast<char>(ch);
        }
    }
    ++i;
  }
  return out;
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace ttq::llama::cli
