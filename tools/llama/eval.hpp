// The evaluation protocol of the real-model tools and the correctness anchor: split a corpus
// into documents, tokenize each on its own with BOS and the dummy prefix, truncate to a context
// budget, and sum the next-token negative log-likelihood of every prediction with one prefill
// per document. Kept apart from the model so that every tool scores text the same way as the
// numpy reference (tests/llama/reference_llama.py) that fixed the anchor figures.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "llama/model.hpp"
#include "llama/tokenizer.hpp"

namespace ttq::llama {

// Sum of negative log-likelihoods (nats) over `count` predictions.
struct NllSum {
  double total = 0.0;
  std::int64_t count = 0;

  double mean() const noexcept { return count ? total / static_cast<double>(count) : 0.0; }
  NllSum& operator+=(const NllSum& other) noexcept {
    total += other.total;
    count += other.count;
    return *this;
  }
};

// Splits `text` at lines equal to `separator` (a trailing '\r' is ignored), strips each piece
// of ASCII whitespace as Python's str.strip() does, and drops the empty ones.
std::vector<std::string> split_documents(std::string_view text, std::string_view separator = "<|endoftext|>");

// -log p(tokens[t+1] | tokens[..t]) summed over every t, from one prefill at position 0 (the
// model's cache is reset), the log-softmax streamed through the output head
// (Model::extend_log_probs). Preconditions: as Model::prefill; fewer than 2 tokens give an empty sum.
NllSum score_tokens(LlamaModel& model, std::span<const int> tokens,
                    CalibrationMode mode = CalibrationMode::forward_only);

// The per-document protocol: each document encoded on its own (with BOS when the tokenizer
// expects_bos(), as stories260K's does and SmolLM2's does not; with the dummy prefix for
// "llama" vocabularies), truncated to its first `max_tokens` tokens (BOS included), scored with
// score_tokens.
struct DocumentScores {
  NllSum total;
  std::vector<NllSum> per_document;
};
DocumentScores score_documents(LlamaModel& model, const Tokenizer& tokenizer,
                               std::span<const std::string> documents, int max_tokens = 512,
                               CalibrationMode mode = CalibrationMode::forward_only);

// The whole file as bytes; throws LlamaError naming the path when it does not exist, is a
// directory or cannot be read. An empty file gives an empty string (callers decide).
std::string read_text_file(const std::filesystem::path& path);

}  // namespace ttq::llama
