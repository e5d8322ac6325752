// ttq-generate: calibrates the chosen method on the prompt, decodes greedily with the quantized
// weights, and prints the continuation and decode tokens/s next to FP32's. See docs/tools.md.
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "llama/cli.hpp"
#include "llama/gguf.hpp"
#include "llama/perplexity.hpp"

using namespace ttq::llama;

namespace {

struct Generation {
  std::string text;
  int tokens = 0;
  double seconds = 0.0;  // decode steps only
};

Generation generate(const GgufFile& file, const Tokenizer& tokenizer, const MethodConfig& method,
                    const std::vector<int>& prompt, int steps, const std::vector<std::vector<int>>& calib) {
  QuantizedLinears linears(method);
  LlamaModel model(file, linears.factory());
  calibrate_static_awq(model, linears, calib, 2000);
  // The prompt is the calibration: TTQ quantizes for it, then decodes with that quantization.
  Logits logits = model.prefill(prompt, CalibrationMode::calibrate_then_forward);
  std::vector<float> last(logits.row(logits.tokens - 1).begin(), logits.row(logits.tokens - 1).end());
  Generation g;
  int previous = prompt.back();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < steps && model.position() < model.config().context_length; ++i) {
    int next = 0;
    for (int v = 1; v < static_cast<int>(last.size()); ++v)
      if (last[static_cast<std::size_t>(v)] > last[static_cast<std::size_t>(next)]) next = v;
    if (next == tokenizer.eos_id()) break;
    g.text += tokenizer.decode_piece(previous, next);
    previous = next;
    ++g.tokens;
    last = model.decode_step(next);
  }
  g.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--help") {
      std::printf("usage: ttq-generate [--model M.gguf] --prompt \"...\" [-n N | --tokens N] [method flags]\n%s",
                  cli::method_help().c_str());
      return 0;
    }
  try {
    // "-n" is accepted as an alias of --tokens.
    std::vector<char*> args(argv, argv + argc);
    for (auto& a : args)
      if (std::string(a) == "-n") a = const_cast<char*>("--tokens");
    std::set<std::string> valued{"model", "prompt", "tokens"};
    valued.insert(cli::method_flags().begin(), cli::method_flags().end());
    const cli::Flags flags(static_cast<int>(args.size()), args.data(), valued, cli::method_switches());
    const std::string data = TTQ_LLAMA_DATA_DIR;
    const GgufFile file = read_gguf_file(flags.get("model", data + "/stories260K.gguf"));
    const Tokenizer tokenizer = Tokenizer::from_gguf(file);
    const std::string prompt_text = flags.get("prompt", "Once upon a time, there was a little girl named Lily.");
    const std::vector<int> prompt = tokenizer.encode(prompt_text, /*add_bos=*/tokenizer.expects_bos());
    if (prompt.empty()) throw LlamaError("--prompt: the prompt encodes to no tokens");
    const int steps = static_cast<int>(flags.get_int("tokens", 64));
    const MethodConfig method = cli::method_from_flags(flags);
    std::vector<std::vector<int>> calib;
    if (method.method == Method::awq)
      calib = make_windows(tokenizer, read_text_file(data + "/wikitext-2-raw.test.txt"), {std::nullopt, 512, 2000});

    MethodConfig fp32;
    fp32.method = Method::fp32;
    for (const MethodConfig& m : {fp32, method}) {
      const Generation g = generate(file, tokenizer, m, prompt, steps, calib);
      std::printf("== %s: %d tokens, %.1f tokens/s\n%s%s\n\n", describe(m).c_str(), g.tokens,
                  g.seconds > 0 ? g.tokens / g.seconds : 0.0, prompt_text.c_str(), g.text.c_str());
      if (method.method == Method::fp32) break;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ttq-generate: %s\n", e.what());
    return 2;
  }
  return 0;
}
