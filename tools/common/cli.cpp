// Implementation of the shared command-line handling of the real-model tools.
#include "common/cli.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include <ttq/backend/parallel.hpp>

#include "common/data_dir.hpp"
#include "llama/error.hpp"

namespace ttq::llama::cli {

Flags::Flags(int argc, char** argv, const std::set<std::string>& valued, const std::set<std::string>& switches) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) throw LlamaError("unexpected argument '" + arg + "' (flags start with --)");
    const std::string key = arg.substr(2);
    if (switches.count(key)) {
      switches_.insert(key);
    } else if (valued.count(key)) {
      if (i + 1 >= argc) throw LlamaError("flag --" + key + " needs a value");
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

double Flags::get_double(const std::string& key, double fallback) const {
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0') throw LlamaError("--" + key + ": expected a number, got '" + it->second + "'");
  return v;
}

std::int64_t Flags::get_int(const std::string& key, std::int64_t fallback) const {
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (end == it->second.c_str() || *end != '\0') throw LlamaError("--" + key + ": expected an integer, got '" + it->second + "'");
  return v;
}

const std::set<std::string>& runtime_flags() {
  static const std::set<std::string> flags{"data-dir", "backend", "threads"};
  return flags;
}

int configure_threads(const Flags& flags) {
  if (!flags.has("threads")) return ttq::backend::current_executor()->concurrency();
  const std::int64_t threads = flags.get_int("threads", 0);
  if (threads < 1 || threads > 1024) throw LlamaError("--threads: expected 1..1024, got " + flags.get("threads", ""));
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

const std::set<std::string>& method_flags() {
  static const std::set<std::string> flags{"method", "bits", "group", "rank", "p", "alpha", "lambda", "alpha-grid", "error-rows"};
  return flags;
}

const std::set<std::string>& method_switches() {
  static const std::set<std::string> switches{"awq-clip", "awq-normalisation"};
  return switches;
}

MethodConfig method_from_flags(const Flags& flags) {
  MethodConfig c;
  c.method = parse_method(flags.get("method", "ttq"));
  c.bits = static_cast<int>(flags.get_int("bits", 3));
  c.group = static_cast<int>(flags.get_int("group", 32));
  c.rank = static_cast<int>(flags.get_int("rank", 0));
  const std::string alpha = flags.get("alpha", "auto");
  if (alpha == "auto") {
    c.alpha.reset();
  } else {
    c.alpha = flags.get_double("alpha", 0.5);
  }
  // The adaptive exponent and static AWQ use the l1 statistic (as AWQ); fixed-exponent TTQ the
  // max norm with lambda = 0, the best fixed setting of the sweep in docs/results.md.
  c.p = flags.get_double("p", (c.method == Method::awq || !c.alpha) ? 1.0 : INFINITY);
  c.lambda = flags.get_double("lambda", 0.0);
  if (flags.has("alpha-grid")) {
    c.alpha_grid.clear();
    std::istringstream in(flags.get("alpha-grid", ""));
    std::string item;
    while (std::getline(in, item, ',')) c.alpha_grid.push_back(std::strtod(item.c_str(), nullptr));
  }
  if (flags.has("backend")) c.backend = parse_backend(flags.get("backend", ""));
  if (flags.has("error-rows")) {
    const std::int64_t rows = flags.get_int("error-rows", 256);
    if (rows < 0 || rows > (1 << 30)) throw LlamaError("--error-rows: expected 0 (all rows) or a row count, got " + flags.get("error-rows", ""));
    c.error_rows = static_cast<int>(rows);
  }
  c.awq_clip_search = flags.has("awq-clip");
  c.awq_normalisation = flags.has("awq-normalisation");
  if (c.bits < 2 || c.bits > 8) throw LlamaError("--bits: expected 2..8, got " + std::to_string(c.bits));
  if (c.group < 0) throw LlamaError("--group: expected >= 1, or 0 for per-channel, got " + std::to_string(c.group));
  if (c.rank < 0) throw LlamaError("--rank: expected >= 0, got " + std::to_string(c.rank));
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
         "  --awq-clip                 static AWQ: also search per-group clip ratios\n"
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

std::string json_escape(std::string_view s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", ch);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out;
}

}  // namespace ttq::llama::cli
