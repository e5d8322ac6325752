// Implementation of the perplexity protocols (see perplexity.hpp).
#include "common/perplexity.hpp"

#include <algorithm>
#include <cmath>

namespace ttq::llama {

namespace {

// -log softmax(row)[target], in double.
double negative_log_prob(std::span<const float> row, int target) {
  const double max = *std::max_element(row.begin(), row.end());
  double z = 0.0;
  for (float v : row) z += std::exp(static_cast<double>(v) - max);
  return -(static_cast<double>(row[static_cast<std::size_t>(target)]) - max - std::log(z));
}

}  // namespace

Protocol parse_protocol(std::string_view name) {
  if (name == "paper") return Protocol::paper;
  if (name == "causal") return Protocol::causal;
  throw LlamaError("protocol: expected paper or causal, got '" + std::string(name) + "'");
}

std::string protocol_name(Protocol protocol) { return protocol == Protocol::paper ? "paper" : "causal"; }

std::vector<std::vector<int>> make_windows(const Tokenizer& tokenizer, std::string_view text, const CorpusOptions& options) {
  if (options.ctx < 4) throw LlamaError("ctx: expected at least 4 tokens, got " + std::to_string(options.ctx));
  std::vector<std::vector<int>> windows;
  if (options.separator) {
    for (const std::string& doc : split_documents(text, *options.separator)) {
      std::vector<int> tokens = tokenizer.encode(doc, /*add_bos=*/tokenizer.expects_bos());
      if (tokens.size() > static_cast<std::size_t>(options.ctx)) tokens.resize(static_cast<std::size_t>(options.ctx));
      if (tokens.size() >= 4) windows.push_back(std::move(tokens));
    }
    return windows;
  }
  std::vector<int> stream = tokenizer.encode(text, /*add_bos=*/false);
  if (options.limit_tokens > 0 && stream.size() > static_cast<std::size_t>(options.limit_tokens))
    stream.resize(static_cast<std::size_t>(options.limit_tokens));
  // Models whose metadata asks for no BOS (e.g. SmolLM2) get windows of ctx text tokens.
  const bool bos = tokenizer.expects_bos();
  const std::size_t body = static_cast<std::size_t>(options.ctx - (bos ? 1 : 0));
  for (std::size_t first = 0; first < stream.size(); first += body) {
    std::vector<int> window;
    if (bos) window.push_back(tokenizer.bos_id());
    const std::size_t last = std::min(stream.size(), first + body);
    window.insert(window.end(), stream.begin() + static_cast<std::ptrdiff_t>(first),
                  stream.begin() + static_cast<std::ptrdiff_t>(last));
    if (window.size() >= 4) windows.push_back(std::move(window));
  }
  return windows;
}

NllSum evaluate_windows(LlamaModel& model, const std::vector<std::vector<int>>& windows, Protocol protocol,
                        const std::function<void(std::size_t, std::size_t)>& progress) {
  NllSum sum;
  for (std::size_t w = 0; w < windows.size(); ++w) {
    const std::vector<int>& tokens = windows[w];
    const int n = static_cast<int>(tokens.size());
    if (protocol == Protocol::paper) {
      sum += score_tokens(model, tokens, CalibrationMode::calibrate_then_forward);
    } else {
      // Prompt = first half: calibrate on it (and fill the KV cache), then score the rest
      // with the prompt's quantization. Row h-1 of the prompt pass predicts token h.
      const int h = n / 2;
      const Logits prompt = model.prefill(std::span<const int>(tokens).first(static_cast<std::size_t>(h)),
                                          CalibrationMode::calibrate_then_forward);
      sum.total += negative_log_prob(prompt.row(h - 1), tokens[static_cast<std::size_t>(h)]);
      ++sum.count;
      const Logits rest = model.extend(std::span<const int>(tokens).subspan(static_cast<std::size_t>(h)),
                                       CalibrationMode::forward_only);
      for (int t = 0; t + 1 < rest.tokens; ++t) {
        sum.total += negative_log_prob(rest.row(t), tokens[static_cast<std::size_t>(h + t + 1)]);
        ++sum.count;
      }
    }
    if (progress) progress(w + 1, windows.size());
  }
  return sum;
}

std::int64_t calibrate_static_awq(LlamaModel& model, QuantizedLinears& linears,
                                  const std::vector<std::vector<int>>& windows, std::int64_t tokens) {
  if (linears.config().method != Method::awq) return 0;
  linears.begin_awq_calibration();
  std::int64_t used = 0;
  for (const auto& window : windows) {
    if (used >= tokens) break;
    const std::size_t take = std::min<std::size_t>(window.size(), static_cast<std::size_t>(tokens - used));
    if (take < 2) break;
    model.prefill(std::span<const int>(window).first(take), CalibrationMode::forward_only);
    used += static_cast<std::int64_t>(take);
  }
  linears.finish_awq_calibration();
  model.reset();
  return used;
}

}  // namespace ttq::llama
