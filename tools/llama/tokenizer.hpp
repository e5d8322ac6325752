// The tokenizers of GGUF files, behind one `Tokenizer` that Tokenizer::from_gguf picks by
// `tokenizer.ggml.model`:
//   "llama"  SentencePieceBpe: SentencePiece-style BPE with scores and byte fallback, encoding and
//            decoding as llama2.c's `encode` / `decode` do, so that token counts and NLL figures
//            are comparable with llama2.c and the numpy reference in tests/llama/;
//   "gpt2"   ByteLevelBpe: GPT-2's byte-level BPE with ranked merges and a regex pre-tokenizer
//            (SmolLM2 and other Hugging Face BPE vocabularies), matching HF `tokenizers`.
// They exist because the runner must turn the evaluation text into exactly the token sequences
// the model's own tool chain would produce.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "llama/error.hpp"

namespace ttq::llama {

class GgufFile;

// Token types as stored in `tokenizer.ggml.token_type` (SentencePiece's numbering, which GGUF
// uses for every tokenizer model).
enum class TokenType : std::int32_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

// The "llama" tokenizer.
class SentencePieceBpe {
 public:
  // pieces[i] is token i's text with SentencePiece's U+2581 ("▁") standing for a space; scores
  // are merge priorities (higher merges first); types may be empty (all normal, byte tokens
  // recognised by their "<0xNN>" spelling). add_space_prefix: whether encode() puts the dummy
  // prefix "▁" before the text (SentencePiece's add_dummy_prefix; Llama yes, Gemma no).
  // Preconditions (LlamaError otherwise): pieces is non-empty, scores and (non-empty) types have
  // its size, scores are finite, the special ids are in range.
  SentencePieceBpe(std::vector<std::string> pieces, std::vector<float> scores,
                   std::vector<TokenType> types, int bos_id, int eos_id, int unknown_id,
                   bool add_space_prefix = true);

  // Reads `tokenizer.ggml.{model,tokens,scores,token_type,bos_token_id,eos_token_id,
  // unknown_token_id,add_space_prefix}`. The model must be "llama"; scores default to 0, types
  // to normal, bos/eos/unknown to 1/2/0 and add_space_prefix to true when absent. Throws
  // LlamaError (or GgufError for malformed values).
  static SentencePieceBpe from_gguf(const GgufFile& file);

  // Tokenizes as llama.cpp does a SentencePiece vocabulary (llama_vocab::tokenize without
  // parse_special), which for vocabularies without user-defined tokens is llama2.c's encode():
  //  1. optional BOS;
  //  2. the user-defined pieces (Gemma: runs of newlines, spaces and tabs, HTML tags) are cut
  //     out of the text whole before any merging: longest piece first (ties by id), each
  //     partitioning the text that earlier ones left, leftmost occurrence first;
  //  3. every remaining stretch of text is encoded on its own: the dummy prefix "▁" as a symbol
  //     of its own (with add_space_prefix, before the first stretch and any stretch that follows
  //     a user-defined piece), then the stretch split into units of one byte plus up to three
  //     continuation bytes (UTF-8 code points when the text is valid), each looked up as a
  //     piece with ' ' read as "▁" or else spelled as byte tokens "<0xNN>", then the adjacent
  //     pair whose concatenation is a piece with the highest score is merged, leftmost first on
  //     ties, until no pair merges;
  //  4. optional EOS.
  // Control, unknown, unused and byte pieces never take part in lookups or merges
  // (SentencePiece's rule). Differs from llama2.c in one corner only: llama2.c ignores merges
  // scored below -1e10.
  std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos = false) const;

  // Text of `token` as it follows `previous`, as llama2.c's decode(): "▁" becomes ' ', a byte
  // token becomes its raw byte, and, with add_space_prefix, the leading space of a piece that
  // follows BOS is dropped (it is the dummy prefix). Control and unknown tokens give ""
  // (llama2.c prints their spelling; a generate tool does not want "</s>" in its output).
  // Throws LlamaError for an id out of range.
  std::string decode_piece(int previous, int token) const;

  // Concatenated decode_piece() of a sequence; the dummy-prefix space of the first text piece
  // is dropped also when no BOS precedes it, so decode(encode(s, b)) == s for any b.
  std::string decode(std::span<const int> tokens) const;

  bool add_space_prefix() const noexcept { return add_space_prefix_; }

  int vocab_size() const noexcept { return static_cast<int>(pieces_.size()); }
  int bos_id() const noexcept { return bos_id_; }
  int eos_id() const noexcept { return eos_id_; }
  int unknown_id() const noexcept { return unknown_id_; }
  const std::string& piece(int token) const;
  float score(int token) const;
  TokenType type(int token) const;

 private:
  int lookup(const std::string& piece) const;  // -1 when not a mergeable piece
  // Step 3 of encode() on one stretch of text.
  void encode_stretch(std::string_view text, bool dummy_prefix, std::vector<int>& out) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::vector<int> byte_value_;        // 0..255 for byte tokens, -1 otherwise
  int byte_token_[256];                // token of each byte, or unknown_id_
  std::unordered_map<std::string, int> piece_index_;
  int bos_id_;
  int eos_id_;
  int unknown_id_;
  bool add_space_prefix_;
  std::vector<int> user_defined_;  // user-defined tokens with text, longest first (ties by id)
};

// The pre-tokenizers of byte-level BPE (`tokenizer.ggml.pre`), which cut text into the words
// that BPE then merges within. Both follow GPT-2's regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (first alternative that matches at a position wins; \s is Unicode White_Space, \p{L} and
// \p{N} the letter and number categories, from Unicode 16 tables: unicode_ranges.inc).
enum class PreTokenizer {
  gpt2,                // GPT-2's regex alone ("gpt2", "mpt", "olmo")
  gpt2_single_digits,  // every \p{N} code point first cut out as a word of its own, then GPT-2's
                       // regex on the rest: HF's Sequence[Digits(individual_digits), ByteLevel]
                       // ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone")
};

// The pre-tokenizer of a `tokenizer.ggml.pre` name (listed above); LlamaError for other names.
PreTokenizer pre_tokenizer_from_name(std::string_view name);

// Cuts `text` into words as `pre` does; the words are views into `text` and concatenate to it.
// Text that is not valid UTF-8 is read one invalid byte at a time, each such byte classed as
// neither letter, number nor space (the HF reference accepts only valid UTF-8).
std::vector<std::string_view> pre_tokenize(PreTokenizer pre, std::string_view text);

// GPT-2's byte-to-unicode spelling of raw bytes, in which byte-level vocabularies are written:
// printable Latin-1 bytes stand for themselves, the other 68 bytes for U+0100.. in byte order
// (so ' ' is "\u0120" = "Ġ", '\n' is "Ċ"). Returns UTF-8.
std::string byte_level_spelling(std::string_view bytes);

// The "gpt2" tokenizer: text -> pre_tokenize -> each word's bytes as one symbol each -> merge,
// within the word, the adjacent pair of lowest merge rank (leftmost on ties) until none is
// ranked -> token ids. This is Hugging Face `tokenizers`' BPE with a ByteLevel pre-tokenizer and
// no normalizer, which tests/llama/reference_smollm2.py uses to produce the fixed encodings.
// Special-token spellings in the text ("<|endoftext|>") are encoded as plain text, as llama.cpp
// does without parse_special. A byte whose single-byte token the vocabulary lacks (SmolLM2's
// lacks 0x04, 0x06, 0x13, 0x14, 0x16, 0x1D and bytes that never occur in UTF-8) is dropped
// before merging, as HF `tokenizers` does; decode(encode(s)) == s for all other text.
class ByteLevelBpe {
 public:
  // pieces[i] is token i's text in byte_level_spelling (for control tokens: their literal
  // text); merges[r] is the pair of rank r (0 merges first) as "left right", two pieces
  // separated by one space. Preconditions (LlamaError naming the entry otherwise): pieces is
  // non-empty, (non-empty) types has its size, every merge has two parts that are normal or
  // user-defined pieces and so is their concatenation, the special ids are in range. Of
  // duplicate pieces the first wins; of duplicate merges the first (lowest rank) wins.
  ByteLevelBpe(std::vector<std::string> pieces, std::vector<TokenType> types,
               std::span<const std::string> merges, PreTokenizer pre, int bos_id, int eos_id,
               int unknown_id);

  // Reads `tokenizer.ggml.{model,pre,tokens,token_type,merges,bos_token_id,eos_token_id,
  // unknown_token_id}`. The model must be "gpt2" and the pre-tokenizer one of PreTokenizer's
  // names; bos/eos/unknown default to 0 when absent. Throws LlamaError / GgufError.
  static ByteLevelBpe from_gguf(const GgufFile& file);

  // Optional BOS, the text's tokens as described above, optional EOS.
  std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos = false) const;
  // Raw bytes of `token` (`previous` is unused: byte-level tokens carry their own spaces).
  // Control, unknown and unused tokens give "". Throws LlamaError for an id out of range.
  std::string decode_piece(int previous, int token) const;
  // Concatenated decode_piece() of a sequence.
  std::string decode(std::span<const int> tokens) const;

  int vocab_size() const noexcept { return static_cast<int>(pieces_.size()); }
  int bos_id() const noexcept { return bos_id_; }
  int eos_id() const noexcept { return eos_id_; }
  int unknown_id() const noexcept { return unknown_id_; }
  PreTokenizer pre_tokenizer() const noexcept { return pre_; }
  int merge_count() const noexcept { return static_cast<int>(merge_rank_.size()); }
  const std::string& piece(int token) const;
  TokenType type(int token) const;

 private:
  struct Merge {
    int rank;
    int merged;  // token id of the concatenation
  };
  void encode_word(std::string_view word, std::vector<int>& out) const;

  std::vector<std::string> pieces_;
  std::vector<TokenType> types_;
  std::vector<std::string> bytes_;     // raw bytes each token decodes to
  std::array<int, 256> byte_token_{};  // single-byte token of each byte, or -1
  std::unordered_map<std::uint64_t, Merge> merge_rank_;  // key: left id << 32 | right id
  PreTokenizer pre_;
  int bos_id_;
  int eos_id_;
  int unknown_id_;
};

// The tokenizer model of a GGUF file (`tokenizer.ggml.model`).
enum class TokenizerModel { llama, gpt2 };

// The tokenizer the runner and its tools use: one of the two above, chosen by the file. Every
// member forwards to it; the documentation of each is there.
class Tokenizer {
 public:
  // A "llama" tokenizer (SentencePieceBpe's constructor), expecting BOS.
  Tokenizer(std::vector<std::string> pieces, std::vector<float> scores,
            std::vector<TokenType> types, int bos_id, int eos_id, int unknown_id);
  // expects_bos: whether sequences of this model start with BOS (see expects_bos()).
  explicit Tokenizer(SentencePieceBpe tokenizer, bool expects_bos = true);
  explicit Tokenizer(ByteLevelBpe tokenizer, bool expects_bos = false);

  // Dispatches on `tokenizer.ggml.model` ("llama" or "gpt2"; LlamaError naming the value
  // otherwise) and reads `tokenizer.ggml.add_bos_token` (default: true for llama, false for
  // gpt2, as llama.cpp does).
  static Tokenizer from_gguf(const GgufFile& file);

  TokenizerModel model() const noexcept;
  // Whether the model expects every sequence to start with BOS (`tokenizer.ggml.add_bos_token`).
  // The evaluation code passes this as encode()'s add_bos. SmolLM2 says false: its BOS id is
  // "<|im_start|>", a chat-turn marker, and its documents are separated by "<|endoftext|>".
  bool expects_bos() const noexcept { return expects_bos_; }

  std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos = false) const;
  std::string decode_piece(int previous, int token) const;
  std::string decode(std::span<const int> tokens) const;

  int vocab_size() const noexcept;
  int bos_id() const noexcept;
  int eos_id() const noexcept;
  int unknown_id() const noexcept;
  const std::string& piece(int token) const;
  // SentencePiece score of `token`; 0 for byte-level vocabularies, which rank merges instead.
  float score(int token) const;
  TokenType type(int token) const;

  // The implementation, for what only it offers (nullptr when the model is the other one).
  const SentencePieceBpe* sentencepiece() const noexcept { return std::get_if<SentencePieceBpe>(&impl_); }
  const ByteLevelBpe* byte_level() const noexcept { return std::get_if<ByteLevelBpe>(&impl_); }

 private:
  std::variant<SentencePieceBpe, ByteLevelBpe> impl_;
  bool expects_bos_;
};

}  // namespace ttq::llama
