// The "gpt2" tokenizer's implementation: GPT-2's byte-to-unicode spelling, the regex
// pre-tokenizer written out as a hand-made matcher over classified code points (no regex
// library: std::regex has no \p{L}, and the alternation's first-match semantics are simple to
// state directly), and merge-rank BPE within each word with the same priority-queue scheme as
// the "llama" tokenizer, keyed on rank instead of score.
#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <limits>
#include <queue>
#include <span>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "llama/gguf.hpp"
#include "llama/error.hpp"
#include "llama/tokenizer.hpp"

namespace ttq::llama {
namespace {

struct CodePointRange {
  char32_t first;
  char32_t last;
};

#include "llama/unicode_ranges.inc"

bool in_ranges(std::span<const CodePointRange> ranges, char32_t c) {
  const auto it = std::upper_bound(ranges.begin(), ranges.end(), c,
                                   [](char32_t v, const CodePointRange& r) { return v < r.first; });
  return it != ranges.begin() && c <= std::prev(it)->last;
}

// Unicode's White_Space property (PropList.txt), which is what \s means in the Unicode-aware
// regex engines of HF `tokenizers` and llama.cpp.
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

enum class CharClass : std::uint8_t { letter, number, space, other };

// One code point of the text (or one byte of invalid UTF-8, classed as other).
struct Unit {
  std::size_t offset;
  std::uint32_t length;
  char32_t value;  // the code point; 0xFFFFFFFF for an invalid byte
  CharClass cls;
};

constexpr char32_t kInvalid = 0xFFFFFFFF;

CharClass classify(char32_t c) {
  if (c == kInvalid) return CharClass::other;
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CharClass::letter;
    if (c >= '0' && c <= '9') return CharClass::number;
    return is_white_space(c) ? CharClass::space : CharClass::other;
  }
  if (is_white_space(c)) return CharClass::space;
  if (in_ranges(kLetterRanges, c)) return CharClass::letter;
  if (in_ranges(kNumberRanges, c)) return CharClass::number;
  return CharClass::other;
}

// Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF); anything else is one invalid
// byte.
std::vector<Unit> decode_units(std::string_view text) {
  std::vector<Unit> units;
  units.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    std::uint32_t length = 0;
    char32_t c = kInvalid;
    char32_t min = 0;
    if (b0 < 0x80) {
      length = 1;
      c = b0;
    } else if (b0 >= 0xC2 && b0 <= 0xDF) {
      length = 2;
      c = b0 & 0x1F;
      min = 0x80;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      length = 3;
      c = b0 & 0x0F;
      min = 0x800;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      length = 4;
      c = b0 & 0x07;
      min = 0x10000;
    }
    if (length > 1) {
      if (i + length > text.size()) {
        length = 0;
      } else {
        for (std::uint32_t k = 1; k < length; ++k) {
          const auto b = static_cast<unsigned char>(text[i + k]);
          if ((b & 0xC0) != 0x80) {
            length = 0;
            break;
          }
          c = (c << 6) | (b & 0x3F);
        }
        if (length && (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))) length = 0;
      }
    }
    if (length == 0) {
      length = 1;
      c = kInvalid;
    }
    units.push_back({i, length, c, classify(c)});
    i += length;
  }
  return units;
}

// GPT-2's regex on units[begin, end): the end of the match that starts at `i`.
std::size_t gpt2_match(const std::vector<Unit>& u, std::size_t i, std::size_t end) {
  // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive).
  if (u[i].value == U'\'' && i + 1 < end) {
    const char32_t a = u[i + 1].value;
    if (a == U's' || a == U't' || a == U'm' || a == U'd') return i + 2;
    if (i + 2 < end) {
      const char32_t b = u[i + 2].value;
      if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) return i + 3;
    }
  }
  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the classes are disjoint, so at most one of the
  // three applies, decided by the first unit that is not the optional space.
  std::size_t run = i;
  if (u[i].value == U' ' && i + 1 < end && u[i + 1].cls != CharClass::space) run = i + 1;
  if (u[run].cls != CharClass::space) {
    const CharClass cls = u[run].cls;
    std::size_t j = run + 1;
    while (j < end && u[j].cls == cls) ++j;
    return j;
  }
  // \s+(?!\S) backs off one unit when the run is followed by a non-space; a run of one then
  // fails and the last alternative \s+ takes it whole.
  std::size_t j = i + 1;
  while (j < end && u[j].cls == CharClass::space) ++j;
  if (j == end || j - i == 1) return j;
  return j - 1;
}

void gpt2_split(std::string_view text, const std::vector<Unit>& u, std::size_t begin, std::size_t end,
                std::vector<std::string_view>& words) {
  std::size_t i = begin;
  while (i < end) {
    const std::size_t j = gpt2_match(u, i, end);
    const std::size_t from = u[i].offset;
    const std::size_t to = u[j - 1].offset + u[j - 1].length;
    words.push_back(text.substr(from, to - from));
    i = j;
  }
}

// GPT-2's bytes_to_unicode(): the 188 printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ')
// stand for themselves; the other 68 bytes take U+0100, U+0101, ... in byte order.
struct ByteSpelling {
  std::array<char32_t, 256> code_point{};
  std::array<int, 0x100 + 68> byte_of_code_point{};  // -1 where no byte is spelled so
  ByteSpelling() {
    byte_of_code_point.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t c = printable ? static_cast<char32_t>(b) : next++;
      code_point[static_cast<std::size_t>(b)] = c;
      byte_of_code_point[c] = b;
    }
  }
  // The byte a code point spells, or -1.
  int byte_of(char32_t c) const { return c < byte_of_code_point.size() ? byte_of_code_point[c] : -1; }
};

const ByteSpelling& byte_spelling() {
  static const ByteSpelling table;
  return table;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// The bytes a normal token's spelling stands for: each spelling code point becomes its byte;
// a code point outside the spelling (none in real vocabularies) is kept as UTF-8.
std::string spelled_bytes(std::string_view piece) {
  std::string out;
  for (const Unit& unit : decode_units(piece)) {
    const int b = unit.value == kInvalid ? -1 : byte_spelling().byte_of(unit.value);
    if (b >= 0) {
      out += static_cast<char>(b);
    } else {
      out.append(piece.substr(unit.offset, unit.length));
    }
  }
  return out;
}

}  // namespace

PreTokenizer pre_tokenizer_from_name(std::string_view name) {
  constexpr std::string_view kGpt2[] = {"gpt2", "mpt", "olmo"};
  constexpr std::string_view kSingleDigits[] = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone"};
  if (std::find(std::begin(kGpt2), std::end(kGpt2), name) != std::end(kGpt2)) return PreTokenizer::gpt2;
  if (std::find(std::begin(kSingleDigits), std::end(kSingleDigits), name) != std::end(kSingleDigits)) {
    return PreTokenizer::gpt2_single_digits;
  }
  throw LlamaError(cat("tokenizer: tokenizer.ggml.pre: expected one of gpt2, mpt, olmo, smollm, starcoder, refact, "
                       "command-r, codeshell, exaone; got \"",
                       name, "\" (its pre-tokenizer is not implemented)"));
}

std::vector<std::string_view> pre_tokenize(PreTokenizer pre, std::string_view text) {
  const std::vector<Unit> units = decode_units(text);
  std::vector<std::string_view> words;
  if (pre == PreTokenizer::gpt2) {
    gpt2_split(text, units, 0, units.size(), words);
    return words;
  }
  // Digits(individual_digits): every number code point is a word; GPT-2's regex runs on the
  // stretches between them, each on its own (so " 42" gives " ", "4", "2").
  std::size_t begin = 0;
  for (std::size_t i = 0; i <= units.size(); ++i) {
    if (i < units.size() && units[i].cls != CharClass::number) continue;
    gpt2_split(text, units, begin, i, words);
    if (i < units.size()) words.push_back(text.substr(units[i].offset, units[i].length));
    begin = i + 1;
  }
  return words;
}

std::string byte_level_spelling(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) append_utf8(out, byte_spelling().code_point[b]);
  return out;
}

ByteLevelBpe::ByteLevelBpe(std::vector<std::string> pieces, std::vector<TokenType> types,
                           std::span<const std::string> merges, PreTokenizer pre, int bos_id, int eos_id,
                           int unknown_id)
    : pieces_(std::move(pieces)), types_(std::move(types)), pre_(pre), bos_id_(bos_id), eos_id_(eos_id),
      unknown_id_(unknown_id) {
  const auto n = pieces_.size();
  if (n == 0) throw LlamaError("tokenizer: expected at least one token, got an empty vocabulary");
  if (n > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw LlamaError(cat("tokenizer: expected fewer than 2^31 tokens, got ", n));
  }
  if (types_.empty()) types_.assign(n, TokenType::normal);
  if (types_.size() != n) {
    throw LlamaError(cat("tokenizer: expected ", n, " token types (one per token), got ", types_.size()));
  }
  for (std::size_t i = 0; i < n; ++i) {
    const auto t = static_cast<std::int32_t>(types_[i]);
    if (t < 1 || t > 6) throw LlamaError(cat("tokenizer: type of token ", i, ": expected 1..6, got ", t));
  }
  auto check_id = [&](const char* what, int id) {
    if (id < 0 || static_cast<std::size_t>(id) >= n) {
      throw LlamaError(cat("tokenizer: ", what, " id: expected 0..", n - 1, ", got ", id));
    }
  };
  check_id("bos", bos_id_);
  check_id("eos", eos_id_);
  check_id("unknown", unknown_id_);

  // Only normal and user-defined pieces take part in encoding (control tokens such as
  // "<|endoftext|>" are never formed from text).
  std::unordered_map<std::string_view, int> index;
  index.reserve(n);
  bytes_.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (types_[i] == TokenType::normal) {
      bytes_[i] = spelled_bytes(pieces_[i]);
    } else {
      bytes_[i] = pieces_[i];  // user-defined pieces are literal text
    }
    if (types_[i] == TokenType::normal || types_[i] == TokenType::user_defined) {
      index.emplace(pieces_[i], static_cast<int>(i));
    }
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = index.find(byte_level_spelling(std::string(1, static_cast<char>(b))));
    byte_token_[static_cast<std::size_t>(b)] = it == index.end() ? -1 : it->second;
  }
  merge_rank_.reserve(merges.size());
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const std::string& m = merges[r];
    const auto space = m.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == m.size() || m.find(' ', space + 1) != std::string::npos) {
      throw LlamaError(cat("tokenizer: merge ", r, " '", m, "': expected two pieces separated by one space"));
    }
    const std::string_view left(m.data(), space);
    const std::string_view right(m.data() + space + 1, m.size() - space - 1);
    const auto l = index.find(left);
    const auto rt = index.find(right);
    const auto merged = index.find(std::string(left) + std::string(right));
    if (l == index.end() || rt == index.end() || merged == index.end()) {
      throw LlamaError(cat("tokenizer: merge ", r, " '", m, "': expected both parts and their concatenation ",
                           "in the vocabulary, ",
                           l == index.end() ? "the left part" : rt == index.end() ? "the right part" : "the concatenation",
                           " is not"));
    }
    const std::uint64_t key = static_cast<std::uint64_t>(l->second) << 32 | static_cast<std::uint32_t>(rt->second);
    merge_rank_.emplace(key, Merge{static_cast<int>(r), merged->second});
  }
}

ByteLevelBpe ByteLevelBpe::from_gguf(const GgufFile& file) {
  const auto model = file.find_string("tokenizer.ggml.model");
  if (!model) throw LlamaError("tokenizer: expected metadata 'tokenizer.ggml.model', it is absent");
  if (*model != "gpt2") {
    throw LlamaError(cat("tokenizer: expected tokenizer.ggml.model \"gpt2\", got \"", *model, "\""));
  }
  const auto pre_name = file.find_string("tokenizer.ggml.pre");
  if (!pre_name) throw LlamaError("tokenizer: expected metadata 'tokenizer.ggml.pre' for a gpt2 vocabulary, it is absent");
  const PreTokenizer pre = pre_tokenizer_from_name(*pre_name);
  auto pieces = file.get_string_array("tokenizer.ggml.tokens");
  const auto merges = file.get_string_array("tokenizer.ggml.merges");
  std::vector<TokenType> types;
  if (file.find("tokenizer.ggml.token_type")) {
    for (auto t : file.get_int_array("tokenizer.ggml.token_type")) {
      if (t < 1 || t > 6) throw LlamaError(cat("tokenizer: token type: expected 1..6, got ", t));
      types.push_back(static_cast<TokenType>(t));
    }
  }
  auto id = [&](const char* key) -> int {
    const auto v = file.find_uint(key);
    if (!v) return 0;
    if (*v >= pieces.size()) {
      throw LlamaError(cat("tokenizer: ", key, ": expected 0..", pieces.size() - 1, ", got ", *v));
    }
    return static_cast<int>(*v);
  };
  const int bos = id("tokenizer.ggml.bos_token_id");
  const int eos = id("tokenizer.ggml.eos_token_id");
  const int unknown = id("tokenizer.ggml.unknown_token_id");
  return ByteLevelBpe(std::move(pieces), std::move(types), merges, pre, bos, eos, unknown);
}

void ByteLevelBpe::encode_word(std::string_view word, std::vector<int>& out) const {
  struct Symbol {
    int token;
    int prev;
    int next;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (unsigned char b : word) {
    const int token = byte_token_[b];
    if (token >= 0) symbols.push_back({token, static_cast<int>(symbols.size()) - 1, static_cast<int>(symbols.size()) + 1});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    int rank;
    int left;
    int right;
    int left_token;
    int right_token;
    int merged;
  };
  // Lowest rank first, then leftmost.
  auto later = [](const Candidate& a, const Candidate& b) {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.left > b.left;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
  auto consider = [&](int left) {
    if (left < 0) return;
    const int right = symbols[static_cast<std::size_t>(left)].next;
    if (right < 0) return;
    const int lt = symbols[static_cast<std::size_t>(left)].token;
    const int rt = symbols[static_cast<std::size_t>(right)].token;
    const auto it = merge_rank_.find(static_cast<std::uint64_t>(lt) << 32 | static_cast<std::uint32_t>(rt));
    if (it == merge_rank_.end()) return;
    queue.push({it->second.rank, left, right, lt, rt, it->second.merged});
  };
  for (int s = 0; s + 1 < static_cast<int>(symbols.size()); ++s) consider(s);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<std::size_t>(c.left)];
    Symbol& right = symbols[static_cast<std::size_t>(c.right)];
    // Stale when either side has merged since the candidate was queued.
    if (left.token != c.left_token || right.token != c.right_token || left.next != c.right) continue;
    left.token = c.merged;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = c.left;
    right.token = -1;
    right.prev = right.next = -1;
    consider(left.prev);
    consider(c.left);
  }
  for (int s = 0; s >= 0; s = symbols[static_cast<std::size_t>(s)].next) out.push_back(symbols[static_cast<std::size_t>(s)].token);
}

std::vector<int> ByteLevelBpe::encode(std::string_view text, bool add_bos, bool add_eos) const {
  std::vector<int> out;
  if (add_bos) out.push_back(bos_id_);
  for (std::string_view word : pre_tokenize(pre_, text)) encode_word(word, out);
  if (add_eos) out.push_back(eos_id_);
  return out;
}

const std::string& ByteLevelBpe::piece(int token) const {
  if (token < 0 || token >= vocab_size()) {
    throw LlamaError(cat("tokenizer: token id: expected 0..", vocab_size() - 1, ", got ", token));
  }
  return pieces_[static_cast<std::size_t>(token)];
}

TokenType ByteLevelBpe::type(int token) const {
  piece(token);
  return types_[static_cast<std::size_t>(token)];
}

std::string ByteLevelBpe::decode_piece(int previous, int token) const {
  (void)previous;
  const TokenType t = type(token);
  if (t == TokenType::control || t == TokenType::unknown || t == TokenType::unused) return {};
  return bytes_[static_cast<std::size_t>(token)];
}

std::string ByteLevelBpe::decode(std::span<const int> tokens) const {
  std::string out;
  for (std::size_t i = 0; i < tokens.size(); ++i) out += decode_piece(i ? tokens[i - 1] : -1, tokens[i]);
  return out;
}

}  // namespace ttq::llama
