// ttq-compare: the main demo. Perplexity of the bundled stories260K model on both bundled texts
// for FP32, RTN, static AWQ with and without its clip search (calibrated on the *other* text: the
// domain shift TTQ avoids), TTQ with the paper-like fixed exponent, TTQ with the exponent chosen
// per layer and prompt, and the same with the online clip search (--clip, default block), at 2,
// 3 and 4 bits. Prints one markdown table per text. See docs/tools.md.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "llama/gguf.hpp"
#include "common/perplexity.hpp"

using namespace ttq::llama;

namespace {

struct Corpus {
  std::string name;
  std::vector<std::vector<int>> windows;
  std::vector<std::vector<int>> other;  // static AWQ's calibration windows (the other text)
};

double run(const GgufFile& file, MethodConfig method, const Corpus& corpus, Protocol protocol, std::int64_t calib_tokens) {
  method.borrow_weights = true;  // `file` outlives the model: projections use its weights in place
  QuantizedLinears linears(method);
  LlamaModel model(file, linears.factory());
  model.set_parallel(cli::runner_parallel());
  calibrate_static_awq(model, linears, corpus.other, calib_tokens);
  return std::exp(evaluate_windows(model, corpus.windows, protocol).mean());
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--help") {
      std::puts(
          "usage: ttq-compare [--model M.gguf] [--wikitext-tokens N] [--calib-tokens N] [--group g] [--protocol paper|causal]\n"
          "                   [--clip none|diag|block]\n"
          "  Compares FP32, RTN, static AWQ without and with its clip search (calibrated on the other text), TTQ\n"
          "  (fixed p=2, alpha=0.5, lambda=0.1), TTQ (alpha chosen per layer and prompt) and the same with the\n"
          "  online clip search (--clip, default block; none leaves the row out) at 2/3/4 bits on the bundled\n"
          "  TinyStories sample (46 documents) and the first --wikitext-tokens tokens of the bundled WikiText-2\n"
          "  test text (default 16384).");
      return cli::finish_output("ttq-compare");
    }
  try {
    std::set<std::string> valued{"model", "wikitext-tokens", "calib-tokens", "group", "protocol", "clip"};
    valued.insert(cli::runtime_flags().begin(), cli::runtime_flags().end());
    const cli::Flags flags(argc, argv, valued, {});
    cli::configure_threads(flags);
    const GgufFile file = cli::load_model(flags);
    const Tokenizer tokenizer = Tokenizer::from_gguf(file);
    const Protocol protocol = parse_protocol(flags.get("protocol", "paper"));
    // The TinyStories table scores documents, which only these two protocols define.
    if (cuts_whole_stream(protocol))
      throw LlamaError("--protocol: ttq-compare runs paper or causal (its TinyStories table scores documents), got '" +
                       protocol_name(protocol) + "'");
    const std::int64_t calib_tokens = flags.get_int("calib-tokens", 2000, 4, std::int64_t{1} << 40);
    const std::int64_t wikitext_tokens = flags.get_int("wikitext-tokens", 16384, 4, std::int64_t{1} << 40);
    const int group = static_cast<int>(flags.get_int("group", 32, 0, cli::kMaxGroup));
    const ClipMode clip = parse_clip(flags.get("clip", "block"));
    check_group(group);
    const std::string stories_path = cli::data_file(flags, "tinystories-valid.head32k.txt");
    const std::string wiki_path = cli::data_file(flags, "wikitext-2-raw.test.txt");
    const std::string stories = cli::read_text("", stories_path);
    const std::string wiki = cli::read_text("", wiki_path);
    const auto story_windows = make_windows(tokenizer, stories, {"<|endoftext|>", 512, 0, "'" + stories_path + "'"});
    const auto wiki_windows = make_windows(tokenizer, wiki, {std::nullopt, 512, wikitext_tokens, "'" + wiki_path + "' (--wikitext-tokens)"});
    const std::vector<Corpus> corpora{{"TinyStories (" + std::to_string(story_windows.size()) + " documents)", story_windows, wiki_windows},
                                      {"WikiText-2 (first " + std::to_string(wikitext_tokens) + " tokens)", wiki_windows, story_windows}};

    std::vector<MethodConfig> methods;
    MethodConfig m;
    m.group = group;
    m.method = Method::rtn;
    methods.push_back(m);
    m.method = Method::awq;
    m.p = 1.0;
    methods.push_back(m);
    m.awq_clip_search = true;
    methods.push_back(m);
    m.awq_clip_search = false;
    m.method = Method::ttq;
    m.p = 2.0;
    m.alpha = 0.5;
    m.lambda = 0.1;
    methods.push_back(m);
    m.p = 1.0;
    m.alpha.reset();
    methods.push_back(m);
    if (clip != ClipMode::none) {
      m.clip = clip;
      methods.push_back(m);
    }

    // Every flag is checked against the model (the group against each projection) before any
    // output: a bad --group must not fail after the first table rows.
    const LlamaConfig config = LlamaConfig::from_gguf(file);
    for (const MethodConfig& method : methods) check_method_for_model(method, config);

    const auto start = std::chrono::steady_clock::now();
    const std::string model_name(file.find_string("general.name").value_or(cli::model_path(flags)));
    std::printf("Perplexity of %s (lower is better), group %d, AWQ-compatible format, %s protocol.\n"
                "Static AWQ is calibrated on %lld tokens of the other text; TTQ on each window itself.\n",
                model_name.c_str(), group, protocol_name(protocol).c_str(), static_cast<long long>(calib_tokens));
    const int bits[] = {2, 3, 4};
    std::size_t done = 0;
    const std::size_t total = corpora.size() * (1 + methods.size() * 3);
    for (const Corpus& corpus : corpora) {
      MethodConfig fp32;
      fp32.method = Method::fp32;
      const double fp32_ppl = run(file, fp32, corpus, protocol, 0);
      cli::progress("ttq-compare", ++done, total, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      std::printf("\n%s: FP32 %.3f\n\n| method | 2 bits | 3 bits | 4 bits |\n|---|---|---|---|\n", corpus.name.c_str(), fp32_ppl);
      for (MethodConfig method : methods) {
        std::printf("| %s |", describe(method).c_str());
        for (int b : bits) {
          method.bits = b;
          std::printf(" %.3f |", run(file, method, corpus, protocol, calib_tokens));
          std::fflush(stdout);
          cli::progress("ttq-compare", ++done, total, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        std::printf("\n");
      }
    }
    std::printf("\n(%.0f s)\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ttq-compare: %s\n", e.what());
    return 2;
  }
  return cli::finish_output("ttq-compare");
}
