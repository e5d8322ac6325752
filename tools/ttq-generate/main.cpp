// ttq-generate: calibrates the chosen method on the prompt, decodes greedily with the quantized
// weights, and prints the continuation with its prefill and decode throughput, next to FP32's
// (unless --no-fp32). See docs/tools.md.
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "llama/gguf.hpp"
#include "common/perplexity.hpp"

using namespace ttq::llama;

namespace {

struct Generation {
  std::string text;
  int tokens = 0;                // decoded
  double setup_seconds = 0.0;    // building the model's projections (and static AWQ's calibration)
  double prefill_seconds = 0.0;  // the prompt: calibration (TTQ's per-prompt plan) and forward
  double seconds = 0.0;          // decode steps only
  // Why decoding stopped: "eos" or "bos" (the model ended the text), "tokens" (the -n budget),
  // "context" (the model's context is full).
  std::string stop_reason = "tokens";
};

double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Generation generate(const GgufFile& file, const Tokenizer& tokenizer, const MethodConfig& method,
                    const std::vector<int>& prompt, int steps, const std::vector<std::vector<int>>& calib) {
  Generation g;
  const auto setup = std::chrono::steady_clock::now();
  QuantizedLinears linears(method);
  LlamaModel model(file, linears.factory());
  model.set_parallel(cli::runner_parallel());
  calibrate_static_awq(model, linears, calib, 2000);
  g.setup_seconds = since(setup);
  // The prompt is the calibration: TTQ quantizes for it, then decodes with that quantization.
  const auto prefill = std::chrono::steady_clock::now();
  model.reset();
  std::vector<float> last = model.extend_last(prompt, CalibrationMode::calibrate_then_forward);
  g.prefill_seconds = since(prefill);
  int previous = prompt.back();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) {
    if (model.position() >= model.config().context_length) {
      g.stop_reason = "context";
      break;
    }
    int next = 0;
    for (int v = 1; v < static_cast<int>(last.size()); ++v)
      if (last[static_cast<std::size_t>(v)] > last[static_cast<std::size_t>(next)]) next = v;
    // The end of the text: EOS, or BOS, which starts a new text (stories260K ends a story with
    // it and would go on with the next one).
    if (next == tokenizer.eos_id() || next == tokenizer.bos_id()) {
      g.stop_reason = next == tokenizer.eos_id() ? "eos" : "bos";
      break;
    }
    g.text += tokenizer.decode_piece(previous, next);
    previous = next;
    ++g.tokens;
    last = model.decode_step(next);
  }
  g.seconds = since(start);
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--help") {
      std::printf("usage: ttq-generate [--model M.gguf] --prompt \"...\" [-n N | --tokens N] [--no-fp32] [--json] [method flags]\n"
                  "  --no-fp32                  run only the chosen method (default: FP32 first, as the reference)\n"
                  "  --json                     one JSON object per run on stdout (text, timings, tokens/s)\n%s",
                  cli::method_help().c_str());
      return cli::finish_output("ttq-generate");
    }
  try {
    // "-n" is accepted as an alias of --tokens.
    std::vector<char*> args(argv, argv + argc);
    for (auto& a : args)
      if (std::string(a) == "-n") a = const_cast<char*>("--tokens");
    std::set<std::string> valued{"model", "prompt", "tokens"};
    valued.insert(cli::method_flags().begin(), cli::method_flags().end());
    valued.insert(cli::runtime_flags().begin(), cli::runtime_flags().end());
    std::set<std::string> switches{"no-fp32", "json"};
    switches.insert(cli::method_switches().begin(), cli::method_switches().end());
    const cli::Flags flags(static_cast<int>(args.size()), args.data(), valued, switches);
    const int threads = cli::configure_threads(flags);
    const GgufFile file = cli::load_model(flags);
    const Tokenizer tokenizer = Tokenizer::from_gguf(file);
    const std::string prompt_text = flags.get("prompt", "Once upon a time, there was a little girl named Lily.");
    const std::vector<int> prompt = tokenizer.encode(prompt_text, /*add_bos=*/tokenizer.expects_bos());
    if (prompt.empty()) throw LlamaError("--prompt: the prompt encodes to no tokens");
    // -n is --tokens: the message names --tokens.
    const int steps = static_cast<int>(flags.get_int("tokens", 64, 1, 1 << 20));
    MethodConfig method = cli::method_from_flags(flags);
    method.borrow_weights = true;  // `file` lives until the end of main: projections use its weights in place
    std::vector<std::vector<int>> calib;
    if (method.method == Method::awq)
      calib = make_windows(tokenizer, cli::read_text("", cli::data_file(flags, "wikitext-2-raw.test.txt")),
                           {std::nullopt, 512, 2000, "the bundled WikiText-2 text (static AWQ's calibration)"});
    {
      // Every flag is checked against the model (group and rank against each projection, the
      // prompt against the context) before anything is printed, from the architecture alone.
      const LlamaConfig config = LlamaConfig::from_gguf(file);
      check_method_for_model(method, config);
      if (static_cast<int>(prompt.size()) >= config.context_length)
        throw LlamaError("--prompt: " + std::to_string(prompt.size()) + " tokens leave no room in the model's context of " +
                         std::to_string(config.context_length) + " tokens");
    }

    MethodConfig fp32 = method;
    fp32.method = Method::fp32;
    std::vector<MethodConfig> runs;
    if (!flags.has("no-fp32") && method.method != Method::fp32) runs.push_back(fp32);
    runs.push_back(method);
    const bool json = flags.has("json");
    for (const MethodConfig& m : runs) {
      const Generation g = generate(file, tokenizer, m, prompt, steps, calib);
      const double prefill_rate = g.prefill_seconds > 0 ? static_cast<double>(prompt.size()) / g.prefill_seconds : 0.0;
      const double decode_rate = g.seconds > 0 ? g.tokens / g.seconds : 0.0;
      const double total = g.setup_seconds + g.prefill_seconds + g.seconds;
      const std::string backend = m.method == Method::fp32 ? std::string("eigen fp32") : backend_description(m.backend);
      if (json) {
        std::printf("{\"method\": \"%s\", \"label\": \"%s\", \"bits\": %d, \"group\": %d, \"backend\": \"%s\", "
                    "\"threads\": %d, \"prompt_tokens\": %zu, \"tokens\": %d, \"stop_reason\": \"%s\", \"setup_seconds\": %.4f, "
                    "\"prefill_seconds\": %.4f, \"prefill_tokens_per_second\": %.2f, \"decode_seconds\": %.4f, "
                    "\"decode_tokens_per_second\": %.2f, \"total_seconds\": %.4f, \"text\": \"%s\"}\n",
                    method_name(m.method).c_str(), cli::json_escape(describe(m)).c_str(), m.method == Method::fp32 ? 32 : m.bits,
                    m.group, cli::json_escape(backend).c_str(), threads, prompt.size(), g.tokens, g.stop_reason.c_str(), g.setup_seconds,
                    g.prefill_seconds, prefill_rate, g.seconds, decode_rate, total, cli::json_escape(g.text).c_str());
      } else {
        std::printf("== %s [%s, %d threads]: prefill %zu tokens in %.3f s (%.1f tokens/s), decode %d tokens in %.3f s "
                    "(%.1f tokens/s, stopped: %s), total %.3f s\n%s%s\n\n",
                    describe(m).c_str(), backend.c_str(), threads, prompt.size(), g.prefill_seconds, prefill_rate, g.tokens,
                    g.seconds, decode_rate, g.stop_reason.c_str(), total, prompt_text.c_str(), g.text.c_str());
      }
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ttq-generate: %s\n", e.what());
    return 2;
  }
  return cli::finish_output("ttq-generate");
}
