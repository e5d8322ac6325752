// Tests of the ttq seam of the real-model tools (tools/llama/ttq_linear, perplexity): the
// bundled stories260K under RTN and TTQ must reproduce the perplexities an independent
// implementation of the spec measured (issue "Adaptive TTQ", 46 TinyStories documents, 3 bits,
// group 32, AWQ-compatible format, paper protocol): RTN 5.796, adaptive-exponent TTQ 5.308.
#include <catch2/catch.hpp>

#include <cmath>

#include "llama/gguf.hpp"
#include "common/perplexity.hpp"
#include "common/ttq_linear.hpp"

using namespace ttq::llama;

namespace {

struct Bundled {
  GgufFile file = read_gguf_file(std::string(TTQ_LLAMA_DATA_DIR) + "/stories260K.gguf");
  Tokenizer tokenizer = Tokenizer::from_gguf(file);
  std::vector<std::vector<int>> documents =
      make_windows(tokenizer, read_text_file(std::string(TTQ_LLAMA_DATA_DIR) + "/tinystories-valid.head32k.txt"),
                   CorpusOptions{"<|endoftext|>", 512, 0});
};

double perplexity(const Bundled& b, const MethodConfig& config, Protocol protocol = Protocol::paper) {
  QuantizedLinears linears(config);
  LlamaModel model(b.file, linears.factory());
  const NllSum nll = evaluate_windows(model, b.documents, protocol);
  return std::exp(nll.mean());
}

}  // namespace

TEST_CASE("3-bit RTN and adaptive TTQ on stories260K reproduce the independent reference perplexities", "[tools][real][whole-text]") {
  const Bundled bundled;
  REQUIRE(bundled.documents.size() == 46);
  MethodConfig rtn;
  rtn.method = Method::rtn;
  MethodConfig adaptive;
  adaptive.method = Method::ttq;
  adaptive.alpha.reset();
  adaptive.p = 1.0;
  CHECK(perplexity(bundled, rtn) == Approx(5.796).epsilon(0.002));
  CHECK(perplexity(bundled, adaptive) == Approx(5.308).epsilon(0.01));
}

TEST_CASE("the causal protocol scores the same predictions for every method, fewer than the paper protocol",
          "[tools][real][whole-text]") {
  const Bundled bundled;
  MethodConfig fp32;
  fp32.method = Method::fp32;
  QuantizedLinears a(fp32), b(MethodConfig{});
  LlamaModel model_a(bundled.file, a.factory()), model_b(bundled.file, b.factory());
  const std::vector<std::vector<int>> few(bundled.documents.begin(), bundled.documents.begin() + 4);
  const NllSum causal_fp32 = evaluate_windows(model_a, few, Protocol::causal);
  const NllSum causal_ttq = evaluate_windows(model_b, few, Protocol::causal);
  const NllSum paper_fp32 = evaluate_windows(model_a, few, Protocol::paper);
  CHECK(causal_fp32.count == causal_ttq.count);
  std::int64_t expected = 0;
  for (const auto& d : few) expected += static_cast<std::int64_t>(d.size() - d.size() / 2);
  CHECK(causal_fp32.count == expected);
  CHECK(causal_fp32.count < paper_fp32.count);
  // FP32 has no calibration: scoring the second half after a prompt equals the tail of the paper pass.
  CHECK(causal_ttq.mean() > causal_fp32.mean());
}

TEST_CASE("static AWQ freezes after its offline calibration and beats RTN at 3 bits on stories260K", "[tools][real][whole-text]") {
  const Bundled bundled;
  MethodConfig awq;
  awq.method = Method::awq;
  awq.p = 1.0;
  QuantizedLinears linears(awq);
  LlamaModel model(bundled.file, linears.factory());
  const auto calib = make_windows(bundled.tokenizer, read_text_file(std::string(TTQ_LLAMA_DATA_DIR) + "/wikitext-2-raw.test.txt"),
                                  CorpusOptions{std::nullopt, 512, 2000});
  CHECK(calibrate_static_awq(model, linears, calib, 2000) == 2000);
  const double awq_ppl = std::exp(evaluate_windows(model, bundled.documents, Protocol::paper).mean());
  MethodConfig rtn;
  rtn.method = Method::rtn;
  CHECK(awq_ppl < perplexity(bundled, rtn));
}

TEST_CASE("TTQ with the online clip search on three stories: block below no clip below RTN at 2 bits", "[tools][real][clip]") {
  // Short enough to run under the sanitizers (the whole-text anchors are [whole-text]), and it
  // runs every method of the seam through the real model: RTN, TTQ auto, and both clip objectives.
  Bundled bundled;
  bundled.documents.resize(3);
  MethodConfig rtn;
  rtn.method = Method::rtn;
  rtn.bits = 2;
  MethodConfig ttq = rtn;
  ttq.method = Method::ttq;
  ttq.alpha.reset();
  ttq.p = 1.0;
  MethodConfig diag = ttq, block = ttq;
  diag.clip = ClipMode::diag;
  block.clip = ClipMode::block;
  block.clip_rank = 0;
  const double p_rtn = perplexity(bundled, rtn), p_ttq = perplexity(bundled, ttq);
  const double p_diag = perplexity(bundled, diag), p_block = perplexity(bundled, block);
  CHECK(p_ttq < p_rtn);
  CHECK(p_block < p_ttq);
  CHECK(p_diag < p_ttq);
  CHECK(std::isfinite(p_block));
}

TEST_CASE("static AWQ in llm-awq's mode: searched on the block outputs, frozen; with its clamp search far below RTN at 2 bits", "[tools][real][clip]") {
  // Three stories and 2,000 calibration tokens: short enough for the sanitizers. The whole-text
  // figures are in docs/results.md.
  Bundled bundled;
  bundled.documents.resize(3);
  const auto calib = make_windows(bundled.tokenizer, read_text_file(std::string(TTQ_LLAMA_DATA_DIR) + "/wikitext-2-raw.test.txt"),
                                  CorpusOptions{std::nullopt, 512, 2000});
  auto llm_awq = [&](bool clip) {
    MethodConfig c;
    c.method = Method::awq;
    c.bits = 2;
    c.awq_mode = AwqMode::llm_awq;
    c.awq_clip_search = clip;
    QuantizedLinears linears(c);
    LlamaModel model(bundled.file, linears.factory());
    CHECK(calibrate_static_awq(model, linears, calib, 2000) == 2000);
    // Frozen: every projection is quantized (2-bit codes + group-32 fp32 scales and u8 zeros: 3.25
    // bits, a little more with the ragged groups of the 172-wide down projection), none fp32.
    CHECK(linears.bits_per_weight() < 3.5);
    return std::exp(evaluate_windows(model, bundled.documents, Protocol::paper).mean());
  };
  MethodConfig rtn;
  rtn.method = Method::rtn;
  rtn.bits = 2;
  const double p_rtn = perplexity(bundled, rtn), p_awq = llm_awq(false), p_clip = llm_awq(true);
  // At 2 bits the scales alone stay near RTN on these stories (whole text: docs/results.md); the
  // clamp search is what llm-awq's baseline owes its strength to.
  CHECK(std::isfinite(p_awq));
  CHECK(p_clip < p_awq);
  CHECK(p_clip < 0.5 * p_rtn);
}

TEST_CASE("--awq-mode applies to static AWQ only and names its procedure", "[tools][cli]") {
  CHECK(parse_awq_mode("llm-awq") == AwqMode::llm_awq);
  CHECK(parse_awq_mode("per-projection") == AwqMode::per_projection);
  CHECK_THROWS_AS(parse_awq_mode("llm_awq"), LlamaError);
  CHECK(awq_mode_name(AwqMode::llm_awq) == "llm-awq");
  MethodConfig c;
  c.method = Method::awq;
  c.awq_mode = AwqMode::llm_awq;
  c.awq_clip_search = true;
  CHECK(describe(c) == "AWQ (llm-awq, clip)");
}
