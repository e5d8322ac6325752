// Implementation of the shared command-line handling of the real-model tools.
#include "llama/cli.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "llama/tokenizer.hpp"  // LlamaError

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

const std::set<std::string>& method_flags() {
  static const std::set<std::string> flags{"method", "bits", "group", "rank", "p", "alpha", "lambda", "alpha-grid"};
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
         "  --awq-clip                 static AWQ: also search per-group clip ratios\n";
}

void progress(std::string_view label, std::size_t done, std::size_t total) {
  if (!isatty(STDERR_FILENO) || total == 0) return;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * done / total);
  std::fprintf(stderr, "\r%.*s [%.*s%*s] %zu/%zu", static_cast<int>(label.size()), label.data(), filled,
               "##############################", kWidth - filled, "", done, total);
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
