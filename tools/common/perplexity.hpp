// Perplexity evaluation of a (quantized) model under the protocols the tools offer, for the two
// kinds of corpus they read:
//   documents  (TinyStories style, --separator): each document on its own, BOS + text, truncated to ctx
//   a stream   (WikiText, C4): the whole text as one token stream cut into windows of ctx tokens
// BOS is added only where the model's metadata asks for it (tokenizer.ggml.add_bos_token).
// Protocols (docs/tools.md, "Protocols", compares them):
//   paper   windows of BOS + ctx - 1 text tokens (the tail kept); TTQ calibrates on each window
//           itself; every prediction is scored
//   causal  the same windows; the first half of each is the prompt (calibration + KV cache); only
//           the predictions of the second half's tokens are scored, for every method alike, so no
//           statistic ever sees a token it predicts
//   stream  the paper's appendix G (SparseLLM's evaluation code): the text tokenized once with one
//           BOS at its start, cut into non-overlapping windows of ctx tokens without BOS of their
//           own, the tail dropped; TTQ calibrates on each window; perplexity = exp(mean over windows
//           of the window's mean loss) (every window has ctx - 1 predictions, so that is the mean NLL)
//   llama-cpp  llama.cpp's llama-perplexity: the stream of `stream` cut the same way, each window's
//           first token replaced by BOS; the first half is the prompt (as causal) and the
//           predictions of tokens ctx/2 + 1 .. ctx - 1 are scored (ctx/2 - 1 per window)
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

enum class Protocol { paper, causal, stream, llama_cpp };
Protocol parse_protocol(std::string_view name);  ///< "paper" | "causal" | "stream" | "llama-cpp"; throws LlamaError
std::string protocol_name(Protocol protocol);
/// Whether the protocol cuts one token stream with a single BOS at its start (stream, llama-cpp)
/// rather than windows of their own BOS (paper, causal, and every protocol's documents).
bool cuts_whole_stream(Protocol protocol);

struct CorpusOptions {
  std::optional<std::string> separator;  ///< document mode when set (a non-empty line)
  int ctx = 512;                         ///< window / document token budget, BOS included (>= 4)
  std::int64_t limit_tokens = 0;         ///< stop after this many tokens (0: all); documents and whole streams: BOS included
  std::string source = "the text";       ///< what the text is, for messages (e.g. "--text 'a.txt'")
  Protocol protocol = Protocol::paper;   ///< the windows' layout follows the protocol (see above)
};

/// The evaluation windows of `text`: documents (separator set; paper and causal only) or stream
/// windows in the layout of options.protocol: BOS (when the model expects one) + ctx - 1 text
/// tokens each, windows shorter than 4 tokens dropped (paper, causal); or the BOS-prefixed stream
/// cut into windows of exactly ctx tokens, the tail dropped, each window's first token replaced by
/// BOS for llama-cpp. Never empty: throws LlamaError naming options.source when the text gives no
/// window (an empty text, only separators, a budget under 4 tokens or, for a whole stream, under
/// ctx), when a separator is set but no line of the text equals it (the text would silently be
/// one truncated document), and when a separator is combined with a whole-stream protocol.
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
