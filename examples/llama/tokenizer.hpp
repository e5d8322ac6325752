// The `llama` tokenizer of GGUF files: SentencePiece-style BPE with scores and byte fallback,
// encoding and decoding as llama2.c's `encode` / `decode` do, so that token counts and NLL
// figures are comparable with llama2.c and the numpy reference in tests/llama/. It exists
// because the runner must turn the evaluation text into exactly the token sequences the
// reference scored.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ttq::llama {

class GgufFile;

// Misuse or bad content above the file format: tokenizer metadata that is missing or
// inconsistent, an unsupported architecture, a tensor of the wrong shape, a token id out of
// range, a sequence longer than the context.
class LlamaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// SentencePiece token types as stored in `tokenizer.ggml.token_type`.
enum class TokenType : std::int32_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

class Tokenizer {
 public:
  // pieces[i] is token i's text with SentencePiece's U+2581 ("▁") standing for a space; scores
  // are merge priorities (higher merges first); types may be empty (all normal, byte tokens
  // recognised by their "<0xNN>" spelling). Preconditions (LlamaError otherwise): pieces is
  // non-empty, scores and (non-empty) types have its size, scores are finite, the special ids
  // are in range.
  Tokenizer(std::vector<std::string> pieces, std::vector<float> scores,
            std::vector<TokenType> types, int bos_id, int eos_id, int unknown_id);

  // Reads `tokenizer.ggml.{model,tokens,scores,token_type,bos_token_id,eos_token_id,
  // unknown_token_id}`. The model must be "llama"; scores default to 0, types to normal, and
  // bos/eos/unknown to 1/2/0 when absent. Throws LlamaError (or GgufError for malformed
  // values).
  static Tokenizer from_gguf(const GgufFile& file);

  // Tokenizes like llama2.c's encode(): optional BOS, then (for non-empty text) the dummy
  // prefix "▁" as a symbol of its own, then the text split into units of one byte plus up to
  // three continuation bytes (UTF-8 code points when the text is valid), each looked up as a
  // piece with ' ' read as "▁" or else spelled as byte tokens "<0xNN>", then the adjacent pair whose
  // concatenation is a piece with the highest score is merged, leftmost first on ties, until
  // no pair merges; optional EOS. Control, unknown, unused and byte pieces never take part in
  // lookups or merges (SentencePiece's rule; llama2.c's vocabularies never form them anyway).
  // Differs from llama2.c in one corner only: llama2.c ignores merges scored below -1e10.
  std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos = false) const;

  // Text of `token` as it follows `previous`, as llama2.c's decode(): "▁" becomes ' ', a byte
  // token becomes its raw byte, and the leading space of a piece that follows BOS is dropped
  // (it is the dummy prefix). Control and unknown tokens give "" (llama2.c prints their
  // spelling; a generate tool does not want "</s>" in its output). Throws LlamaError for an
  // id out of range.
  std::string decode_piece(int previous, int token) const;

  // Concatenated decode_piece() of a sequence; the dummy-prefix space of the first text piece
  // is dropped also when no BOS precedes it, so decode(encode(s, b)) == s for any b.
  std::string decode(std::span<const int> tokens) const;

  int vocab_size() const noexcept { return static_cast<int>(pieces_.size()); }
  int bos_id() const noexcept { return bos_id_; }
  int eos_id() const noexcept { return eos_id_; }
  int unknown_id() const noexcept { return unknown_id_; }
  const std::string& piece(int token) const;
  float score(int token) const;
  TokenType type(int token) const;

 private:
  int lookup(const std::string& piece) const;  // -1 when not a mergeable piece

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::vector<int> byte_value_;        // 0..255 for byte tokens, -1 otherwise
  int byte_token_[256];                // token of each byte, or unknown_id_
  std::unordered_map<std::string, int> piece_index_;
  int bos_id_;
  int eos_id_;
  int unknown_id_;
};

}  // namespace ttq::llama
