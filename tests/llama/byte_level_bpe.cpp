// Tests of the "gpt2" tokenizer of tools/llama/tokenizer.hpp (byte_level_bpe.cpp) that need
// no model file: GPT-2's byte spelling, the two pre-tokenizers against fixed splits produced by
// Hugging Face `tokenizers` (tests/llama/reference_smollm2.py), merge-rank BPE on hand-made
// vocabularies, decode rules, lossless round trips, and the error paths. The tests on SmolLM2's
// real vocabulary are in smollm2.cpp.
#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "gguf_builder.hpp"
#include "llama/gguf.hpp"
#include "llama/tokenizer.hpp"

using namespace ttq::llama;

namespace {

struct Split {
  std::string text;
  std::vector<std::string> words;
};

std::vector<std::string> to_strings(const std::vector<std::string_view>& words) {
  return {words.begin(), words.end()};
}

// A vocabulary of all 256 single-byte tokens (in byte order, ids 0..255) plus `extra` pieces
// written as plain text (spelled here), and merges given as plain-text pairs.
ByteLevelBpe byte_vocabulary(const std::vector<std::string>& extra,
                             const std::vector<std::pair<std::string, std::string>>& merges,
                             PreTokenizer pre = PreTokenizer::gpt2) {
  std::vector<std::string> pieces;
  for (int b = 0; b < 256; ++b) pieces.push_back(byte_level_spelling(std::string(1, static_cast<char>(b))));
  for (const auto& e : extra) pieces.push_back(byte_level_spelling(e));
  std::vector<std::string> spelled_merges;
  for (const auto& [l, r] : merges) spelled_merges.push_back(byte_level_spelling(l) + " " + byte_level_spelling(r));
  return ByteLevelBpe(pieces, {}, spelled_merges, pre, 0, 0, 0);
}

std::vector<int> ids_of(const std::string& bytes) {
  std::vector<int> ids;
  for (unsigned char c : bytes) ids.push_back(c);
  return ids;
}

}  // namespace

TEST_CASE("GPT-2's byte spelling maps the 256 bytes to 256 distinct code points, printable Latin-1 to itself",
          "[tokenizer][bytelevel]") {
  CHECK(byte_level_spelling("a") == "a");
  CHECK(byte_level_spelling("!~") == "!~");
  CHECK(byte_level_spelling(" ") == "\xC4\xA0");        // U+0120 "Ġ"
  CHECK(byte_level_spelling("\n") == "\xC4\x8A");       // U+010A "Ċ"
  CHECK(byte_level_spelling(std::string(1, '\0')) == "\xC4\x80");  // U+0100 "Ā", the first unprintable byte
  CHECK(byte_level_spelling("\x7F") == "\xC4\xA1");     // U+0121, the 34th unprintable byte
  CHECK(byte_level_spelling("\xAD") == "\xC5\x83");     // U+0143 "Ń", the last one (soft hyphen)
  CHECK(byte_level_spelling("\xE9") == "\xC3\xA9");     // 'é' as Latin-1 stands for itself
  std::set<std::string> seen;
  for (int b = 0; b < 256; ++b) seen.insert(byte_level_spelling(std::string(1, static_cast<char>(b))));
  CHECK(seen.size() == 256);
}

TEST_CASE("the SmolLM2 pre-tokenizer splits as HF tokenizers' Digits + ByteLevel does", "[tokenizer][bytelevel]") {
  // From `python3 tests/llama/reference_smollm2.py` ("pre-tokenizer words").
  const std::vector<Split> fixtures = {
      {"Hello world", {"Hello", " world"}},
      {"", {}},
      {" 2019 was  a year\n\n  ok", {" ", "2", "0", "1", "9", " was", " ", " a", " year", "\n\n ", " ok"}},
      {"don't 'S 'sun ''s we'll I'd they're",
       {"don", "'t", " '", "S", " '", "sun", " ''", "s", " we", "'ll", " I", "'d", " they", "'re"}},
      {"Caf\xC3\xA9 na\xC3\xAFve \xE2\x80\x94 \xE2\x80\x9Cquotes\xE2\x80\x9D \xE6\x88\xA6\xE5\xA0\xB4\xE3\x81\xAE\xE3\x83"
       "\xB4\xE3\x82\xA1\xE3\x83\xAB\xE3\x82\xAD\xE3\x83\xA5\xE3\x83\xAA\xE3\x82\xA2"
       "3",
       {"Caf\xC3\xA9", " na\xC3\xAFve", " \xE2\x80\x94", " \xE2\x80\x9C", "quotes", "\xE2\x80\x9D",
        " \xE6\x88\xA6\xE5\xA0\xB4\xE3\x81\xAE\xE3\x83\xB4\xE3\x82\xA1\xE3\x83\xAB\xE3\x82\xAD\xE3\x83\xA5\xE3\x83\xAA\xE3"
        "\x82\xA2",
        "3"}},
      {"a\tb\r\n  \n x", {"a", "\t", "b", "\r\n  \n", " x"}},
      {" = Valkyria Chronicles III = \n", {" =", " Valkyria", " Chronicles", " III", " =", " \n"}},
      {"The 1,234.5 km\xC2\xB2 area (\xC2\xBD of it) cost $7\xC2\xA0million\xE2\x80\xA6",
       {"The", " ", "1", ",", "2", "3", "4", ".", "5", " km", "\xC2\xB2", " area", " (", "\xC2\xBD", " of", " it", ")",
        " cost", " $", "7", "\xC2\xA0", "million", "\xE2\x80\xA6"}},
      {"x\x04y", {"x", "\x04", "y"}},
  };
  for (const auto& f : fixtures) {
    INFO("text: " << f.text);
    CHECK(to_strings(pre_tokenize(PreTokenizer::gpt2_single_digits, f.text)) == f.words);
  }
}

TEST_CASE("the GPT-2 pre-tokenizer splits as HF tokenizers' ByteLevel regex does", "[tokenizer][bytelevel]") {
  // From `python3 tests/llama/reference_smollm2.py` ("GPT-2's regex alone"); the texts whose
  // split does not depend on digits are covered by the SmolLM2 case.
  const std::vector<Split> fixtures = {
      {" 2019 was  a year\n\n  ok", {" 2019", " was", " ", " a", " year", "\n\n ", " ok"}},
      {"The 1,234.5 km\xC2\xB2 area (\xC2\xBD of it) cost $7\xC2\xA0million\xE2\x80\xA6",
       {"The", " 1", ",", "234", ".", "5", " km", "\xC2\xB2", " area", " (", "\xC2\xBD", " of", " it", ")", " cost", " $",
        "7", "\xC2\xA0", "million", "\xE2\x80\xA6"}},
      {"\xE3\x82\xA2"
       "3",
       {"\xE3\x82\xA2", "3"}},
  };
  for (const auto& f : fixtures) {
    INFO("text: " << f.text);
    CHECK(to_strings(pre_tokenize(PreTokenizer::gpt2, f.text)) == f.words);
  }
}

TEST_CASE("pre-tokenized words concatenate to the text, valid UTF-8 or not", "[tokenizer][bytelevel]") {
  std::mt19937 rng(20250207);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> length(0, 40);
  const std::vector<std::string> alphabet = {"a", "Z", " ", "  ", "\n", "7", "'s", "'", ".", "\xC3\xA9", "\xE2\x80\x94",
                                             "\xF0\x9F\x98\x80", "\xC2\xA0", "\xC2\xBD", "\x80", "\xFF", "\xE2\x80"};
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  for (int trial = 0; trial < 400; ++trial) {
    std::string text;
    for (int i = length(rng); i > 0; --i) text += trial % 2 ? alphabet[pick(rng)] : std::string(1, static_cast<char>(byte(rng)));
    for (PreTokenizer pre : {PreTokenizer::gpt2, PreTokenizer::gpt2_single_digits}) {
      std::string joined;
      for (auto w : pre_tokenize(pre, text)) {
        REQUIRE(!w.empty());
        joined += w;
      }
      REQUIRE(joined == text);
    }
  }
}

TEST_CASE("BPE merges the lowest-ranked pair first, leftmost on ties, never across words", "[tokenizer][bytelevel]") {
  // byte_vocabulary's ids: 0..255 the bytes, then the extra pieces in order.
  const int bc = 257, abc = 258, aa = 259;
  SECTION("rank decides") {
    const ByteLevelBpe bc_first = byte_vocabulary({"ab", "bc", "abc"}, {{"b", "c"}, {"a", "b"}, {"ab", "c"}});
    CHECK(bc_first.encode("abc", false) == std::vector<int>{'a', bc});
    const ByteLevelBpe ab_first = byte_vocabulary({"ab", "bc", "abc"}, {{"a", "b"}, {"b", "c"}, {"ab", "c"}});
    CHECK(ab_first.encode("abc", false) == std::vector<int>{abc});
    CHECK(ab_first.merge_count() == 3);
  }
  SECTION("leftmost on ties") {
    const ByteLevelBpe t = byte_vocabulary({"ab", "bc", "abc", "aa"}, {{"a", "a"}});
    CHECK(t.encode("aaa", false) == std::vector<int>{aa, 'a'});
    CHECK(t.encode("aaaa", false) == std::vector<int>{aa, aa});
  }
  SECTION("words are merged on their own") {
    // "a b" is the words "a" and " b": the ranked pair "a" + " " never meets.
    const ByteLevelBpe t = byte_vocabulary({"ab", "bc", "abc", "aa", "a "}, {{"a", " "}});
    CHECK(t.encode("a b", false) == std::vector<int>{'a', ' ', 'b'});
    CHECK(t.encode("a  ", false) == std::vector<int>{'a', ' ', ' '});  // words "a", "  "
  }
  SECTION("BOS and EOS only when asked for") {
    const ByteLevelBpe t(std::vector<std::string>{"a", "<s>", "</s>"}, {TokenType::normal, TokenType::control, TokenType::control},
                         {}, PreTokenizer::gpt2, 1, 2, 0);
    CHECK(t.encode("a", true, true) == std::vector<int>{1, 0, 2});
    CHECK(t.encode("", false).empty());
  }
}

TEST_CASE("bytes without a single-byte token are dropped before merging, as HF tokenizers does", "[tokenizer][bytelevel]") {
  // Vocabulary: "a", "b", "ab" only.
  const ByteLevelBpe t(std::vector<std::string>{"a", "b", "ab"}, {}, std::vector<std::string>{"a b"}, PreTokenizer::gpt2,
                       0, 0, 0);
  CHECK(t.encode("ab", false) == std::vector<int>{2});
  // The words are "a", "\x04" (neither letter, number nor space), "b": the \x04 word encodes to
  // nothing, and "a" and "b" do not merge across words.
  CHECK(t.encode("a\x04" "b", false) == std::vector<int>{0, 1});
  CHECK(t.encode("c", false).empty());
}

TEST_CASE("decode gives each token's bytes, nothing for control tokens, user-defined text literally",
          "[tokenizer][bytelevel]") {
  const ByteLevelBpe t(
      std::vector<std::string>{"\xC4\xA0hi", "<|endoftext|>", "<tool>", "\xC4\x8A", "\xC3\xA9"},
      {TokenType::normal, TokenType::control, TokenType::user_defined, TokenType::normal, TokenType::normal}, {},
      PreTokenizer::gpt2, 1, 1, 1);
  CHECK(t.decode_piece(-1, 0) == " hi");
  CHECK(t.decode_piece(-1, 1).empty());
  CHECK(t.decode_piece(-1, 2) == "<tool>");
  CHECK(t.decode_piece(-1, 3) == "\n");
  CHECK(t.decode_piece(-1, 4) == "\xE9");  // 'é' in the spelling is the raw byte 0xE9
  CHECK(t.decode(std::vector<int>{1, 0, 3, 2}) == " hi\n<tool>");
  CHECK_THROWS_AS(t.decode_piece(-1, 5), LlamaError);
  CHECK_THROWS_AS(t.piece(-1), LlamaError);
}

TEST_CASE("any bytes round-trip when every byte has a token", "[tokenizer][bytelevel]") {
  const ByteLevelBpe t = byte_vocabulary({"th", "the", " the", "\xC3\xA9"},
                                         {{"t", "h"}, {"th", "e"}, {" ", "the"}, {"\xC3", "\xA9"}},
                                         PreTokenizer::gpt2_single_digits);
  CHECK(t.encode(" the", false) == std::vector<int>{258});
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> length(0, 64);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    for (int i = length(rng); i > 0; --i) text += trial % 3 ? " the"[static_cast<std::size_t>(byte(rng) % 4)] : static_cast<char>(byte(rng));
    const auto tokens = t.encode(text, false);
    REQUIRE(t.decode(tokens) == text);
  }
  CHECK(t.encode("\xFF\x00", false) == std::vector<int>{0xFF});  // a C string stops at NUL
  CHECK(t.encode(std::string("\xFF\x00", 2), false) == ids_of(std::string("\xFF\x00", 2)));
}

TEST_CASE("inconsistent byte-level inputs are LlamaErrors", "[tokenizer][bytelevel]") {
  using V = std::vector<std::string>;
  const auto gpt2 = PreTokenizer::gpt2;
  CHECK_THROWS_AS(ByteLevelBpe(V{}, {}, V{}, gpt2, 0, 0, 0), LlamaError);
  CHECK_THROWS_AS(ByteLevelBpe(V{"a", "b"}, {TokenType::normal}, V{}, gpt2, 0, 0, 0), LlamaError);
  CHECK_THROWS_AS(ByteLevelBpe(V{"a", "b"}, {TokenType::normal, static_cast<TokenType>(0)}, V{}, gpt2, 0, 0, 0), LlamaError);
  CHECK_THROWS_AS(ByteLevelBpe(V{"a", "b"}, {}, V{}, gpt2, 2, 0, 0), LlamaError);
  CHECK_THROWS_AS(ByteLevelBpe(V{"a", "b"}, {}, V{}, gpt2, 0, -1, 0), LlamaError);
  const V pieces = {"a", "b", "ab", "<c>"};
  CHECK_NOTHROW(ByteLevelBpe(pieces, {}, V{"a b"}, gpt2, 0, 0, 0));
  for (const char* bad : {"ab", "a  b", "a b a", " a", "a ", "a c", "c a", "b a"}) {
    INFO("merge: '" << bad << "'");
    CHECK_THROWS_AS(ByteLevelBpe(pieces, {}, V{bad}, gpt2, 0, 0, 0), LlamaError);
  }
  // The concatenation of a merge must be a normal or user-defined piece, not a control token.
  CHECK_THROWS_AS(ByteLevelBpe(V{"a", "b", "ab"}, {TokenType::normal, TokenType::normal, TokenType::control}, V{"a b"},
                               gpt2, 0, 0, 0),
                  LlamaError);
  try {
    (void)ByteLevelBpe(pieces, {}, V{"a b", "b c"}, gpt2, 0, 0, 0);
    FAIL("expected a LlamaError");
  } catch (const LlamaError& e) {
    CHECK_THAT(e.what(), Catch::Contains("merge 1 'b c'"));
  }
  CHECK(pre_tokenizer_from_name("smollm") == PreTokenizer::gpt2_single_digits);
  CHECK(pre_tokenizer_from_name("gpt2") == PreTokenizer::gpt2);
  CHECK_THROWS_WITH(pre_tokenizer_from_name("llama-bpe"), Catch::Contains("\"llama-bpe\""));
}

TEST_CASE("from_gguf builds a byte-level tokenizer from gpt2 metadata and refuses what it cannot encode",
          "[tokenizer][bytelevel]") {
  using ttq::llama::test::GgufBuilder;
  auto base = [](std::string_view model, std::string_view pre) {
    GgufBuilder b;
    b.kv_string("tokenizer.ggml.model", model);
    if (!pre.empty()) b.kv_string("tokenizer.ggml.pre", pre);
    b.kv_string_array("tokenizer.ggml.tokens", {"<|endoftext|>", "h", "i", "hi", "\xC4\xA0", "\xC4\xA0hi"});
    b.kv_i32_array("tokenizer.ggml.token_type", {3, 1, 1, 1, 1, 1});
    b.kv_string_array("tokenizer.ggml.merges", {"h i", "\xC4\xA0 hi"});
    return b;
  };
  {
    GgufBuilder b = base("gpt2", "smollm");
    const auto bytes = b.build();
    const Tokenizer t = Tokenizer::from_gguf(read_gguf(bytes));
    CHECK(t.model() == TokenizerModel::gpt2);
    CHECK_FALSE(t.expects_bos());  // no tokenizer.ggml.add_bos_token: llama.cpp's gpt2 default
    CHECK(t.bos_id() == 0);
    CHECK(t.encode("hi hi", false) == std::vector<int>{3, 5});
    CHECK(t.score(3) == 0.0f);
    REQUIRE(t.byte_level() != nullptr);
    CHECK(t.byte_level()->pre_tokenizer() == PreTokenizer::gpt2_single_digits);
    CHECK(t.sentencepiece() == nullptr);
  }
  {
    GgufBuilder b = base("gpt2", "gpt2");
    b.kv("tokenizer.ggml.add_bos_token", 7, std::uint8_t{1});
    b.kv_u32("tokenizer.ggml.bos_token_id", 0);
    const auto bytes = b.build();
    const Tokenizer t = Tokenizer::from_gguf(read_gguf(bytes));
    CHECK(t.expects_bos());
    CHECK(t.encode("hi", t.expects_bos()) == std::vector<int>{0, 3});
  }
  const auto no_pre = base("gpt2", "").build();
  CHECK_THROWS_WITH(Tokenizer::from_gguf(read_gguf(no_pre)), Catch::Contains("tokenizer.ggml.pre"));
  const auto unknown_pre = base("gpt2", "qwen2").build();
  CHECK_THROWS_WITH(Tokenizer::from_gguf(read_gguf(unknown_pre)), Catch::Contains("\"qwen2\""));
  const auto bert = base("bert", "gpt2").build();
  CHECK_THROWS_WITH(Tokenizer::from_gguf(read_gguf(bert)), Catch::Contains("\"bert\""));
  GgufBuilder wrong_bool = base("gpt2", "gpt2");
  wrong_bool.kv_u32("tokenizer.ggml.add_bos_token", 1);
  const auto wrong_bool_bytes = wrong_bool.build();
  CHECK_THROWS_WITH(Tokenizer::from_gguf(read_gguf(wrong_bool_bytes)), Catch::Contains("add_bos_token"));
}
