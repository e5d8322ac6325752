// The evaluation protocol's implementation: document splitting, per-sequence NLL from one
// batched prefill, and the per-document loop.
#include "llama/eval.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <system_error>

namespace ttq::llama {

std::vector<std::string> split_documents(std::string_view text, std::string_view separator) {
  auto strip = [](std::string_view s) {
    constexpr std::string_view kWhitespace = " \t\n\r\v\f";
    const auto first = s.find_first_not_of(kWhitespace);
    if (first == std::string_view::npos) return std::string_view{};
    const auto last = s.find_last_not_of(kWhitespace);
    return s.substr(first, last - first + 1);
  };
  std::vector<std::string> documents;
  std::size_t doc_start = 0;
  std::size_t line_start = 0;
  auto close = [&](std::size_t doc_end) {
    const auto doc = strip(text.substr(doc_start, doc_end - doc_start));
    if (!doc.empty()) documents.emplace_back(doc);
  };
  while (line_start < text.size()) {
    std::size_t line_end = text.find('\n', line_start);
    const std::size_t next = line_end == std::string_view::npos ? text.size() : line_end + 1;
    if (line_end == std::string_view::npos) line_end = text.size();
    std::string_view line = text.substr(line_start, line_end - line_start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == separator) {
      close(line_start);
      doc_start = next;
    }
    line_start = next;
  }
  close(text.size());
  return documents;
}

NllSum score_tokens(LlamaModel& model, std::span<const int> tokens, CalibrationMode mode) {
  NllSum sum;
  if (tokens.size() < 2) return sum;
  // Row t predicts token t + 1; the last row predicts nothing.
  std::vector<int> targets(tokens.begin() + 1, tokens.end());
  targets.push_back(kNoTarget);
  model.reset();
  const std::vector<double> log_probs = model.extend_log_probs(tokens, targets, mode);
  for (std::size_t t = 0; t + 1 < tokens.size(); ++t) {
    sum.total -= log_probs[t];
    ++sum.count;
  }
  return sum;
}

DocumentScores score_documents(LlamaModel& model, const Tokenizer& tokenizer,
                               std::span<const std::string> documents, int max_tokens,
                               CalibrationMode mode) {
  if (max_tokens < 1) throw LlamaError("eval: max_tokens: expected at least 1");
  DocumentScores scores;
  scores.per_document.reserve(documents.size());
  for (const auto& doc : documents) {
    std::vector<int> tokens = tokenizer.encode(doc, /*add_bos=*/tokenizer.expects_bos());
    if (tokens.size() > static_cast<std::size_t>(max_tokens)) tokens.resize(static_cast<std::size_t>(max_tokens));
    const NllSum s = score_tokens(model, tokens, mode);
    scores.per_document.push_back(s);
    scores.total += s;
  }
  return scores;
}

std::string read_text_file(const std::filesystem::path& path) {
  // A directory opens as a stream on Linux and reads as nothing: refuse what is not a file.
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw LlamaError("cannot open '" + path.string() + "': no such file");
  if (std::filesystem::is_directory(status)) throw LlamaError("'" + path.string() + "' is a directory, not a text file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw LlamaError("cannot open '" + path.string() + "'");
  std::ostringstream out;
  out << in.rdbuf();
  if (!in && !in.eof()) throw LlamaError("cannot read '" + path.string() + "'");
  return out.str();
}

}  // namespace ttq::llama
