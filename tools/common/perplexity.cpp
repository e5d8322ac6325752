// Implementation of the perplexity protocols (see perplexity.hpp).
#include "common/perplexity.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/llm_awq.hpp"

namespace ttq::llama {

Protocol parse_protocol(std::string_view name) {
  if (name == "paper") return Protocol::paper;
  if (name == "causal") return Protocol::causal;
  if (name == "stream") return Protocol::stream;
  if (name == "llama-cpp") return Protocol::llama_cpp;
  throw LlamaError("--protocol: expected paper, causal, stream or llama-cpp, got '" + std::string(name) + "'");
}

std::string protocol_name(Protocol protocol) {
  switch (protocol) {
    case Protocol::paper: return "paper";
    case Protocol::causal: return "causal";
    case Protocol::stream: return "stream";
    case Protocol::llama_cpp: return "llama-cpp";
  }
  return "?";
}

bool cuts_whole_stream(Protocol protocol) { return protocol == Protocol::stream || protocol == Protocol::llama_cpp; }

namespace {

// Whether some line of `text` equals `separator` (a trailing '\r' ignored, as split_documents).
bool has_separator_line(std::string_view text, std::string_view separator) {
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == separator) return true;
    if (end == text.size()) break;
    start = end + 1;
  }
  return false;
}

std::string no_window_message(const CorpusOptions& options, std::size_t text_bytes, std::size_t tokens) {
  std::string m = options.source + ": nothing to score: no " + (options.separator ? "document" : "window") +
                  " of at least 4 tokens (" + std::to_string(text_bytes) + " bytes, " + std::to_string(tokens) + " tokens";
  if (options.limit_tokens > 0) m += ", token budget " + std::to_string(options.limit_tokens);
  return m + ")";
}

}  // namespace

std::vector<std::vector<int>> make_windows(const Tokenizer& tokenizer, std::string_view text, const CorpusOptions& options) {
  if (options.ctx < 4) throw LlamaError("ctx: expected at least 4 tokens, got " + std::to_string(options.ctx));
  if (options.limit_tokens < 0) throw LlamaError("limit_tokens: expected >= 0, got " + std::to_string(options.limit_tokens));
  std::vector<std::vector<int>> windows;
  if (options.separator && cuts_whole_stream(options.protocol))
    throw LlamaError("--protocol " + protocol_name(options.protocol) + " scores the text as one stream; omit --separator");
  if (options.separator) {
    if (options.separator->empty())
      throw LlamaError("--separator: expected a non-empty line (an empty separator splits at blank lines and scores each "
                       "paragraph truncated to ctx); omit --separator to score the text as one stream");
    if (!has_separator_line(text, *options.separator))
      throw LlamaError(options.source + ": no line equals the separator '" + *options.separator +
                       "': the whole text would be one document truncated to " + std::to_string(options.ctx) +
                       " tokens; omit --separator to score it as a stream");
    std::size_t total = 0, budget_left = options.limit_tokens > 0 ? static_cast<std::size_t>(options.limit_tokens) : SIZE_MAX;
    for (const std::string& doc : split_documents(text, *options.separator)) {
      if (budget_left < 4) break;
      std::vector<int> tokens = tokenizer.encode(doc, /*add_bos=*/tokenizer.expects_bos());
      total += tokens.size();
      const std::size_t keep = std::min<std::size_t>(static_cast<std::size_t>(options.ctx), budget_left);
      if (tokens.size() > keep) tokens.resize(keep);
      if (tokens.size() >= 4) {
        budget_left -= tokens.size();
        windows.push_back(std::move(tokens));
      }
    }
    if (windows.empty()) throw LlamaError(no_window_message(options, text.size(), total));
    return windows;
  }
  const bool bos = tokenizer.expects_bos();
  if (cuts_whole_stream(options.protocol)) {
    // One BOS at the very start, windows of exactly ctx tokens, the tail dropped.
    std::vector<int> stream = tokenizer.encode(text, /*add_bos=*/bos);
    const std::size_t text_tokens = stream.size();
    if (options.limit_tokens > 0 && stream.size() > static_cast<std::size_t>(options.limit_tokens))
      stream.resize(static_cast<std::size_t>(options.limit_tokens));
    const auto ctx = static_cast<std::size_t>(options.ctx);
    for (std::size_t first = 0; first + ctx <= stream.size(); first += ctx) {
      windows.emplace_back(stream.begin() + static_cast<std::ptrdiff_t>(first), stream.begin() + static_cast<std::ptrdiff_t>(first + ctx));
      // llama-perplexity overwrites each window's first token with BOS (the first window's is BOS already).
      if (options.protocol == Protocol::llama_cpp && bos) windows.back().front() = tokenizer.bos_id();
    }
    if (windows.empty())
      throw LlamaError(no_window_message(options, text.size(), text_tokens) + ": --protocol " + protocol_name(options.protocol) +
                       " needs at least --ctx " + std::to_string(options.ctx) + " tokens, BOS included");
    return windows;
  }
  std::vector<int> stream = tokenizer.encode(text, /*add_bos=*/false);
  const std::size_t text_tokens = stream.size();
  if (options.limit_tokens > 0 && stream.size() > static_cast<std::size_t>(options.limit_tokens))
    stream.resize(static_cast<std::size_t>(options.limit_tokens));
  // Models whose metadata asks for no BOS (e.g. SmolLM2) get windows of ctx text tokens.
  const std::size_t body = static_cast<std::size_t>(options.ctx - (bos ? 1 : 0));
  for (std::size_t first = 0; first < stream.size(); first += body) {
    std::vector<int> window;
    if (bos) window.push_back(tokenizer.bos_id());
    const std::size_t last = std::min(stream.size(), first + body);
    window.insert(window.end(), stream.begin() + static_cast<std::ptrdiff_t>(first),
                  stream.begin() + static_cast<std::ptrdiff_t>(last));
    if (window.size() >= 4) windows.push_back(std::move(window));
  }
  if (windows.empty()) throw LlamaError(no_window_message(options, text.size(), text_tokens));
  return windows;
}

NllSum evaluate_windows(LlamaModel& model, const std::vector<std::vector<int>>& windows, Protocol protocol,
                        const std::function<void(std::size_t, std::size_t)>& progress) {
  if (windows.empty()) throw LlamaError("nothing to score: no evaluation window");
  NllSum sum;
  for (std::size_t w = 0; w < windows.size(); ++w) {
    const std::vector<int>& tokens = windows[w];
    const int n = static_cast<int>(tokens.size());
    if (protocol == Protocol::paper || protocol == Protocol::stream) {
      sum += score_tokens(model, tokens, CalibrationMode::calibrate_then_forward);
    } else {
      // Prompt = first half: calibrate on it (and fill the KV cache), then score the rest with
      // the prompt's quantization. Row t predicts token t + 1. causal scores tokens h..n-1 (the
      // first from the prompt's last row), llama-cpp tokens h+1..n-1 (llama-perplexity's `first`).
      const int h = n / 2;
      const auto window = std::span<const int>(tokens);
      std::vector<int> targets(static_cast<std::size_t>(h), kNoTarget);
      if (protocol == Protocol::causal) targets.back() = tokens[static_cast<std::size_t>(h)];
      model.reset();
      const std::vector<double> prompt =
          model.extend_log_probs(window.first(static_cast<std::size_t>(h)), targets, CalibrationMode::calibrate_then_forward);
      if (protocol == Protocol::causal) {
        sum.total -= prompt.back();
        ++sum.count;
      }
      targets.assign(window.begin() + h + 1, window.end());
      targets.push_back(kNoTarget);
      const std::vector<double> rest = model.extend_log_probs(window.subspan(static_cast<std::size_t>(h)), targets, CalibrationMode::forward_only);
      for (std::size_t t = 0; t + 1 < rest.size(); ++t) {
        sum.total -= rest[t];
        ++sum.count;
      }
    }
    if (!std::isfinite(sum.total))
      throw LlamaError("window " + std::to_string(w) + ": the model gave a non-finite log-probability (non-finite "
                       "logits: the weights or the quantization overflowed)");
    if (progress) progress(w + 1, windows.size());
  }
  if (sum.count == 0) throw LlamaError("nothing to score: the windows hold no prediction");
  return sum;
}

std::int64_t calibrate_static_awq(LlamaModel& model, QuantizedLinears& linears,
                                  const std::vector<std::vector<int>>& windows, std::int64_t tokens) {
  if (linears.config().method != Method::awq) return 0;
  if (tokens < 2) throw LlamaError("static AWQ: expected a calibration budget of at least 2 tokens, got " + std::to_string(tokens));
  if (windows.empty() || windows.front().size() < 2)
    throw LlamaError("static AWQ: no calibration window: it would calibrate on nothing and run as RTN");
  // The windows within the budget (the last one cut short; none shorter than 2 tokens).
  std::vector<std::vector<int>> used_windows;
  std::int64_t used = 0;
  for (const auto& window : windows) {
    if (used >= tokens) break;
    const std::size_t take = std::min<std::size_t>(window.size(), static_cast<std::size_t>(tokens - used));
    if (take < 2) break;
    used_windows.emplace_back(window.begin(), window.begin() + static_cast<std::ptrdiff_t>(take));
    used += static_cast<std::int64_t>(take);
  }
  if (linears.config().awq_mode == AwqMode::llm_awq) {
    search_llm_awq(model, linears.config(), used_windows);
  } else {
    linears.begin_awq_calibration();
    for (const auto& window : used_windows) run_blocks(model, window);
  }
  linears.finish_awq_calibration();
  model.reset();
  return used;
}

}  // namespace ttq::llama
