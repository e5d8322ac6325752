// A reader for GGUF v3 model files (the format of llama.cpp / ggml), used by the real-model
// runner to load Llama weights and tokenizer metadata. It parses from a byte buffer so that a
// fuzzer can feed it memory, treats every input as hostile (truncation, absurd counts and
// sizes, out-of-range offsets, malformed strings, unknown types all raise GgufError, never
// UB), and dequantizes the supported tensor types (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
// and the K-quants Q2_K..Q6_K; dequantize.cpp) to fp32 at load time, because the runner computes
// in fp32 and quantization is the library's job.
//
// Format reference: ggml's docs/gguf.md (header, metadata key/value pairs, tensor infos,
// padding to `general.alignment`, tensor data). All values are little-endian.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ttq::llama {

// Every failure to read or interpret a GGUF buffer: the message says what was expected, what
// came, and where (byte offset and the entry being read).
class GgufError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Metadata value types, numbered as in the file.
enum class GgufType : std::uint32_t {
  uint8 = 0,
  int8 = 1,
  uint16 = 2,
  int16 = 3,
  uint32 = 4,
  int32 = 5,
  float32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  uint64 = 10,
  int64 = 11,
  float64 = 12,
};

// Human-readable name of a metadata type, or "unknown(N)".
std::string gguf_type_name(GgufType type);

// Tensor storage types, numbered as ggml's `ggml_type`. Only those listed are readable; other
// ggml numbers are reported by name in the error when known.
enum class GgufTensorType : std::uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  bf16 = 30,
};

// The readable types, as error messages list them.
inline constexpr const char* kReadableTensorTypes = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

// Name of a ggml tensor type number (also for the ones this reader cannot dequantize), or
// "unknown(N)".
std::string gguf_tensor_type_name(std::uint32_t type);

struct GgufArray;

// A metadata array, stored as one typed vector so that a hostile element count costs no more
// memory than the file spends on it (about 4x at most, for strings). The alternative's index
// equals the element GgufType number; arrays of arrays are allowed.
struct GgufArray {
  using Items = std::variant<std::vector<std::uint8_t>, std::vector<std::int8_t>,
                             std::vector<std::uint16_t>, std::vector<std::int16_t>,
                             std::vector<std::uint32_t>, std::vector<std::int32_t>,
                             std::vector<float>, std::vector<bool>, std::vector<std::string>,
                             std::vector<GgufArray>, std::vector<std::uint64_t>,
                             std::vector<std::int64_t>, std::vector<double>>;
  Items items;

  GgufType element_type() const noexcept { return static_cast<GgufType>(items.index()); }
  std::size_t size() const noexcept {
    return std::visit([](const auto& v) { return v.size(); }, items);
  }
};

// One metadata value. The variant's index equals the GgufType number, so `type()` is exact and
// a reader can tell a uint32 from a uint64 when the spec demands one.
struct GgufValue {
  using Storage = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t,
                               std::uint32_t, std::int32_t, float, bool, std::string,
                               GgufArray, std::uint64_t, std::int64_t, double>;
  Storage value;

  GgufType type() const noexcept { return static_cast<GgufType>(value.index()); }
};

// One entry of the tensor directory plus its data, dequantized.
struct GgufTensor {
  std::string name;
  // GGUF order: dims[0] is the contiguous (fastest-varying) dimension. A weight matrix
  // [d_out, d_in] row-major is stored with dims = {d_in, d_out}.
  std::vector<std::uint64_t> dims;
  GgufTensorType type = GgufTensorType::f32;  // storage type in the file
  std::uint64_t offset = 0;                   // bytes from the start of the data section
  std::uint64_t byte_size = 0;                // bytes occupied in the file
  std::vector<float> data;                    // product(dims) values, dims[0] fastest

  std::uint64_t element_count() const noexcept { return data.size(); }
  // Product of dims[1..]: the number of rows when dims[0] is the row length.
  std::uint64_t rows() const noexcept;
  std::uint64_t cols() const noexcept { return dims.empty() ? 1 : dims[0]; }
};

// A parsed GGUF file: version, metadata in file order, tensor directory with fp32 data.
class GgufFile {
 public:
  struct KeyValue {
    std::string key;
    GgufValue value;
  };

  std::uint32_t version() const noexcept { return version_; }
  // `general.alignment` or the default 32.
  std::uint64_t alignment() const noexcept { return alignment_; }
  // Absolute byte offset of the tensor data section in the buffer.
  std::uint64_t data_offset() const noexcept { return data_offset_; }

  const std::vector<KeyValue>& metadata() const noexcept { return metadata_; }
  const std::vector<GgufTensor>& tensors() const noexcept { return tensors_; }

  // nullptr when absent.
  const GgufValue* find(std::string_view key) const noexcept;
  const GgufTensor* find_tensor(std::string_view name) const noexcept;
  // Throws GgufError naming the tensor when absent.
  const GgufTensor& tensor(std::string_view name) const;

  // Typed metadata accessors. The get_* forms throw GgufError when the key is absent; the
  // find_* forms return nullopt then. Both throw GgufError when the value has the wrong type
  // or (integers) does not fit the requested range.
  // Unsigned: any integer type holding a non-negative value.
  std::uint64_t get_uint(std::string_view key) const;
  std::optional<std::uint64_t> find_uint(std::string_view key) const;
  // Float: float32 or float64.
  double get_float(std::string_view key) const;
  std::optional<double> find_float(std::string_view key) const;
  std::string_view get_string(std::string_view key) const;
  std::optional<std::string_view> find_string(std::string_view key) const;
  // Arrays: element type must be string / float32-or-float64 / any integer respectively.
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;
  std::vector<std::int64_t> get_int_array(std::string_view key) const;

 private:
  friend GgufFile read_gguf(std::span<const std::byte> bytes);

  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::vector<KeyValue> metadata_;
  std::map<std::string, std::size_t, std::less<>> metadata_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

// Parses a whole GGUF buffer: header, metadata, tensor directory, and every tensor's data
// (dequantized to fp32). The buffer need not outlive the result. Accepts versions 2 and 3
// (identical little-endian layouts). Rejects with GgufError: wrong magic or version,
// truncation anywhere, counts that cannot fit in the buffer, strings that are too long or not
// UTF-8, duplicate keys or tensor names, unknown value or tensor types, more than 4 dims, dims
// whose product overflows, a quantized row length that is not a whole number of blocks, a
// bad `general.alignment`, tensor offsets that are unaligned, overlap another tensor or run
// past the end, and tensor values that are NaN or infinite.
GgufFile read_gguf(std::span<const std::byte> bytes);

// Reads a file into memory and parses it with read_gguf. Throws GgufError (naming the path)
// when it cannot be opened or read.
GgufFile read_gguf_file(const std::filesystem::path& path);

// Bytes one block of `type` occupies and the number of values it holds (1 for F32/F16/BF16,
// 32 for Q4_0..Q8_0, 256 for the K-quants). Throws GgufError for an unsupported type number.
struct GgufBlockLayout {
  std::uint64_t block_bytes;
  std::uint64_t block_values;
};
GgufBlockLayout gguf_block_layout(std::uint32_t type);

// Dequantizes `count` values of `type` from `src` into `dst`. Preconditions (checked, GgufError
// otherwise): count is a whole number of blocks, src holds exactly the bytes those blocks take,
// dst.size() == count. Does not check finiteness; read_gguf does.
void dequantize(GgufTensorType type, std::span<const std::byte> src, std::span<float> dst);

// IEEE half / bfloat16 bit patterns to fp32 (exact: every half and bfloat16 is an fp32).
float half_to_float(std::uint16_t bits) noexcept;
float bf16_to_float(std::uint16_t bits) noexcept;

}  // namespace ttq::llama
