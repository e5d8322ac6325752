// The "llama" tokenizer's implementation and the Tokenizer that dispatches between it and the
// byte-level one (byte_level_bpe.cpp). Encoding merges with a priority queue over a linked
// list of symbols instead of llama2.c's rescan-per-merge loop: both merge, at every step, the
// highest-scored adjacent pair, leftmost on ties, so the output is identical (the tests check
// it against a literal transcription of llama2.c), but long documents cost O(n log n) instead
// of O(n^2) lookups.
#include "llama/tokenizer.hpp"
#include "llama/error.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <queue>
#include <sstream>

#include "llama/gguf.hpp"

namespace ttq::llama {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// 0..255 when `piece` is spelled "<0xNN>" (hex digits, either case), else -1.
int parse_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = hex(piece[3]);
  const int lo = hex(piece[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    if (s.compare(i, from.size(), from) == 0) {
      out += to;
      i += from.size();
    } else {
      out += s[i++];
    }
  }
  return out;
}

}  // namespace

SentencePieceBpe::SentencePieceBpe(std::vector<std::string> pieces, std::vector<float> scores,
                                   std::vector<TokenType> types, int bos_id, int eos_id, int unknown_id,
                                   bool add_space_prefix)
    : pieces_(std::move(pieces)),
      scores_(std::move(scores)),
      types_(std::move(types)),
      bos_id_(bos_id),
      eos_id_(eos_id),
      unknown_id_(unknown_id),
      add_space_prefix_(add_space_prefix) {
  const auto n = pieces_.size();
  if (n == 0) throw LlamaError("tokenizer: expected at least one token, got an empty vocabulary");
  if (n > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw LlamaError(cat("tokenizer: expected fewer than 2^31 tokens, got ", n));
  }
  if (scores_.size() != n) {
    throw LlamaError(cat("tokenizer: expected ", n, " scores (one per token), got ", scores_.size()));
  }
  if (types_.empty()) types_.assign(n, TokenType::normal);
  if (types_.size() != n) {
    throw LlamaError(cat("tokenizer: expected ", n, " token types (one per token), got ", types_.size()));
  }
  for (std::size_t i = 0; i < n; ++i) {
    // NaN would break the merge queue's ordering.
    if (!std::isfinite(scores_[i])) {
      throw LlamaError(cat("tokenizer: score of token ", i, ": expected a finite number, got ", scores_[i]));
    }
    const auto t = static_cast<std::int32_t>(types_[i]);
    if (t < 1 || t > 6) {
      throw LlamaError(cat("tokenizer: type of token ", i, ": expected 1..6, got ", t));
    }
  }
  auto check_id = [&](const char* what, int id) {
    if (id < 0 || static_cast<std::size_t>(id) >= n) {
      throw LlamaError(cat("tokenizer: ", what, " id: expected 0..", n - 1, ", got ", id));
    }
  };
  check_id("bos", bos_id_);
  check_id("eos", eos_id_);
  check_id("unknown", unknown_id_);

  byte_value_.assign(n, -1);
  for (int& b : byte_token_) b = unknown_id_;
  for (std::size_t i = 0; i < n; ++i) {
    const bool byte_typed = types_[i] == TokenType::byte;
    const int value = parse_byte_piece(pieces_[i]);
    if (byte_typed && value < 0) {
      throw LlamaError(cat("tokenizer: token ", i, " has type byte: expected spelling <0xNN>, got '",
                           pieces_[i], "'"));
    }
    // Without explicit types a "<0xNN>" spelling marks a byte token.
    if (value >= 0 && (byte_typed || types_[i] == TokenType::normal)) {
      if (!byte_typed) types_[i] = TokenType::byte;
      byte_value_[i] = value;
      if (byte_token_[value] == unknown_id_) byte_token_[value] = static_cast<int>(i);
      continue;
    }
    const bool mergeable = types_[i] == TokenType::normal || types_[i] == TokenType::user_defined;
    // The first of duplicate pieces wins, as a sorted-vocabulary binary search would find
    // either; real vocabularies have none.
    if (mergeable) piece_index_.emplace(pieces_[i], static_cast<int>(i));
    if (types_[i] == TokenType::user_defined && !pieces_[i].empty()) user_defined_.push_back(static_cast<int>(i));
  }
  std::stable_sort(user_defined_.begin(), user_defined_.end(),
                   [&](int a, int b) { return pieces_[static_cast<std::size_t>(a)].size() > pieces_[static_cast<std::size_t>(b)].size(); });
}

SentencePieceBpe SentencePieceBpe::from_gguf(const GgufFile& file) {
  const auto model = file.find_string("tokenizer.ggml.model");
  if (!model) throw LlamaError("tokenizer: expected metadata 'tokenizer.ggml.model', it is absent");
  if (*model != "llama") {
    throw LlamaError(cat("tokenizer: expected tokenizer.ggml.model \"llama\", got \"", *model, "\""));
  }
  auto pieces = file.get_string_array("tokenizer.ggml.tokens");
  std::vector<float> scores = file.find("tokenizer.ggml.scores")
                                  ? file.get_float_array("tokenizer.ggml.scores")
                                  : std::vector<float>(pieces.size(), 0.0f);
  std::vector<TokenType> types;
  if (file.find("tokenizer.ggml.token_type")) {
    for (auto t : file.get_int_array("tokenizer.ggml.token_type")) {
      if (t < 1 || t > 6) throw LlamaError(cat("tokenizer: token type: expected 1..6, got ", t));
      types.push_back(static_cast<TokenType>(t));
    }
  }
  auto id = [&](const char* key, int fallback) -> int {
    const auto v = file.find_uint(key);
    if (!v) return fallback;
    if (*v >= pieces.size()) {
      throw LlamaError(cat("tokenizer: ", key, ": expected 0..", pieces.size() - 1, ", got ", *v));
    }
    return static_cast<int>(*v);
  };
  const int bos = id("tokenizer.ggml.bos_token_id", 1);
  const int eos = id("tokenizer.ggml.eos_token_id", 2);
  const int unknown = id("tokenizer.ggml.unknown_token_id", 0);
  bool add_space_prefix = true;
  if (const GgufValue* v = file.find("tokenizer.ggml.add_space_prefix")) {
    if (v->type() != GgufType::boolean)
      throw LlamaError(cat("tokenizer: tokenizer.ggml.add_space_prefix: expected a bool, got ", gguf_type_name(v->type())));
    add_space_prefix = std::get<bool>(v->value);
  }
  return SentencePieceBpe(std::move(pieces), std::move(scores), std::move(types), bos, eos, unknown, add_space_prefix);
}

int SentencePieceBpe::lookup(const std::string& piece) const {
  const auto it = piece_index_.find(piece);
  return it == piece_index_.end() ? -1 : it->second;
}

std::vector<int> SentencePieceBpe::encode(std::string_view text, bool add_bos, bool add_eos) const {
  std::vector<int> out;
  if (add_bos) out.push_back(bos_id_);
  // Stretches of text and user-defined tokens (token >= 0), in text order.
  struct Fragment {
    std::string_view text;
    int token;
  };
  std::vector<Fragment> fragments;
  if (!text.empty()) fragments.push_back({text, -1});
  for (const int id : user_defined_) {
    const std::string& piece = pieces_[static_cast<std::size_t>(id)];
    std::vector<Fragment> cut;
    cut.reserve(fragments.size());
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        cut.push_back(f);
        continue;
      }
      std::size_t from = 0;
      for (std::size_t at = f.text.find(piece); at != std::string_view::npos; at = f.text.find(piece, from)) {
        if (at > from) cut.push_back({f.text.substr(from, at - from), -1});
        cut.push_back({{}, id});
        from = at + piece.size();
      }
      if (from < f.text.size()) cut.push_back({f.text.substr(from), -1});
    }
    fragments = std::move(cut);
  }
  bool after_special = true;  // the dummy prefix goes before the first stretch and after each user-defined token
  for (const Fragment& f : fragments) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
    } else {
      encode_stretch(f.text, add_space_prefix_ && after_special, out);
      after_special = false;
    }
  }
  if (add_eos) out.push_back(eos_id_);
  return out;
}

void SentencePieceBpe::encode_stretch(std::string_view text, bool dummy_prefix, std::vector<int>& out) const {
  {
    // Slot order is text order (a merge keeps the left slot), so "leftmost" means "smallest
    // slot"; a symbol's links make the list that merges shrink.
    struct Symbol {
      int token;
      int prev;
      int next;
    };
    std::vector<Symbol> symbols;
    symbols.reserve(text.size() + 1);
    auto push_unit = [&](std::string_view unit) {
      const int token = lookup(replace_all(unit, " ", kSpaceMarker));
      if (token >= 0) {
        symbols.push_back({token, 0, 0});
      } else {
        for (unsigned char c : unit) symbols.push_back({byte_token_[c], 0, 0});
      }
    };
    if (dummy_prefix) push_unit(" ");  // a symbol of its own as in llama2.c
    // Units grouped as llama2.c does, on the raw text: a byte and the continuation bytes after
    // it, at most 4 in all (so malformed UTF-8 falls back to bytes the same way).
    std::size_t i = 0;
    while (i < text.size()) {
      std::size_t len = 1;
      while (len < 4 && i + len < text.size() &&
             (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80) {
        ++len;
      }
      push_unit(text.substr(i, len));
      i += len;
    }
    for (std::size_t s = 0; s < symbols.size(); ++s) {
      symbols[s].prev = static_cast<int>(s) - 1;
      symbols[s].next = static_cast<int>(s) + 1;
    }
    if (!symbols.empty()) symbols.back().next = -1;

    struct Candidate {
      float score;
      int left;
      int right;
      int left_token;
      int right_token;
      int merged;
    };
    auto lower_priority = [](const Candidate& a, const Candidate& b) {
      if (a.score != b.score) return a.score < b.score;
      return a.left > b.left;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(lower_priority)> queue(lower_priority);
    auto consider = [&](int left) {
      if (left < 0) return;
      const int right = symbols[left].next;
      if (right < 0) return;
      const int merged = lookup(pieces_[symbols[left].token] + pieces_[symbols[right].token]);
      if (merged < 0) return;
      queue.push({scores_[merged], left, right, symbols[left].token, symbols[right].token, merged});
    };
    for (int s = 0; s + 1 < static_cast<int>(symbols.size()); ++s) consider(s);

    while (!queue.empty()) {
      const Candidate c = queue.top();
      queue.pop();
      Symbol& left = symbols[c.left];
      Symbol& right = symbols[c.right];
      // Stale when either side has merged since the candidate was queued.
      if (left.token != c.left_token || right.token != c.right_token || left.next != c.right) continue;
      left.token = c.merged;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = c.left;
      right.token = -1;  // dead
      right.prev = right.next = -1;
      consider(left.prev);
      consider(c.left);
    }
    for (int s = symbols.empty() ? -1 : 0; s >= 0; s = symbols[s].next) out.push_back(symbols[s].token);
  }
}

const std::string& SentencePieceBpe::piece(int token) const {
  if (token < 0 || token >= vocab_size()) {
    throw LlamaError(cat("tokenizer: token id: expected 0..", vocab_size() - 1, ", got ", token));
  }
  return pieces_[token];
}

float SentencePieceBpe::score(int token) const {
  piece(token);
  return scores_[token];
}

TokenType SentencePieceBpe::type(int token) const {
  piece(token);
  return types_[token];
}

std::string SentencePieceBpe::decode_piece(int previous, int token) const {
  const std::string& p = piece(token);
  if (byte_value_[token] >= 0) return std::string(1, static_cast<char>(byte_value_[token]));
  if (types_[token] == TokenType::control || types_[token] == TokenType::unknown ||
      types_[token] == TokenType::unused) {
    return {};
  }
  std::string text = replace_all(p, kSpaceMarker, " ");
  if (add_space_prefix_ && previous == bos_id_ && !text.empty() && text[0] == ' ') text.erase(0, 1);
  return text;
}

std::string SentencePieceBpe::decode(std::span<const int> tokens) const {
  std::string out;
  bool at_start = true;  // no text piece emitted yet
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const int token = tokens[i];
    // At the start, act as if BOS preceded: that strips the dummy prefix.
    const int previous = at_start ? bos_id_ : tokens[i - 1];
    std::string text = decode_piece(previous, token);
    if (types_[token] == TokenType::normal || types_[token] == TokenType::user_defined ||
        types_[token] == TokenType::byte) {
      at_start = false;
    }
    out += text;
  }
  return out;
}

Tokenizer::Tokenizer(std::vector<std::string> pieces, std::vector<float> scores, std::vector<TokenType> types,
                     int bos_id, int eos_id, int unknown_id)
    : impl_(SentencePieceBpe(std::move(pieces), std::move(scores), std::move(types), bos_id, eos_id, unknown_id)),
      expects_bos_(true) {}

Tokenizer::Tokenizer(SentencePieceBpe tokenizer, bool expects_bos)
    : impl_(std::move(tokenizer)), expects_bos_(expects_bos) {}

Tokenizer::Tokenizer(ByteLevelBpe tokenizer, bool expects_bos)
    : impl_(std::move(tokenizer)), expects_bos_(expects_bos) {}

Tokenizer Tokenizer::from_gguf(const GgufFile& file) {
  const auto model = file.find_string("tokenizer.ggml.model");
  if (!model) throw LlamaError("tokenizer: expected metadata 'tokenizer.ggml.model', it is absent");
  const GgufValue* add_bos = file.find("tokenizer.ggml.add_bos_token");
  if (add_bos && add_bos->type() != GgufType::boolean) {
    throw LlamaError(cat("tokenizer: tokenizer.ggml.add_bos_token: expected a bool, got ",
                         gguf_type_name(add_bos->type())));
  }
  auto expects_bos = [&](bool fallback) { return add_bos ? std::get<bool>(add_bos->value) : fallback; };
  if (*model == "llama") return Tokenizer(SentencePieceBpe::from_gguf(file), expects_bos(true));
  if (*model == "gpt2") return Tokenizer(ByteLevelBpe::from_gguf(file), expects_bos(false));
  throw LlamaError(cat("tokenizer: tokenizer.ggml.model: expected \"llama\" or \"gpt2\", got \"", *model, "\""));
}

TokenizerModel Tokenizer::model() const noexcept {
  return std::holds_alternative<SentencePieceBpe>(impl_) ? TokenizerModel::llama : TokenizerModel::gpt2;
}

std::vector<int> Tokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
  return std::visit([&](const auto& t) { return t.encode(text, add_bos, add_eos); }, impl_);
}

std::string Tokenizer::decode_piece(int previous, int token) const {
  return std::visit([&](const auto& t) { return t.decode_piece(previous, token); }, impl_);
}

std::string Tokenizer::decode(std::span<const int> tokens) const {
  return std::visit([&](const auto& t) { return t.decode(tokens); }, impl_);
}

int Tokenizer::vocab_size() const noexcept {
  return std::visit([](const auto& t) { return t.vocab_size(); }, impl_);
}
int Tokenizer::bos_id() const noexcept {
  return std::visit([](const auto& t) { return t.bos_id(); }, impl_);
}
int Tokenizer::eos_id() const noexcept {
  return std::visit([](const auto& t) { return t.eos_id(); }, impl_);
}
int Tokenizer::unknown_id() const noexcept {
  return std::visit([](const auto& t) { return t.unknown_id(); }, impl_);
}

const std::string& Tokenizer::piece(int token) const {
  return std::visit([&](const auto& t) -> const std::string& { return t.piece(token); }, impl_);
}

float Tokenizer::score(int token) const {
  if (const auto* sp = std::get_if<SentencePieceBpe>(&impl_)) return sp->score(token);
  std::get<ByteLevelBpe>(impl_).piece(token);  // range check
  return 0.0f;
}

TokenType Tokenizer::type(int token) const {
  return std::visit([&](const auto& t) { return t.type(token); }, impl_);
}

}  // namespace ttq::llama
