// Tests of tools/llama/gguf.hpp: the real stories260K file reads as SOURCES.md describes it,
// every metadata and tensor type round-trips through a hand-built buffer, the block formats
// dequantize to hand-computed values and every readable type to the floats of an independent
// implementation (dequant_fixtures.txt, from the PyPI gguf package), and a table of corrupted buffers (the real file truncated
// everywhere, patched headers, counts, strings, dims, types, offsets; hand-built oddities) each
// raises GgufError with a message naming the problem, never a crash.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include "gguf_builder.hpp"
#include "llama/gguf.hpp"

using namespace ttq::llama;
using ttq::llama::test::Bytes;
using ttq::llama::test::find_gguf_string;
using ttq::llama::test::GgufBuilder;
using ttq::llama::test::patch;
using ttq::llama::test::put;
using ttq::llama::test::put_string;

namespace {

const std::filesystem::path kModelPath = std::filesystem::path(TTQ_LLAMA_DATA_DIR) / "stories260K.gguf";

const Bytes& real_file() {
  static const Bytes bytes = [] {
    std::ifstream in(kModelPath, std::ios::binary);
    REQUIRE(in);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Bytes b(chars.size());
    std::memcpy(b.data(), chars.data(), chars.size());
    return b;
  }();
  return bytes;
}

// Offsets inside the real file's directory (found, not hard-coded, except the header's).
constexpr std::size_t kVersionAt = 4;
constexpr std::size_t kTensorCountAt = 8;
constexpr std::size_t kKvCountAt = 16;
constexpr std::size_t kFirstKeyLengthAt = 24;  // "tokenizer.ggml.tokens", 21 bytes
constexpr std::size_t kFirstValueTypeAt = 24 + 8 + 21;
constexpr std::size_t kFirstArrayTypeAt = kFirstValueTypeAt + 4;
constexpr std::size_t kFirstArrayCountAt = kFirstArrayTypeAt + 4;
constexpr std::size_t kFirstTokenLengthAt = kFirstArrayCountAt + 8;  // "<unk>"
constexpr std::size_t kDataOffset = 14176;

// Where the fields of a tensor info start, for the tensor named `name`.
struct InfoAt {
  std::size_t name_length, n_dims, dims, type, offset;
};
InfoAt info_at(const Bytes& b, std::string_view name, int n_dims) {
  const std::size_t at = find_gguf_string(b, name);
  REQUIRE(at != std::string_view::npos);
  const std::size_t nd = at + 8 + name.size();
  return {at, nd, nd + 4, nd + 4 + 8 * static_cast<std::size_t>(n_dims), nd + 4 + 8 * static_cast<std::size_t>(n_dims) + 4};
}

Bytes patched(std::function<void(Bytes&)> edit) {
  Bytes b = real_file();
  edit(b);
  return b;
}

// Half-precision bit patterns used below.
constexpr std::uint16_t kHalfOne = 0x3C00, kHalfHalf = 0x3800, kHalfTwo = 0x4000, kHalfMinusOne = 0xBC00;

Bytes q8_0_block(std::uint16_t d, const std::array<std::int8_t, 32>& qs) {
  Bytes b;
  put(b, d);
  for (auto q : qs) put(b, q);
  return b;
}

// A minimal valid file around one tensor, for type-specific cases.
Bytes one_tensor_file(std::vector<std::uint64_t> dims, std::uint32_t type, Bytes data) {
  return GgufBuilder().kv_string("general.name", "t").tensor("t", std::move(dims), type, std::move(data)).build();
}

}  // namespace

TEST_CASE("the real stories260K file reads with the header, metadata and tensors SOURCES.md lists", "[gguf]") {
  const GgufFile f = read_gguf(real_file());
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(f.data_offset() == kDataOffset);
  CHECK(f.metadata().size() == 19);
  CHECK(f.tensors().size() == 48);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_uint("llama.embedding_length") == 64);
  CHECK(f.get_uint("llama.block_count") == 5);
  CHECK(f.get_uint("llama.attention.head_count") == 8);
  CHECK(f.get_uint("llama.attention.head_count_kv") == 4);
  CHECK(f.get_uint("llama.feed_forward_length") == 172);
  CHECK(f.get_float("llama.attention.layer_norm_rms_epsilon") == Approx(1e-5));
  CHECK_FALSE(f.find_float("llama.rope.freq_base").has_value());
  const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  REQUIRE(tokens.size() == 512);
  CHECK(tokens[0] == "<unk>");
  CHECK(tokens[3] == "<0x00>");
  CHECK(f.get_float_array("tokenizer.ggml.scores").size() == 512);
  CHECK(f.get_int_array("tokenizer.ggml.token_type")[1] == 3);
  // The directory says uint32 for the unset separator id; it reads as its value.
  CHECK(f.get_uint("tokenizer.ggml.seperator_token_id") == 4294967295u);

  const GgufTensor& embd = f.tensor("token_embd.weight");
  CHECK(embd.dims == std::vector<std::uint64_t>{64, 512});
  CHECK(embd.rows() == 512);
  CHECK(embd.cols() == 64);
  CHECK(embd.data.size() == 64 * 512);
  const GgufTensor& down = f.tensor("blk.4.ffn_down.weight");
  CHECK(down.dims == std::vector<std::uint64_t>{172, 64});
  // SOURCES.md: output.weight equals token_embd.weight.
  CHECK(f.tensor("output.weight").data == embd.data);
  CHECK(f.find_tensor("nonexistent") == nullptr);
  CHECK_THROWS_AS(f.tensor("nonexistent"), GgufError);
}

TEST_CASE("the file convenience reads the same as the buffer and names the path when it fails", "[gguf]") {
  const GgufFile f = read_gguf_file(kModelPath);
  CHECK(f.tensors().size() == 48);
  try {
    read_gguf_file("/nonexistent/model.gguf");
    FAIL("expected GgufError");
  } catch (const GgufError& e) {
    CHECK_THAT(e.what(), Catch::Contains("/nonexistent/model.gguf"));
  }
}

TEST_CASE("typed metadata accessors refuse the wrong type and missing keys", "[gguf]") {
  const GgufFile f = read_gguf(real_file());
  CHECK_THROWS_AS(f.get_uint("general.architecture"), GgufError);
  CHECK_THROWS_AS(f.get_string("llama.block_count"), GgufError);
  CHECK_THROWS_AS(f.get_float("llama.block_count"), GgufError);
  CHECK_THROWS_AS(f.get_uint("missing.key"), GgufError);
  CHECK_FALSE(f.find_uint("missing.key").has_value());
  CHECK_THROWS_AS(f.get_string_array("tokenizer.ggml.scores"), GgufError);
  CHECK_THROWS_AS(f.get_float_array("tokenizer.ggml.tokens"), GgufError);
  CHECK_THROWS_AS(f.get_int_array("general.name"), GgufError);
}

TEST_CASE("every metadata value type, nested arrays included, reads back exactly", "[gguf]") {
  Bytes nested;  // [[1, 2], []] of uint16
  put<std::uint32_t>(nested, 9);
  put<std::uint64_t>(nested, 2);
  put<std::uint32_t>(nested, 2);
  put<std::uint64_t>(nested, 2);
  put<std::uint16_t>(nested, 1);
  put<std::uint16_t>(nested, 2);
  put<std::uint32_t>(nested, 2);
  put<std::uint64_t>(nested, 0);
  Bytes bools;  // [true, false, true]
  put<std::uint32_t>(bools, 7);
  put<std::uint64_t>(bools, 3);
  put<std::uint8_t>(bools, 1);
  put<std::uint8_t>(bools, 0);
  put<std::uint8_t>(bools, 1);
  Bytes doubles;  // [0.5, -8]
  put<std::uint32_t>(doubles, 12);
  put<std::uint64_t>(doubles, 2);
  put<double>(doubles, 0.5);
  put<double>(doubles, -8.0);
  Bytes big_u64;  // [2^63]: not an int64
  put<std::uint32_t>(big_u64, 10);
  put<std::uint64_t>(big_u64, 1);
  put<std::uint64_t>(big_u64, 1ull << 63);
  const Bytes b = GgufBuilder()
                      .kv<std::uint8_t>("a.u8", 0, 200)
                      .kv<std::int8_t>("a.i8", 1, -100)
                      .kv<std::uint16_t>("a.u16", 2, 60000)
                      .kv<std::int16_t>("a.i16", 3, -30000)
                      .kv<std::uint32_t>("a.u32", 4, 4000000000u)
                      .kv<std::int32_t>("a.i32", 5, -2000000000)
                      .kv<float>("a.f32", 6, 1.5f)
                      .kv<std::uint8_t>("a.bool", 7, 1)
                      .kv_string("a.str", "h\xC3\xA9llo")
                      .kv<std::uint64_t>("a.u64", 10, 1ull << 63)
                      .kv<std::int64_t>("a.i64", 11, std::numeric_limits<std::int64_t>::min())
                      .kv<double>("a.f64", 12, -0.25)
                      .raw_kv("a.nested", 9, nested)
                      .kv_i32_array("a.ints", {-1, 0, 7})
                      .raw_kv("a.bools", 9, bools)
                      .raw_kv("a.f64s", 9, doubles)
                      .raw_kv("a.big", 9, big_u64)
                      .build();
  const GgufFile f = read_gguf(b);
  CHECK(f.tensors().empty());
  REQUIRE(f.metadata().size() == 17);
  CHECK(f.metadata()[0].key == "a.u8");
  for (std::size_t i = 0; i < 12; ++i) {
    const std::uint32_t expected_type = i < 9 ? static_cast<std::uint32_t>(i) : static_cast<std::uint32_t>(i + 1);
    CHECK(static_cast<std::uint32_t>(f.metadata()[i].value.type()) == expected_type);
  }
  CHECK(f.get_uint("a.u8") == 200);
  CHECK_THROWS_AS(f.get_uint("a.i8"), GgufError);  // negative
  CHECK(std::get<std::int8_t>(f.find("a.i8")->value) == -100);
  CHECK(f.get_uint("a.u16") == 60000);
  CHECK(std::get<std::int16_t>(f.find("a.i16")->value) == -30000);
  CHECK(f.get_uint("a.u32") == 4000000000u);
  CHECK(std::get<std::int32_t>(f.find("a.i32")->value) == -2000000000);
  CHECK(f.get_float("a.f32") == 1.5);
  CHECK(std::get<bool>(f.find("a.bool")->value));
  CHECK(f.get_string("a.str") == "h\xC3\xA9llo");
  CHECK(f.get_uint("a.u64") == (1ull << 63));
  CHECK(std::get<std::int64_t>(f.find("a.i64")->value) == std::numeric_limits<std::int64_t>::min());
  CHECK(f.get_float("a.f64") == -0.25);
  const auto& outer = std::get<GgufArray>(f.find("a.nested")->value);
  CHECK(outer.element_type() == GgufType::array);
  REQUIRE(outer.size() == 2);
  const auto& inner = std::get<std::vector<GgufArray>>(outer.items);
  CHECK(inner[0].element_type() == GgufType::uint16);
  CHECK(std::get<std::vector<std::uint16_t>>(inner[0].items) == std::vector<std::uint16_t>{1, 2});
  CHECK(inner[1].size() == 0);
  CHECK(f.get_int_array("a.ints") == std::vector<std::int64_t>{-1, 0, 7});
  CHECK(std::get<std::vector<bool>>(std::get<GgufArray>(f.find("a.bools")->value).items) ==
        std::vector<bool>{true, false, true});
  CHECK(f.get_float_array("a.f64s") == std::vector<float>{0.5f, -8.0f});
  CHECK_THROWS_WITH(f.get_int_array("a.big"), Catch::Contains("int64"));
}

TEST_CASE("half and bfloat16 bit patterns convert exactly", "[gguf][dequant]") {
  CHECK(half_to_float(0x3C00) == 1.0f);
  CHECK(half_to_float(0xC000) == -2.0f);
  CHECK(half_to_float(0x7BFF) == 65504.0f);
  CHECK(half_to_float(0x3555) == 0.333251953125f);
  CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));   // smallest subnormal
  CHECK(half_to_float(0x03FF) == 1023 * std::ldexp(1.0f, -24));
  CHECK(half_to_float(0x0400) == std::ldexp(1.0f, -14));   // smallest normal
  CHECK(std::signbit(half_to_float(0x8000)));
  CHECK(half_to_float(0x8000) == 0.0f);
  CHECK(std::isinf(half_to_float(0xFC00)));
  CHECK(std::isnan(half_to_float(0x7E00)));
  CHECK(bf16_to_float(0x3F80) == 1.0f);
  CHECK(bf16_to_float(0xC040) == -3.0f);
  CHECK(bf16_to_float(0x4049) == 3.140625f);
}

TEST_CASE("Q8_0, Q4_0 and Q4_1 blocks dequantize to hand-computed values", "[gguf][dequant]") {
  SECTION("Q8_0: x = d * q") {
    std::array<std::int8_t, 32> qs{};
    qs[0] = -128, qs[1] = -1, qs[2] = 0, qs[3] = 1, qs[4] = 127, qs[31] = 6;
    const Bytes block = q8_0_block(kHalfHalf, qs);  // d = 0.5
    std::vector<float> out(32);
    dequantize(GgufTensorType::q8_0, block, out);
    CHECK(out[0] == -64.0f);
    CHECK(out[1] == -0.5f);
    CHECK(out[2] == 0.0f);
    CHECK(out[3] == 0.5f);
    CHECK(out[4] == 63.5f);
    CHECK(out[5] == 0.0f);
    CHECK(out[31] == 3.0f);
  }
  SECTION("Q4_0: low nibbles are x[0..15], high nibbles x[16..31], x = d * (q - 8)") {
    Bytes block;
    put(block, kHalfTwo);  // d = 2
    std::array<std::uint8_t, 16> qs{};
    qs.fill(0x88);          // zeros
    qs[0] = 0x1F;           // x[0] = (15 - 8) * 2 = 14, x[16] = (1 - 8) * 2 = -14
    qs[1] = 0x80;           // x[1] = -16, x[17] = 0
    qs[15] = 0xF0;          // x[15] = -16, x[31] = 14
    for (auto q : qs) put(block, q);
    std::vector<float> out(32);
    dequantize(GgufTensorType::q4_0, block, out);
    CHECK(out[0] == 14.0f);
    CHECK(out[16] == -14.0f);
    CHECK(out[1] == -16.0f);
    CHECK(out[17] == 0.0f);
    CHECK(out[2] == 0.0f);
    CHECK(out[15] == -16.0f);
    CHECK(out[31] == 14.0f);
  }
  SECTION("Q4_1: same nibble order, x = d * q + m") {
    Bytes block;
    put(block, kHalfOne);       // d = 1
    put(block, kHalfMinusOne);  // m = -1
    std::array<std::uint8_t, 16> qs{};
    qs[0] = 0x2A;  // x[0] = 10 - 1 = 9, x[16] = 2 - 1 = 1
    qs[7] = 0xF0;  // x[7] = -1, x[23] = 14
    for (auto q : qs) put(block, q);
    std::vector<float> out(32);
    dequantize(GgufTensorType::q4_1, block, out);
    CHECK(out[0] == 9.0f);
    CHECK(out[16] == 1.0f);
    CHECK(out[7] == -1.0f);
    CHECK(out[23] == 14.0f);
    CHECK(out[1] == -1.0f);
  }
  SECTION("F16 and BF16 element-wise") {
    Bytes h;
    put<std::uint16_t>(h, 0x3C00);
    put<std::uint16_t>(h, 0xC000);
    std::vector<float> out(2);
    dequantize(GgufTensorType::f16, h, out);
    CHECK(out == std::vector<float>{1.0f, -2.0f});
    dequantize(GgufTensorType::bf16, h, out);
    CHECK(out[0] == bf16_to_float(0x3C00));
    CHECK(out[1] == bf16_to_float(0xC000));
  }
  SECTION("a size mismatch is an error, not an out-of-bounds read") {
    std::vector<float> out(32);
    CHECK_THROWS_AS(dequantize(GgufTensorType::q8_0, Bytes(33), out), GgufError);
    std::vector<float> ragged(31);
    CHECK_THROWS_AS(dequantize(GgufTensorType::q8_0, Bytes(34), ragged), GgufError);
  }
}

namespace {

// The records of dequant_fixtures.txt (make_dequant_fixtures.py).
struct DequantFixture {
  std::string type;
  Bytes bytes;
  std::vector<float> values;
};

std::vector<DequantFixture> dequant_fixtures() {
  std::ifstream in(std::filesystem::path(TTQ_LLAMA_TEST_DIR) / "dequant_fixtures.txt");
  REQUIRE(in);
  std::vector<DequantFixture> out;
  std::string word;
  while (in >> word) {
    if (word == "#") {
      std::getline(in, word);
    } else if (word == "type") {
      out.emplace_back();
      int blocks = 0;
      in >> out.back().type >> word >> blocks;
    } else if (word == "bytes") {
      std::string hex;
      in >> hex;
      for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.back().bytes.push_back(static_cast<std::byte>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    } else if (word == "values") {
      std::string line;
      std::getline(in, line);
      std::istringstream values(line);
      for (std::string v; values >> v;) out.back().values.push_back(std::stof(v));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("every readable quantized type dequantizes to the gguf package's floats, bit for bit", "[gguf][dequant]") {
  const std::map<std::string, GgufTensorType> types{{"Q4_0", GgufTensorType::q4_0}, {"Q4_1", GgufTensorType::q4_1},
                                                    {"Q5_0", GgufTensorType::q5_0}, {"Q5_1", GgufTensorType::q5_1},
                                                    {"Q8_0", GgufTensorType::q8_0}, {"Q2_K", GgufTensorType::q2_k},
                                                    {"Q3_K", GgufTensorType::q3_k}, {"Q4_K", GgufTensorType::q4_k},
                                                    {"Q5_K", GgufTensorType::q5_k}, {"Q6_K", GgufTensorType::q6_k}};
  const auto fixtures = dequant_fixtures();
  REQUIRE(fixtures.size() == types.size());
  for (const DequantFixture& f : fixtures) {
    INFO(f.type);
    const GgufTensorType type = types.at(f.type);
    const GgufBlockLayout layout = gguf_block_layout(static_cast<std::uint32_t>(type));
    REQUIRE(f.bytes.size() == 3 * layout.block_bytes);
    REQUIRE(f.values.size() == 3 * layout.block_values);
    CHECK(gguf_tensor_type_name(static_cast<std::uint32_t>(type)) == f.type);
    std::vector<float> out(f.values.size());
    dequantize(type, f.bytes, out);
    int mismatches = 0;
    for (std::size_t i = 0; i < out.size(); ++i) mismatches += out[i] != f.values[i];
    CHECK(mismatches == 0);
    // The same blocks as a tensor of a file: read_gguf finds the layout from the type number.
    const GgufFile file = read_gguf(GgufBuilder().tensor("t", {layout.block_values, 3}, static_cast<std::uint32_t>(type), f.bytes).build());
    CHECK(file.tensor("t").data == out);
    // A block cut short is refused, never read past.
    std::vector<float> short_out(out.size());
    CHECK_THROWS_AS(dequantize(type, std::span<const std::byte>(f.bytes).first(f.bytes.size() - 1), short_out), GgufError);
  }
}

TEST_CASE("a K-quant block whose scale is NaN or infinite is refused at load", "[gguf][dequant][hostile]") {
  for (const auto& [type, half_at] : std::vector<std::pair<std::uint32_t, std::size_t>>{{12, 0}, {14, 208}, {11, 108}, {6, 0}}) {
    const GgufBlockLayout layout = gguf_block_layout(type);
    for (std::uint16_t bad : {std::uint16_t{0x7C00}, std::uint16_t{0x7E00}}) {  // +inf, NaN
      Bytes block(layout.block_bytes, std::byte{0x11});
      patch<std::uint16_t>(block, half_at, bad);
      INFO(gguf_tensor_type_name(type) << " scale bits " << bad);
      CHECK_THROWS_WITH(read_gguf(GgufBuilder().tensor("w", {layout.block_values}, type, block).build()),
                        Catch::Contains("expected a finite number"));
    }
  }
}

TEST_CASE("tensors of every supported type load, dequantized, from a file with a custom alignment", "[gguf][dequant]") {
  std::array<std::int8_t, 32> qs{};
  for (int i = 0; i < 32; ++i) qs[static_cast<std::size_t>(i)] = static_cast<std::int8_t>(i - 16);
  Bytes q8 = q8_0_block(kHalfOne, qs);
  const Bytes q8_second = q8_0_block(kHalfTwo, qs);
  q8.insert(q8.end(), q8_second.begin(), q8_second.end());  // two rows of one block each
  Bytes q40;
  put(q40, kHalfOne);
  for (int i = 0; i < 16; ++i) put<std::uint8_t>(q40, 0x98);  // x[0..15] = 0, x[16..31] = 1
  Bytes q41;
  put(q41, kHalfHalf);
  put(q41, kHalfOne);
  for (int i = 0; i < 16; ++i) put<std::uint8_t>(q41, 0x42);  // 0.5 * 2 + 1 = 2, 0.5 * 4 + 1 = 3
  Bytes f16;
  put<std::uint16_t>(f16, 0x3800);
  put<std::uint16_t>(f16, 0xBC00);
  put<std::uint16_t>(f16, 0x4000);
  Bytes bf16;
  put<std::uint16_t>(bf16, 0x4049);

  const Bytes b = GgufBuilder()
                      .alignment(64)
                      .kv_u32("general.alignment", 64)
                      .f32_tensor("f32", {3}, {1.0f, -2.5f, 3.25f})
                      .tensor("f16", {3, 1}, 1, f16)
                      .tensor("bf16", {1}, 30, bf16)
                      .tensor("q8_0", {32, 2}, 8, q8)
                      .tensor("q4_0", {32}, 2, q40)
                      .tensor("q4_1", {32}, 3, q41)
                      .build();
  const GgufFile f = read_gguf(b);
  CHECK(f.alignment() == 64);
  CHECK(f.data_offset() % 64 == 0);
  for (const auto& t : f.tensors()) CHECK(t.offset % 64 == 0);
  CHECK(f.tensor("f32").data == std::vector<float>{1.0f, -2.5f, 3.25f});
  CHECK(f.tensor("f16").data == std::vector<float>{0.5f, -1.0f, 2.0f});
  CHECK(f.tensor("f16").rows() == 1);
  CHECK(f.tensor("bf16").data == std::vector<float>{3.140625f});
  const auto& q8t = f.tensor("q8_0");
  CHECK(q8t.type == GgufTensorType::q8_0);
  CHECK(q8t.byte_size == 68);
  CHECK(q8t.rows() == 2);
  REQUIRE(q8t.data.size() == 64);
  CHECK(q8t.data[0] == -16.0f);
  CHECK(q8t.data[31] == 15.0f);
  CHECK(q8t.data[32] == -32.0f);
  CHECK(q8t.data[63] == 30.0f);
  const auto& q40t = f.tensor("q4_0").data;
  CHECK(q40t[0] == 0.0f);
  CHECK(q40t[16] == 1.0f);
  const auto& q41t = f.tensor("q4_1").data;
  CHECK(q41t[0] == 2.0f);
  CHECK(q41t[31] == 3.0f);
}

TEST_CASE("the real file truncated anywhere is a GgufError", "[gguf][hostile]") {
  const Bytes& full = real_file();
  std::vector<std::size_t> cuts;
  // Every cut through the header and the first metadata entries, and through the tensor
  // directory and the start of the data; a stride of 7 bytes through the rest of the
  // metadata (mostly the vocabulary) and of 997 through the data.
  const std::size_t directory_from = find_gguf_string(full, "token_embd.weight") - 64;
  for (std::size_t n = 0; n < 1024; ++n) cuts.push_back(n);
  for (std::size_t n = 1024; n < directory_from; n += 7) cuts.push_back(n);
  for (std::size_t n = directory_from; n < kDataOffset + 64; ++n) cuts.push_back(n);
  for (std::size_t n = kDataOffset + 64; n < full.size(); n += 997) cuts.push_back(n);
  cuts.push_back(full.size() - 1);
  for (const std::size_t n : cuts) {
    const std::span<const std::byte> prefix(full.data(), n);
    bool threw_gguf_error = false;
    try {
      read_gguf(prefix);
    } catch (const GgufError&) {
      threw_gguf_error = true;
    }
    if (!threw_gguf_error) FAIL_CHECK("no GgufError for the first " << n << " bytes");
  }
}

TEST_CASE("corrupted buffers are each a GgufError that names the problem", "[gguf][hostile]") {
  const Bytes& real = real_file();
  const InfoAt embd = info_at(real, "token_embd.weight", 2);
  const InfoAt out_norm = info_at(real, "output_norm.weight", 1);
  constexpr std::uint64_t kHuge = 1ull << 60;

  struct Case {
    const char* what;
    Bytes bytes;
    const char* message;  // a substring the error must contain
  };
  Bytes nested_too_deep;
  for (int i = 0; i < 40; ++i) {
    put<std::uint32_t>(nested_too_deep, 9);
    put<std::uint64_t>(nested_too_deep, 1);
  }
  put<std::uint32_t>(nested_too_deep, 0);
  put<std::uint64_t>(nested_too_deep, 0);

  const std::vector<Case> cases = {
      {"empty buffer", Bytes{}, "magic"},
      {"wrong magic", patched([](Bytes& b) { b[3] = std::byte{'X'}; }), "magic"},
      {"version 1", patched([](Bytes& b) { patch<std::uint32_t>(b, kVersionAt, 1); }), "version"},
      {"version 4", patched([](Bytes& b) { patch<std::uint32_t>(b, kVersionAt, 4); }), "version"},
      {"big-endian version", patched([](Bytes& b) { patch<std::uint32_t>(b, kVersionAt, 0x03000000); }), "big-endian"},
      {"2^40 tensors", patched([](Bytes& b) { patch<std::uint64_t>(b, kTensorCountAt, 1ull << 40); }), "tensor count"},
      {"49 tensors", patched([](Bytes& b) { patch<std::uint64_t>(b, kTensorCountAt, 49); }), "gguf"},
      {"2^40 metadata entries", patched([](Bytes& b) { patch<std::uint64_t>(b, kKvCountAt, 1ull << 40); }), "metadata count"},
      {"20 metadata entries", patched([](Bytes& b) { patch<std::uint64_t>(b, kKvCountAt, 20); }), "gguf"},
      {"key length 2^60", patched([](Bytes& b) { patch<std::uint64_t>(b, kFirstKeyLengthAt, kHuge); }), "key length"},
      {"key length 70000", patched([](Bytes& b) { patch<std::uint64_t>(b, kFirstKeyLengthAt, 70000); }), "at most 65535"},
      {"empty key", patched([](Bytes& b) { patch<std::uint64_t>(b, kFirstKeyLengthAt, 0); }), "non-empty"},
      {"value type 99", patched([](Bytes& b) { patch<std::uint32_t>(b, kFirstValueTypeAt, 99); }), "value type"},
      {"array element type 13", patched([](Bytes& b) { patch<std::uint32_t>(b, kFirstArrayTypeAt, 13); }), "array element type"},
      {"array count 2^60", patched([](Bytes& b) { patch<std::uint64_t>(b, kFirstArrayCountAt, kHuge); }), "array element count"},
      {"array count 2^40", patched([](Bytes& b) { patch<std::uint64_t>(b, kFirstArrayCountAt, 1ull << 40); }), "array element count"},
      {"array count max", patched([](Bytes& b) { patch<std::uint64_t>(b, kFirstArrayCountAt, ~0ull); }), "array element count"},
      {"string length 2^60", patched([](Bytes& b) { patch<std::uint64_t>(b, kFirstTokenLengthAt, kHuge); }), "string value length"},
      {"string length max", patched([](Bytes& b) { patch<std::uint64_t>(b, kFirstTokenLengthAt, ~0ull); }), "string value length"},
      {"invalid UTF-8 in a token", patched([](Bytes& b) { b[kFirstTokenLengthAt + 8] = std::byte{0xFF}; }), "UTF-8"},
      {"overlong UTF-8 in a key", patched([](Bytes& b) {
         b[kFirstKeyLengthAt + 8] = std::byte{0xC0};
         b[kFirstKeyLengthAt + 9] = std::byte{0xAF};
       }), "UTF-8"},
      {"tensor name length 2^60", patched([&](Bytes& b) { patch<std::uint64_t>(b, embd.name_length, kHuge); }), "tensor name length"},
      {"5 dims", patched([&](Bytes& b) { patch<std::uint32_t>(b, embd.n_dims, 5); }), "dimension count"},
      {"0 dims", patched([&](Bytes& b) { patch<std::uint32_t>(b, embd.n_dims, 0); }), "dimension count"},
      {"dims product overflows", patched([&](Bytes& b) {
         patch<std::uint64_t>(b, embd.dims, 1ull << 62);
         patch<std::uint64_t>(b, embd.dims + 8, 1ull << 62);
       }), "dimensions"},
      {"dims product exceeds memory", patched([&](Bytes& b) {
         patch<std::uint64_t>(b, embd.dims, 1ull << 31);
         patch<std::uint64_t>(b, embd.dims + 8, 1ull << 31);
       }), "dimensions"},
      {"dim above 2^63", patched([&](Bytes& b) { patch<std::uint64_t>(b, embd.dims, ~0ull); }), "dimension"},
      {"huge dims that fit in 64 bits", patched([&](Bytes& b) { patch<std::uint64_t>(b, embd.dims + 8, 1ull << 20); }), "data section"},
      {"tensor type 99", patched([&](Bytes& b) { patch<std::uint32_t>(b, embd.type, 99); }), "unknown(99)"},
      {"tensor type IQ2_XXS (known, unsupported)", patched([&](Bytes& b) { patch<std::uint32_t>(b, embd.type, 16); }), "IQ2_XXS"},
      {"Q4_K on a row of 64 values (a K-quant block holds 256)",
       patched([&](Bytes& b) { patch<std::uint32_t>(b, embd.type, 12); }), "Q4_K block size 256"},
      {"Q8_0 on a row of 172 values",
       patched([&](Bytes& b) {
         const InfoAt down = info_at(b, "blk.0.ffn_down.weight", 2);
         patch<std::uint32_t>(b, down.type, 8);
       }), "block size"},
      {"offset past the end", patched([&](Bytes& b) { patch<std::uint64_t>(b, embd.offset, 1ull << 40); }), "data section"},
      {"offset near 2^64", patched([&](Bytes& b) { patch<std::uint64_t>(b, embd.offset, ~0ull - 31); }), "data section"},
      {"unaligned offset", patched([&](Bytes& b) { patch<std::uint64_t>(b, embd.offset, 4); }), "alignment"},
      {"overlapping tensors", patched([&](Bytes& b) { patch<std::uint64_t>(b, out_norm.offset, 0); }), "overlap"},
      {"last tensor runs past the end", Bytes(real.begin(), real.end() - 4), "data section"},
      {"NaN in tensor data", patched([](Bytes& b) { patch<std::uint32_t>(b, kDataOffset + 8, 0x7FC00000u); }), "finite"},
      {"infinity in tensor data", patched([](Bytes& b) { patch<std::uint32_t>(b, kDataOffset + 8, 0xFF800000u); }), "finite"},
      {"bool that is 2", GgufBuilder().kv<std::uint8_t>("b", 7, 2).build(), "bool"},
      {"bool array element that is 255", [] {
         Bytes payload;
         put<std::uint32_t>(payload, 7);
         put<std::uint64_t>(payload, 2);
         put<std::uint8_t>(payload, 1);
         put<std::uint8_t>(payload, 255);
         return GgufBuilder().raw_kv("b", 9, payload).build();
       }(), "bool"},
      {"2^61 strings in an array", [] {
         Bytes payload;
         put<std::uint32_t>(payload, 8);
         put<std::uint64_t>(payload, 1ull << 61);
         return GgufBuilder().raw_kv("s", 9, payload).build();
       }(), "array element count"},
      {"arrays nested 40 deep", GgufBuilder().raw_kv("n", 9, nested_too_deep).build(), "nesting"},
      {"duplicate key", GgufBuilder().kv_u32("k", 1).kv_u32("k", 2).build(), "duplicate"},
      {"duplicate tensor name",
       GgufBuilder().f32_tensor("t", {1}, {1.0f}).f32_tensor("t", {1}, {2.0f}).build(), "duplicate"},
      {"tensor name of 65 bytes", GgufBuilder().f32_tensor(std::string(65, 'a'), {1}, {1.0f}).build(), "at most 64"},
      {"empty tensor name", GgufBuilder().f32_tensor("", {1}, {1.0f}).build(), "non-empty"},
      {"alignment of type uint64", GgufBuilder().kv<std::uint64_t>("general.alignment", 10, 32).build(), "general.alignment"},
      {"alignment 0", GgufBuilder().kv_u32("general.alignment", 0).build(), "power of two"},
      {"alignment 48", GgufBuilder().kv_u32("general.alignment", 48).build(), "power of two"},
      {"alignment 2^31 pushes the data past the end",
       GgufBuilder().kv_u32("general.alignment", 1u << 31).f32_tensor("t", {1}, {1.0f}).build(), "data section"},
      {"Q4_0 row of 16 values", one_tensor_file({16}, 2, Bytes(18)), "block size"},
      {"kv count 2^62 in a small file", GgufBuilder().kv_count(1ull << 62).build(), "metadata count"},
      {"tensor count 2^62 in a small file", GgufBuilder().tensor_count(1ull << 62).build(), "tensor count"},
      {"tensor count 1 with no directory", GgufBuilder().tensor_count(1).build(), "tensor"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    try {
      read_gguf(c.bytes);
      FAIL_CHECK("no GgufError for: " << c.what);
    } catch (const GgufError& e) {
      CHECK_THAT(e.what(), Catch::Contains(c.message));
    }
  }
}
