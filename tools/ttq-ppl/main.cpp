// ttq-ppl: perplexity of a Llama-architecture GGUF model on a text, with every linear
// projection quantized by the chosen method (FP32, RTN, static AWQ, TTQ), under the paper or the
// causal protocol. Prints a one-line summary, or one JSON object with --json. See docs/tools.md.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>

#include "common/cli.hpp"
#include "llama/gguf.hpp"
#include "common/perplexity.hpp"

using namespace ttq::llama;

namespace {

// The file a flag names (bounded: cli::read_text), the flag named in any error.
std::string read_input(const char* flag, const std::string& path) { return cli::read_text(std::string("--") + flag, path); }

const char* kUsage =
    "usage: ttq-ppl [--model M.gguf] [--text T.txt] [method flags] [--calib-text C.txt --calib-tokens N]\n"
    "               [--ctx n] [--separator S] [--limit-tokens N] [--protocol paper|causal|stream|llama-cpp] [--json]\n"
    "  --model M.gguf             default: the bundled stories260K\n"
    "  --text T.txt               default: the bundled TinyStories sample (with --separator '<|endoftext|>')\n"
    "  --separator S              score each document between lines equal to S on its own (with BOS);\n"
    "                             without it the text is one token stream cut into --ctx windows\n"
    "  --ctx n                    window / document budget in tokens, BOS included (default 512)\n"
    "  --limit-tokens N           evaluate only the first N tokens (documents: whole documents first,\n"
    "                             the last one truncated; default: all)\n"
    "  --protocol P               paper: TTQ calibrates on each window; causal: on its first half,\n"
    "                             only the second half is scored (for every method); stream: the paper's\n"
    "                             appendix G (one BOS for the whole text, windows of --ctx tokens without\n"
    "                             BOS of their own, the tail dropped); llama-cpp: llama-perplexity's windows\n"
    "                             and scored tokens (docs/tools.md, \"Protocols\") (default paper)\n"
    "  --calib-text C.txt         static AWQ's calibration text (default: the bundled WikiText-2)\n"
    "  --calib-tokens N           static AWQ's calibration tokens (default 2000; --awq-mode llm-awq: 65536,\n"
    "                             llm-awq's 128 samples of 512 tokens, or the whole text when shorter)\n"
    "  --json                     print one JSON object on stdout\n";

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--help") {
      std::printf("%s%s", kUsage, cli::method_help().c_str());
      return cli::finish_output("ttq-ppl");
    }
  try {
    std::set<std::string> valued{"model", "text", "calib-text", "calib-tokens", "ctx", "separator", "limit-tokens", "protocol"};
    valued.insert(cli::method_flags().begin(), cli::method_flags().end());
    valued.insert(cli::runtime_flags().begin(), cli::runtime_flags().end());
    std::set<std::string> switches{"json"};
    switches.insert(cli::method_switches().begin(), cli::method_switches().end());
    const cli::Flags flags(argc, argv, valued, switches);
    const int threads = cli::configure_threads(flags);

    const std::string model_path = cli::model_path(flags);
    const bool default_text = !flags.has("text");
    const std::string text_path = flags.has("text") ? flags.get("text", "") : cli::data_file(flags, "tinystories-valid.head32k.txt");
    CorpusOptions corpus;
    // Bounded before narrowing; the model's context length is checked once it is loaded.
    corpus.ctx = static_cast<int>(flags.get_int("ctx", 512, 4, 1 << 24));
    corpus.limit_tokens = flags.get_int("limit-tokens", 0, 0, std::int64_t{1} << 40);
    corpus.source = "--text '" + text_path + "'";
    const Protocol protocol = parse_protocol(flags.get("protocol", "paper"));
    corpus.protocol = protocol;
    // The bundled TinyStories text is scored per document, except under a whole-stream protocol.
    if (flags.has("separator")) corpus.separator = flags.get("separator", "");
    else if (default_text && !cuts_whole_stream(protocol)) corpus.separator = "<|endoftext|>";
    MethodConfig method = cli::method_from_flags(flags);
    // The bundled WikiText is static AWQ's calibration default only: other methods run without it.
    const std::string calib_path = method.method != Method::awq ? std::string()
                                   : flags.has("calib-text")    ? flags.get("calib-text", "")
                                                                : cli::data_file(flags, "wikitext-2-raw.test.txt");
    method.borrow_weights = true;  // `file` lives until the end of main: projections use its weights in place
    // llm-awq calibrates on 128 samples of 512 tokens; this library's per-projection search on 2,000 tokens.
    const std::int64_t calib_tokens =
        flags.get_int("calib-tokens", method.awq_mode == AwqMode::llm_awq ? 128 * 512 : 2000, 4, std::int64_t{1} << 40);
    if (method.method != Method::awq && (flags.has("calib-text") || flags.has("calib-tokens")))
      throw LlamaError(std::string("--") + (flags.has("calib-text") ? "calib-text" : "calib-tokens") +
                       " applies only to --method awq; it would be ignored here");

    const auto start = std::chrono::steady_clock::now();
    const GgufFile file = cli::load_model(flags);
    const Tokenizer tokenizer = Tokenizer::from_gguf(file);
    QuantizedLinears linears(method);
    LlamaModel model(file, linears.factory());
    model.set_parallel(cli::runner_parallel());
    if (corpus.ctx > model.config().context_length)
      throw LlamaError("--ctx " + std::to_string(corpus.ctx) + " exceeds the model's context length " +
                       std::to_string(model.config().context_length));

    std::int64_t used_calibration = 0;
    if (method.method == Method::awq) {
      CorpusOptions calib_corpus{std::nullopt, corpus.ctx, calib_tokens, "--calib-text '" + calib_path + "'"};
      const auto calib_windows = make_windows(tokenizer, read_input("calib-text", calib_path), calib_corpus);
      used_calibration = calibrate_static_awq(model, linears, calib_windows, calib_tokens);
    }
    const auto windows = make_windows(tokenizer, read_input("text", text_path), corpus);
    std::size_t window_tokens = 0;
    for (const auto& w : windows) window_tokens += w.size();
    const auto eval_start = std::chrono::steady_clock::now();
    const NllSum nll = evaluate_windows(model, windows, protocol, [&](std::size_t d, std::size_t t) {
      cli::progress("ttq-ppl", d, t, std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count());
    });
    const auto done = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(done - start).count();
    const double eval_seconds = std::chrono::duration<double>(done - eval_start).count();
    // Tokens the model ran through (every window's tokens, scored or context), per second of evaluation.
    const double tokens_per_second = eval_seconds > 0 ? static_cast<double>(window_tokens) / eval_seconds : 0.0;
    const double ppl = std::exp(nll.mean());
    if (!std::isfinite(ppl))
      throw LlamaError("the perplexity overflowed (mean NLL " + std::to_string(nll.mean()) + "): the model's predictions are garbage");
    const std::string backend = method.method == Method::fp32 ? std::string("eigen fp32") : backend_description(method.backend);

    if (flags.has("json")) {
      // JSON has no infinity: p = inf is written as the string "inf".
      const std::string p_json = std::isinf(method.p) ? std::string("\"inf\"") : cli::json_number(method.p);
      std::printf("{\"method\": \"%s\", \"label\": \"%s\", \"bits\": %d, \"group\": %d, \"rank\": %d, \"p\": %s, ",
                  method_name(method.method).c_str(), cli::json_escape(describe(method)).c_str(),
                  method.method == Method::fp32 ? 32 : method.bits, method.group, method.rank, p_json.c_str());
      if (method.alpha)
        std::printf("\"alpha\": %s, \"lambda\": %s, ", cli::json_number(*method.alpha).c_str(), cli::json_number(method.lambda).c_str());
      else std::printf("\"alpha\": \"auto\", \"lambda\": null, ");
      std::printf("\"protocol\": \"%s\", \"model\": \"%s\", \"text\": \"%s\", \"ctx\": %d, \"windows\": %zu, ",
                  protocol_name(protocol).c_str(), cli::json_escape(model_path).c_str(), cli::json_escape(text_path).c_str(),
                  corpus.ctx, windows.size());
      // calib_tokens feed the statistic; the per-projection exponent search runs on the first
      // calib_search_tokens of them (MethodConfig::awq_calibration_tokens), llm-awq's on all.
      const bool llm_awq = method.method == Method::awq && method.awq_mode == AwqMode::llm_awq;
      const std::int64_t search_tokens =
          llm_awq ? used_calibration : std::min<std::int64_t>(used_calibration, method.awq_calibration_tokens);
      std::printf("\"awq_mode\": \"%s\", ", method.method == Method::awq ? awq_mode_name(method.awq_mode).c_str() : "");
      std::printf("\"calib_text\": \"%s\", \"calib_tokens\": %lld, \"calib_search_tokens\": %lld, \"bits_per_weight\": %.4f, ",
                  method.method == Method::awq ? cli::json_escape(calib_path).c_str() : "",
                  static_cast<long long>(used_calibration), static_cast<long long>(search_tokens), linears.bits_per_weight());
      std::printf("\"chosen_alpha\": {");
      bool first = true;
      for (const auto& [a, n] : linears.chosen_exponents()) {
        std::printf("%s\"%s\": %lld", first ? "" : ", ", cli::json_number(a).c_str(), static_cast<long long>(n));
        first = false;
      }
      std::printf("}, \"tokens\": %lld, \"nll\": %.6f, \"ppl\": %.4f, \"seconds\": %.3f, \"backend\": \"%s\", "
                  "\"threads\": %d, \"eval_tokens\": %zu, \"tokens_per_second\": %.1f}\n",
                  static_cast<long long>(nll.count), nll.mean(), ppl, seconds, cli::json_escape(backend).c_str(), threads,
                  window_tokens, tokens_per_second);
    } else {
      const std::string format = method.method == Method::fp32
                                     ? std::string()
                                     : ", " + std::to_string(method.bits) + "-bit g" + std::to_string(method.group);
      std::printf("%s%s, %s protocol: %lld predictions, NLL %.4f, perplexity %.3f (%.1f s; %.0f tokens/s, %s, %d threads)\n",
                  describe(method).c_str(), format.c_str(), protocol_name(protocol).c_str(), static_cast<long long>(nll.count),
                  nll.mean(), ppl, seconds, tokens_per_second, backend.c_str(), threads);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ttq-ppl: %s\n", e.what());
    return 2;
  }
  return cli::finish_output("ttq-ppl");
}
