// Perplexity evaluation of a (quantized) Llama model under the two protocols of the spec, for
// the two kinds of corpus the tools read:
//   documents  (TinyStories style, --separator): each document on its own, BOS + text, truncated to ctx
//   stream     (WikiText style): the whole text as one token stream cut into windows of ctx
//              tokens, each window starting with BOS followed by ctx - 1 text tokens
// BOS is added only where the model's metadata asks for it (tokenizer.ggml.add_bos_token).
// Protocols:
//   paper   TTQ calibrates on each evaluation window itself; every prediction is scored
//   causal  the first half of each window is the prompt (calibration + KV cache); only the
//           predictions of the second half's tokens are scored, for every method alike, so no
//           statistic ever sees a token it predicts
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "llama/eval.hpp"
#include "llama/model.hpp"
#include "llama/tokenizer.hpp"
#include "common/ttq_linear.hpp"

namespace ttq::llama {

enum class Protocol { paper, causal };
Protocol parse_protocol(std::string_view name);  ///< "paper" | "causal"; throws LlamaError
std::string protocol_name(Protocol protocol);

struct CorpusOptions {
  std::optional<std::string> separator;  ///< document mode when set (a non-empty line)
  int ctx = 512;                         ///< window / document token budget, BOS included (>= 4)
  std::int64_t limit_tokens = 0;         ///< stop after this many tokens (0: all); documents: BOS included
  std::string source = "the text";       ///< what the text is, for messages (e.g. "--text 'a.txt'")
};

/// The evaluation windows of `text`: documents (separator set) or stream windows, each
/// starting with BOS when the model expects one, each at most ctx tokens, windows shorter than
/// 4 tokens dropped. Never empty: throws LlamaError naming options.source when the text gives
/// no window (an empty text, only separators, a budget under 4 tokens), and when a separator is
/// set but no line of the text equals it (the text would silently be one truncated document).
std::vector<std::vector<int>> make_windows(const Tokenizer& tokenizer, std::string_view text, const CorpusOptions& options);

/// Scores `windows` under `protocol`. progress(done, total) is called after each window.
/// Throws LlamaError when there is nothing to score (no window, no prediction) and when the
/// model gives a non-finite log-probability: never a perplexity computed from nothing.
NllSum evaluate_windows(LlamaModel& model, const std::vector<std::vector<int>>& windows, Protocol protocol,
                        const std::function<void(std::size_t, std::size_t)>& progress = {});

/// Static AWQ's offline calibration: runs `windows` (until `tokens` tokens have been seen)
/// through the model in fp32 while every projection records its input, then freezes the scales
/// (per projection; with MethodConfig::awq_mode llm_awq, llm-awq's block search, common/llm_awq.hpp).
/// Returns the number of calibration tokens used. No-op (returns 0) for other methods. Throws
/// LlamaError when `windows` would give no calibration token (static AWQ would silently be RTN).
std::int64_t calibrate_static_awq(LlamaModel& model, QuantizedLinears& linears,
                                  const std::vector<std::vector<int>>& windows, std::int64_t tokens);

}  // namespace ttq::llama
