// Tests of tools/llama/tokenizer.hpp: fixed encodings computed by reference_llama.py (a
// literal transcription of llama2.c's encode in Python), agreement with a literal C++
// transcription of llama2.c's rescan loop on seeded random text, decode rules, round trips of
// every evaluation story, and the error paths.
#include <catch2/catch.hpp>

#include <filesystem>
#include <random>
#include <unordered_map>

#include "gguf_builder.hpp"
#include "llama/eval.hpp"
#include "llama/gguf.hpp"
#include "llama/tokenizer.hpp"

using namespace ttq::llama;

namespace {

const std::filesystem::path kDataDir = TTQ_LLAMA_DATA_DIR;

const Tokenizer& stories_tokenizer() {
  static const Tokenizer t = Tokenizer::from_gguf(read_gguf_file(kDataDir / "stories260K.gguf"));
  return t;
}

// llama2.c run.c encode(), transcribed: the vocabulary in llama2.c's form ("▁" stored as " ",
// as its tokenizer export writes it), every piece looked up (as its sorted-vocabulary search
// does), byte fallback as id + 3, and a rescan of the whole sequence after each merge.
std::vector<int> llama2c_encode(const Tokenizer& tok, const std::string& text) {
  std::vector<std::string> vocab;
  std::unordered_map<std::string, int> index;
  for (int i = 0; i < tok.vocab_size(); ++i) {
    std::string piece;
    const std::string& p = tok.piece(i);
    for (std::size_t k = 0; k < p.size(); ++k) {
      if (p.compare(k, 3, "\xE2\x96\x81") == 0) {
        piece += ' ';
        k += 2;
      } else {
        piece += p[k];
      }
    }
    index.emplace(piece, i);
    vocab.push_back(std::move(piece));
  }
  auto lookup = [&](const std::string& s) {
    const auto it = index.find(s);
    return it == index.end() ? -1 : it->second;
  };
  std::vector<int> tokens{tok.bos_id()};
  if (text.empty()) return tokens;
  tokens.push_back(lookup(" "));  // the dummy prefix
  std::string buffer;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) buffer.clear();
    buffer += text[i];
    if (i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80 && buffer.size() < 4) continue;
    const int id = lookup(buffer);
    if (id >= 0) {
      tokens.push_back(id);
    } else {
      for (unsigned char b : buffer) tokens.push_back(b + 3);
    }
    buffer.clear();
  }
  while (true) {
    float best_score = -1e10f;
    int best_id = -1;
    std::size_t best_idx = 0;
    for (std::size_t i = 1; i + 1 < tokens.size(); ++i) {  // i = 0 is BOS
      const int id = lookup(vocab[static_cast<std::size_t>(tokens[i])] + vocab[static_cast<std::size_t>(tokens[i + 1])]);
      if (id != -1 && tok.score(id) > best_score) {
        best_score = tok.score(id);
        best_id = id;
        best_idx = i;
      }
    }
    if (best_id == -1) break;
    tokens[best_idx] = best_id;
    tokens.erase(tokens.begin() + static_cast<std::ptrdiff_t>(best_idx) + 1);
  }
  return tokens;
}

}  // namespace

TEST_CASE("the stories260K tokenizer reads its vocabulary and special ids from the GGUF", "[tokenizer]") {
  const Tokenizer& t = stories_tokenizer();
  CHECK(t.vocab_size() == 512);
  CHECK(t.bos_id() == 1);
  CHECK(t.eos_id() == 2);
  CHECK(t.unknown_id() == 0);
  CHECK(t.piece(1) == "<s>");
  CHECK(t.type(1) == TokenType::control);
  CHECK(t.type(3) == TokenType::byte);
  CHECK_THROWS_AS(t.piece(512), LlamaError);
  CHECK_THROWS_AS(t.piece(-1), LlamaError);
}

TEST_CASE("encodings match the fixed references computed by reference_llama.py", "[tokenizer]") {
  // Produced by `python3 tests/llama/reference_llama.py` (the "encodings" block).
  struct Fixture {
    std::string text;
    std::vector<int> tokens;
  };
  const std::vector<Fixture> fixtures = {
      {"Once upon a time, there was a little girl.", {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 426}},
      {"", {1}},
      {" leading and  double  spaces ", {1, 410, 278, 411, 380, 299, 269, 410, 279, 277, 430, 305, 410, 262, 427, 412, 331, 419, 410}},
      {"Line one.\nLine two!\n", {1, 307, 271, 411, 353, 411, 426, 13, 438, 271, 411, 259, 424, 414, 443, 13}},
      {"Caf\xC3\xA9 na\xC3\xAFve \xE2\x80\x94 \xF0\x9F\x98\x80",
       {1, 410, 457, 412, 431, 485, 297, 412, 198, 178, 360, 410, 481, 410, 243, 162, 155, 131}},
      {"Tom said, \"Wow!\" and ran 123 miles.",
       {1, 274, 287, 336, 432, 313, 448, 327, 443, 436, 269, 352, 303, 410, 475, 479, 472, 284, 290, 406, 426}},
      {"\x01\x7f", {1, 410, 4, 130}},
      {"\xFF\x80"
       "abc",
       {1, 410, 258, 131, 412, 430, 429}},
      {"\x80"
       "abc",
       {1, 410, 131, 412, 430, 429}},
      {"a \x80\x80"
       "b",
       {1, 261, 35, 131, 131, 430}},
  };
  const Tokenizer& t = stories_tokenizer();
  for (const auto& f : fixtures) {
    INFO("text: " << f.text);
    CHECK(t.encode(f.text, true) == f.tokens);
    CHECK(llama2c_encode(t, f.text) == f.tokens);
    CHECK(t.decode(f.tokens) == f.text);
  }
}

TEST_CASE("BOS and EOS are added only when asked for", "[tokenizer]") {
  const Tokenizer& t = stories_tokenizer();
  CHECK(t.encode("", false).empty());
  CHECK(t.encode("", true, true) == std::vector<int>{1, 2});
  const auto with = t.encode("Hi", true, true);
  const auto without = t.encode("Hi", false);
  REQUIRE(with.size() == without.size() + 2);
  CHECK(with.front() == 1);
  CHECK(with.back() == 2);
  CHECK(std::vector<int>(with.begin() + 1, with.end() - 1) == without);
}

TEST_CASE("the priority-queue encoder equals llama2.c's rescan loop on seeded random text", "[tokenizer]") {
  const Tokenizer& t = stories_tokenizer();
  const std::vector<std::string> alphabet = {"a", "e", "t", "o", "n", "s", "h", "r", " ", " ", ".", ",", "!", "\n",
                                             "T", "W", "1", "\"", "'", "\xC3\xA9", "\xE2\x80\x94", "\xF0\x9F\x98\x80",
                                             "the", "ing", " and", "was", "Once", "\x80", "\xFF"};
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> length(0, 60);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    for (int i = length(rng); i > 0; --i) text += alphabet[pick(rng)];
    INFO("text: " << text);
    const auto tokens = t.encode(text, true);
    REQUIRE(tokens == llama2c_encode(t, text));
    REQUIRE(t.decode(tokens) == text);
  }
}

TEST_CASE("every evaluation story round-trips through encode and decode", "[tokenizer]") {
  const Tokenizer& t = stories_tokenizer();
  const auto docs = split_documents(read_text_file(kDataDir / "tinystories-valid.head32k.txt"));
  REQUIRE(docs.size() == 46);
  std::size_t total_tokens = 0;
  for (const auto& doc : docs) {
    const auto tokens = t.encode(doc, true);
    total_tokens += tokens.size();
    CHECK(t.decode(tokens) == doc);
    CHECK(t.decode(t.encode(doc, false)) == doc);
  }
  // 14,721 predictions after truncation to 512; untruncated the documents hold more.
  CHECK(total_tokens > 14721 + 46);
  // llama2c_encode is quadratic; check two whole stories against it.
  CHECK(t.encode(docs[0], true) == llama2c_encode(t, docs[0]));
  CHECK(t.encode(docs[1], true) == llama2c_encode(t, docs[1]));
}

TEST_CASE("decode_piece drops the dummy-prefix space after BOS only, and turns byte tokens into bytes", "[tokenizer]") {
  const Tokenizer& t = stories_tokenizer();
  const int once = t.encode("Once", false).at(0);
  REQUIRE(t.piece(once) == "\xE2\x96\x81Once");
  CHECK(t.decode_piece(t.bos_id(), once) == "Once");
  CHECK(t.decode_piece(once, once) == " Once");
  CHECK(t.decode_piece(once, 3 + '\n') == "\n");
  CHECK(t.decode_piece(once, 3 + 0xFF) == "\xFF");
  CHECK(t.decode_piece(once, t.bos_id()).empty());
  CHECK(t.decode_piece(once, t.eos_id()).empty());
  CHECK_THROWS_AS(t.decode_piece(once, 9999), LlamaError);
  const std::vector<int> with_specials = {1, once, 2};
  CHECK(t.decode(with_specials) == "Once");
}

TEST_CASE("ties between equal merge scores go to the leftmost pair", "[tokenizer]") {
  // "▁aba": "ab" and "ba" score the same; merging the left pair first gives ▁ ab a.
  const Tokenizer t({"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "ab", "ba"},
                    {0, 0, 0, -1, -1, -1, -2, -2}, {}, 1, 2, 0);
  CHECK(t.encode("aba", false) == std::vector<int>{3, 6, 4});
  CHECK(t.encode("bab", false) == std::vector<int>{3, 7, 5});
  CHECK(llama2c_encode(t, "aba") == std::vector<int>{1, 3, 6, 4});
}

TEST_CASE("byte pieces are recognised by spelling when the file has no token types", "[tokenizer]") {
  const Tokenizer t({"<unk>", "<s>", "</s>", "<0x41>", "\xE2\x96\x81"}, {0, 0, 0, 0, 0}, {}, 1, 2, 0);
  CHECK(t.type(3) == TokenType::byte);
  // "A" is not a piece: it falls back to <0x41>, which decodes to "A".
  CHECK(t.encode("A", false) == std::vector<int>{4, 3});
  CHECK(t.decode(std::vector<int>{4, 3}) == "A");
  // A byte missing from the vocabulary becomes <unk>.
  CHECK(t.encode("B", false) == std::vector<int>{4, 0});
}

TEST_CASE("inconsistent tokenizer inputs are LlamaErrors", "[tokenizer]") {
  using V = std::vector<std::string>;
  CHECK_THROWS_AS(Tokenizer(V{}, {}, {}, 0, 0, 0), LlamaError);
  CHECK_THROWS_AS(Tokenizer(V{"a", "b"}, {0}, {}, 0, 0, 0), LlamaError);
  CHECK_THROWS_AS(Tokenizer(V{"a", "b"}, {0, 0}, {TokenType::normal}, 0, 0, 0), LlamaError);
  CHECK_THROWS_AS(Tokenizer(V{"a", "b"}, {0, std::nanf("")}, {}, 0, 0, 0), LlamaError);
  CHECK_THROWS_AS(Tokenizer(V{"a", "b"}, {0, 0}, {}, 2, 0, 0), LlamaError);
  CHECK_THROWS_AS(Tokenizer(V{"a", "b"}, {0, 0}, {TokenType::normal, TokenType::byte}, 0, 0, 0), LlamaError);
  CHECK_THROWS_AS(Tokenizer(V{"a"}, {0}, {static_cast<TokenType>(9)}, 0, 0, 0), LlamaError);
}

TEST_CASE("from_gguf picks the SentencePiece tokenizer for a llama vocabulary, expecting BOS", "[tokenizer]") {
  const Tokenizer& t = stories_tokenizer();
  CHECK(t.model() == TokenizerModel::llama);
  CHECK(t.expects_bos());  // stories260K has no tokenizer.ggml.add_bos_token: the llama default
  REQUIRE(t.sentencepiece() != nullptr);
  CHECK(t.sentencepiece()->vocab_size() == 512);
  CHECK(t.byte_level() == nullptr);
}

TEST_CASE("user-defined pieces are cut out whole before merging, longest first; no dummy prefix when asked", "[tokenizer][gemma3]") {
  // A Gemma-like vocabulary: no dummy prefix, user-defined runs of newlines and spaces and a tag.
  using T = TokenType;
  const std::vector<std::string> pieces = {"<pad>", "<eos>", "<bos>", "<unk>", "\n", "\n\n", "  ", "   ", "<b>",
                                           "\xE2\x96\x81", "a", "b", "<", ">", "ab", "\xE2\x96\x81" "a", "<0x09>"};
  const std::vector<float> scores = {0, 0, 0, 0, 0, 0, 0, 0, 0, -1, -2, -3, -4, -5, -6, -7, 0};
  const std::vector<T> types = {T::control, T::control, T::control, T::unknown, T::user_defined, T::user_defined,
                                T::user_defined, T::user_defined, T::user_defined, T::normal, T::normal, T::normal,
                                T::normal, T::normal, T::normal, T::normal, T::byte};
  const Tokenizer t(SentencePieceBpe(pieces, scores, types, 2, 1, 3, /*add_space_prefix=*/false), true);
  // No dummy prefix: "ab" is one piece, not "▁a" "b".
  CHECK(t.encode("ab", true) == std::vector<int>{2, 14});
  // Three newlines: the longest run first ("\n\n"), then "\n"; the merges never cross a cut.
  CHECK(t.encode("a\n\n\nb", false) == std::vector<int>{10, 5, 4, 11});
  // Five spaces: "   " then "  "; one space stays a "▁" that merges with what follows.
  CHECK(t.encode("a     b", false) == std::vector<int>{10, 7, 6, 11});
  CHECK(t.encode("a a", false) == std::vector<int>{10, 15});
  // The tag is cut out whole although "<", "b", ">" are pieces; a tab falls back to its byte.
  CHECK(t.encode("a<b>b\t", false) == std::vector<int>{10, 8, 11, 16});
  // Decoding keeps every space (no dummy prefix to drop) and the user-defined pieces' text.
  for (const std::string s : {"ab", "a\n\n\nb", " a     b <b>\t", "\n"}) CHECK(t.decode(t.encode(s, true)) == s);

  SECTION("with the dummy prefix, every stretch after a user-defined piece gets one, as llama.cpp does") {
    const Tokenizer p(SentencePieceBpe(pieces, scores, types, 2, 1, 3, /*add_space_prefix=*/true), true);
    CHECK(p.encode("a\nb", false) == std::vector<int>{15, 4, 9, 11});
  }
}

TEST_CASE("from_gguf reads tokenizer.ggml.add_space_prefix", "[tokenizer][gemma3]") {
  const auto file = [](bool prefix) {
    return read_gguf(ttq::llama::test::GgufBuilder()
                         .kv_string("tokenizer.ggml.model", "llama")
                         .kv_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a"})
                         .kv("tokenizer.ggml.add_space_prefix", 7, static_cast<std::uint8_t>(prefix))
                         .build());
  };
  CHECK(Tokenizer::from_gguf(file(false)).encode("a", false) == std::vector<int>{4});
  CHECK(Tokenizer::from_gguf(file(true)).encode("a", false) == std::vector<int>{3, 4});
  CHECK(stories_tokenizer().sentencepiece()->add_space_prefix());  // absent: true
}
