// The GGUF reader's implementation: a bounds-checked cursor over the buffer, the parser for
// header / metadata / tensor directory, the block dequantizers, and the typed accessors. Kept
// free of Eigen so the fuzz target can compile it alone, with sanitizers, in seconds.
#include "llama/gguf.hpp"
#include "llama/error.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>

namespace ttq::llama {
namespace {

// Limits that no sane file reaches and that keep hostile input from costing memory or stack.
constexpr std::uint64_t kMaxKeyBytes = 65535;        // docs/gguf.md: keys are < 2^16 bytes
constexpr std::uint64_t kMaxTensorNameBytes = 64;    // docs/gguf.md: names are <= 64 bytes
constexpr std::uint32_t kMaxDims = 4;                // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 16;                   // nesting of arrays of arrays
constexpr std::uint64_t kMaxDim = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

// Minimum encoded sizes, used to reject counts before anything is allocated for them.
constexpr std::uint64_t kMinKeyValueBytes = 8 + 1 + 4 + 1;        // key length, 1-byte key, type, 1-byte value
constexpr std::uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // name, n_dims, 1 dim, type, offset

template <class T>
T load_le(const std::byte* p) noexcept {
  static_assert(std::is_trivially_copyable_v<T>);
  if constexpr (std::endian::native == std::endian::little) {
    T value;
    std::memcpy(&value, p, sizeof(T));
    return value;
  } else {
    std::byte reversed[sizeof(T)];
    for (std::size_t i = 0; i < sizeof(T); ++i) reversed[i] = p[sizeof(T) - 1 - i];
    T value;
    std::memcpy(&value, reversed, sizeof(T));
    return value;
  }
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool is_valid_utf8(std::span<const std::byte> s) noexcept {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    std::uint32_t min;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// A cursor that never reads past the buffer. `context_` names the entry being parsed so every
// error says where it happened.
class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> bytes) : bytes_(bytes) {}

  std::uint64_t pos() const noexcept { return pos_; }
  std::uint64_t size() const noexcept { return bytes_.size(); }
  std::uint64_t remaining() const noexcept { return bytes_.size() - pos_; }
  void set_context(std::string context) { context_ = std::move(context); }
  const std::string& context() const noexcept { return context_; }

  [[noreturn]] void fail(std::string_view what) const {
    throw GgufError(cat("gguf: ", what, " (at byte ", pos_, ", ", context_, ")"));
  }

  // `what` and `what_suffix` name the field; they are joined only on failure, so the hot path
  // (one call per vocabulary string) builds no message.
  std::span<const std::byte> take(std::uint64_t n, std::string_view what, std::string_view what_suffix = {}) {
    if (n > remaining()) {
      fail(cat("truncated reading ", what, what_suffix, ": expected ", n, " bytes, only ",
               remaining(), " remain of ", size()));
    }
    auto out = bytes_.subspan(static_cast<std::size_t>(pos_), static_cast<std::size_t>(n));
    pos_ += n;
    return out;
  }

  template <class T>
  T read(std::string_view what, std::string_view what_suffix = {}) {
    return load_le<T>(take(sizeof(T), what, what_suffix).data());
  }

  std::string read_string(std::string_view what, std::uint64_t max_bytes) {
    const std::uint64_t len = read<std::uint64_t>(what, " length");
    if (len > max_bytes) {
      fail(cat(what, " length: expected at most ", max_bytes, " bytes, got ", len));
    }
    if (len > remaining()) {
      fail(cat(what, " length: expected at most the ", remaining(),
               " bytes that remain, got ", len));
    }
    auto raw = take(len, what);
    if (!is_valid_utf8(raw)) fail(cat(what, ": expected UTF-8, got invalid byte sequence"));
    return std::string(reinterpret_cast<const char*>(raw.data()), raw.size());
  }

 private:
  std::span<const std::byte> bytes_;
  std::uint64_t pos_ = 0;
  std::string context_ = "header";
};

// Smallest number of bytes one value of `type` can occupy; 0 for an unknown type.
std::uint64_t min_value_bytes(std::uint32_t type) noexcept {
  switch (static_cast<GgufType>(type)) {
    case GgufType::uint8:
    case GgufType::int8:
    case GgufType::boolean: return 1;
    case GgufType::uint16:
    case GgufType::int16: return 2;
    case GgufType::uint32:
    case GgufType::int32:
    case GgufType::float32: return 4;
    case GgufType::uint64:
    case GgufType::int64:
    case GgufType::float64:
    case GgufType::string: return 8;
    case GgufType::array: return 12;
  }
  return 0;
}

template <class T>
GgufValue make_value(T v) {
  return GgufValue{GgufValue::Storage(std::in_place_type<T>, std::move(v))};
}

template <class T>
GgufArray make_array(std::vector<T> v) {
  return GgufArray{GgufArray::Items(std::in_place_type<std::vector<T>>, std::move(v))};
}

template <class T>
std::vector<T> read_scalars(ByteReader& in, std::uint64_t count, std::string_view what) {
  std::vector<T> out;
  out.reserve(static_cast<std::size_t>(count));  // count was checked against the bytes left
  for (std::uint64_t i = 0; i < count; ++i) out.push_back(in.read<T>(what));
  return out;
}

bool read_bool(ByteReader& in) {
  const auto b = in.read<std::uint8_t>("bool value");
  if (b > 1) in.fail(cat("bool value: expected 0 or 1, got ", unsigned{b}));
  return b == 1;
}

std::string read_string_value(ByteReader& in) {
  return in.read_string("string value", std::numeric_limits<std::uint64_t>::max());
}

// Element type, count, then the elements; `depth` counts the arrays around this one.
GgufArray read_array(ByteReader& in, int depth) {
  if (depth >= kMaxArrayDepth) {
    in.fail(cat("array nesting: expected at most ", kMaxArrayDepth, " levels"));
  }
  const auto element_type = in.read<std::uint32_t>("array element type");
  const std::uint64_t min_bytes = min_value_bytes(element_type);
  if (min_bytes == 0) {
    in.fail(cat("array element type: expected a GGUF value type 0..12, got ", element_type));
  }
  const auto count = in.read<std::uint64_t>("array element count");
  if (count > in.remaining() / min_bytes) {
    in.fail(cat("array element count: ", count, " elements of type ",
                gguf_type_name(static_cast<GgufType>(element_type)), " need at least ",
                min_bytes, " bytes each, only ", in.remaining(), " bytes remain"));
  }
  switch (static_cast<GgufType>(element_type)) {
    case GgufType::uint8: return make_array(read_scalars<std::uint8_t>(in, count, "uint8 element"));
    case GgufType::int8: return make_array(read_scalars<std::int8_t>(in, count, "int8 element"));
    case GgufType::uint16: return make_array(read_scalars<std::uint16_t>(in, count, "uint16 element"));
    case GgufType::int16: return make_array(read_scalars<std::int16_t>(in, count, "int16 element"));
    case GgufType::uint32: return make_array(read_scalars<std::uint32_t>(in, count, "uint32 element"));
    case GgufType::int32: return make_array(read_scalars<std::int32_t>(in, count, "int32 element"));
    case GgufType::float32: return make_array(read_scalars<float>(in, count, "float32 element"));
    case GgufType::uint64: return make_array(read_scalars<std::uint64_t>(in, count, "uint64 element"));
    case GgufType::int64: return make_array(read_scalars<std::int64_t>(in, count, "int64 element"));
    case GgufType::float64: return make_array(read_scalars<double>(in, count, "float64 element"));
    case GgufType::boolean: {
      std::vector<bool> v;
      v.reserve(static_cast<std::size_t>(count));
      for (std::uint64_t i = 0; i < count; ++i) v.push_back(read_bool(in));
      return make_array(std::move(v));
    }
    case GgufType::string: {
      std::vector<std::string> v;
      v.reserve(static_cast<std::size_t>(count));
      for (std::uint64_t i = 0; i < count; ++i) v.push_back(read_string_value(in));
      return make_array(std::move(v));
    }
    case GgufType::array: {
      std::vector<GgufArray> v;
      v.reserve(static_cast<std::size_t>(count));
      for (std::uint64_t i = 0; i < count; ++i) v.push_back(read_array(in, depth + 1));
      return make_array(std::move(v));
    }
  }
  in.fail("unreachable array element type");  // min_value_bytes rejected it above
}

GgufValue read_value(ByteReader& in, std::uint32_t type) {
  switch (static_cast<GgufType>(type)) {
    case GgufType::uint8: return make_value(in.read<std::uint8_t>("uint8 value"));
    case GgufType::int8: return make_value(in.read<std::int8_t>("int8 value"));
    case GgufType::uint16: return make_value(in.read<std::uint16_t>("uint16 value"));
    case GgufType::int16: return make_value(in.read<std::int16_t>("int16 value"));
    case GgufType::uint32: return make_value(in.read<std::uint32_t>("uint32 value"));
    case GgufType::int32: return make_value(in.read<std::int32_t>("int32 value"));
    case GgufType::float32: return make_value(in.read<float>("float32 value"));
    case GgufType::uint64: return make_value(in.read<std::uint64_t>("uint64 value"));
    case GgufType::int64: return make_value(in.read<std::int64_t>("int64 value"));
    case GgufType::float64: return make_value(in.read<double>("float64 value"));
    case GgufType::boolean: return make_value(read_bool(in));
    case GgufType::string: return make_value(read_string_value(in));
    case GgufType::array: return make_value(read_array(in, 0));
  }
  in.fail(cat("value type: expected a GGUF value type 0..12, got ", type));
}

bool is_integer(GgufType t) noexcept {
  switch (t) {
    case GgufType::uint8:
    case GgufType::int8:
    case GgufType::uint16:
    case GgufType::int16:
    case GgufType::uint32:
    case GgufType::int32:
    case GgufType::uint64:
    case GgufType::int64: return true;
    default: return false;
  }
}

// An integer of any GGUF width as (negative?, magnitude): every value fits.
struct WideInt {
  bool negative;
  std::uint64_t magnitude;
};

template <class T>
WideInt to_wide(T x) noexcept {
  if constexpr (std::is_signed_v<T>) {
    // -(x + 1) + 1 avoids negating the minimum value.
    if (x < 0) return {true, static_cast<std::uint64_t>(-(x + 1)) + 1};
  }
  return {false, static_cast<std::uint64_t>(x)};
}

// The integer held by `v`; precondition: is_integer(v.type()).
WideInt to_wide(const GgufValue& v) noexcept {
  return std::visit(
      [](const auto& x) -> WideInt {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          return to_wide(x);
        } else {
          return {false, 0};
        }
      },
      v.value);
}

bool is_power_of_two(std::uint64_t x) noexcept { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

std::string gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::uint8: return "uint8";
    case GgufType::int8: return "int8";
    case GgufType::uint16: return "uint16";
    case GgufType::int16: return "int16";
    case GgufType::uint32: return "uint32";
    case GgufType::int32: return "int32";
    case GgufType::float32: return "float32";
    case GgufType::boolean: return "bool";
    case GgufType::string: return "string";
    case GgufType::array: return "array";
    case GgufType::uint64: return "uint64";
    case GgufType::int64: return "int64";
    case GgufType::float64: return "float64";
  }
  return cat("unknown(", static_cast<std::uint32_t>(type), ")");
}

std::string gguf_tensor_type_name(std::uint32_t type) {
  // ggml's numbering (ggml.h, enum ggml_type); 4 and 5 were removed formats.
  static constexpr const char* kNames[] = {
      "F32",     "F16",    "Q4_0",    "Q4_1",   nullptr, nullptr, "Q5_0",  "Q5_1",
      "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",   "Q4_K",  "Q5_K",  "Q6_K",  "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",  "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",      "I16",    "I32",     "I64",    "F64",   "IQ1_M", "BF16"};
  if (type < std::size(kNames) && kNames[type] != nullptr) return kNames[type];
  return cat("unknown(", type, ")");
}

std::uint64_t GgufTensor::rows() const noexcept {
  std::uint64_t r = 1;
  for (std::size_t i = 1; i < dims.size(); ++i) r *= dims[i];
  return r;
}

GgufFile read_gguf(std::span<const std::byte> bytes) {
  ByteReader in(bytes);
  GgufFile file;

  // Header.
  const auto magic = in.take(4, "magic");
  if (std::memcmp(magic.data(), "GGUF", 4) != 0) {
    std::string got;
    for (auto b : magic) {
      const auto c = static_cast<unsigned char>(b);
      got += (c >= 0x20 && c < 0x7F) ? static_cast<char>(c) : '?';
    }
    throw GgufError(cat("gguf: magic: expected \"GGUF\", got \"", got, "\" (at byte 0)"));
  }
  file.version_ = in.read<std::uint32_t>("version");
  if (file.version_ != 2 && file.version_ != 3) {
    const bool big_endian = file.version_ == 0x02000000u || file.version_ == 0x03000000u;
    in.fail(cat("version: expected 2 or 3, got ", file.version_,
                big_endian ? " (a big-endian file, which this reader does not support)" : ""));
  }
  const auto tensor_count = in.read<std::uint64_t>("tensor count");
  const auto kv_count = in.read<std::uint64_t>("metadata count");
  if (kv_count > in.remaining() / kMinKeyValueBytes) {
    in.fail(cat("metadata count: ", kv_count, " entries need at least ", kMinKeyValueBytes,
                " bytes each, only ", in.remaining(), " bytes remain"));
  }

  // Metadata.
  file.metadata_.reserve(static_cast<std::size_t>(kv_count));
  for (std::uint64_t i = 0; i < kv_count; ++i) {
    in.set_context(cat("metadata entry ", i));
    std::string key = in.read_string("key", kMaxKeyBytes);
    if (key.empty()) in.fail("key: expected a non-empty string, got \"\"");
    in.set_context(cat("metadata entry ", i, " '", key, "'"));
    if (file.metadata_index_.count(key) != 0) in.fail("key: expected unique keys, got a duplicate");
    const auto type = in.read<std::uint32_t>("value type");
    GgufValue value = read_value(in, type);
    file.metadata_index_.emplace(key, file.metadata_.size());
    file.metadata_.push_back({std::move(key), std::move(value)});
  }

  if (const GgufValue* a = file.find("general.alignment")) {
    in.set_context("metadata 'general.alignment'");
    if (a->type() != GgufType::uint32) {
      in.fail(cat("general.alignment: expected uint32, got ", gguf_type_name(a->type())));
    }
    const auto alignment = std::get<std::uint32_t>(a->value);
    if (!is_power_of_two(alignment)) {
      in.fail(cat("general.alignment: expected a non-zero power of two, got ", alignment));
    }
    file.alignment_ = alignment;
  }

  // Tensor directory.
  in.set_context("tensor directory");
  if (tensor_count > in.remaining() / kMinTensorInfoBytes) {
    in.fail(cat("tensor count: ", tensor_count, " tensors need at least ", kMinTensorInfoBytes,
                " bytes each, only ", in.remaining(), " bytes remain"));
  }
  file.tensors_.reserve(static_cast<std::size_t>(tensor_count));
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    in.set_context(cat("tensor info ", i));
    GgufTensor t;
    t.name = in.read_string("tensor name", kMaxTensorNameBytes);
    if (t.name.empty()) in.fail("tensor name: expected a non-empty string, got \"\"");
    in.set_context(cat("tensor info ", i, " '", t.name, "'"));
    if (file.tensor_index_.count(t.name) != 0) in.fail("tensor name: expected unique names, got a duplicate");
    const auto n_dims = in.read<std::uint32_t>("dimension count");
    if (n_dims < 1 || n_dims > kMaxDims) {
      in.fail(cat("dimension count: expected 1..", kMaxDims, ", got ", n_dims));
    }
    t.dims.resize(n_dims);
    for (auto& d : t.dims) {
      d = in.read<std::uint64_t>("dimension");
      if (d > kMaxDim) in.fail(cat("dimension: expected at most 2^63-1, got ", d));
    }
    const auto type = in.read<std::uint32_t>("tensor type");
    GgufBlockLayout layout{};
    try {
      layout = gguf_block_layout(type);
    } catch (const GgufError&) {
      in.fail(cat("tensor type: expected one of ", kReadableTensorTypes, ", got ",
                  gguf_tensor_type_name(type), " (", type, ")"));
    }
    t.type = static_cast<GgufTensorType>(type);
    t.offset = in.read<std::uint64_t>("tensor data offset");

    if (t.dims[0] % layout.block_values != 0) {
      in.fail(cat("dimension 0: expected a multiple of the ", gguf_tensor_type_name(type),
                  " block size ", layout.block_values, ", got ", t.dims[0]));
    }
    // Element count and byte size, refusing anything that overflows. An fp32 copy of the
    // tensor must also be addressable, hence the bound on elements * 4.
    std::uint64_t elements = 1;
    bool overflow = false;
    for (auto d : t.dims) overflow |= __builtin_mul_overflow(elements, d, &elements);
    std::uint64_t fp32_bytes = 0;
    overflow |= __builtin_mul_overflow(elements, std::uint64_t{sizeof(float)}, &fp32_bytes);
    overflow |= fp32_bytes > static_cast<std::uint64_t>(std::numeric_limits<std::ptrdiff_t>::max());
    if (overflow) {
      std::string dims;
      for (auto d : t.dims) dims += cat(dims.empty() ? "" : " x ", d);
      in.fail(cat("dimensions: expected a product that fits in memory, got ", dims));
    }
    t.byte_size = elements / layout.block_values * layout.block_bytes;  // no overflow: <= 4.25 * elements
    if (t.offset % file.alignment_ != 0) {
      in.fail(cat("tensor data offset: expected a multiple of the alignment ", file.alignment_,
                  ", got ", t.offset));
    }
    file.tensor_index_.emplace(t.name, file.tensors_.size());
    file.tensors_.push_back(std::move(t));
  }

  // Data section: starts at the next multiple of the alignment after the directory.
  const std::uint64_t directory_end = in.pos();
  file.data_offset_ = (directory_end + file.alignment_ - 1) / file.alignment_ * file.alignment_;
  const std::uint64_t data_size = file.data_offset_ <= in.size() ? in.size() - file.data_offset_ : 0;
  if (tensor_count > 0 && file.data_offset_ > in.size()) {
    throw GgufError(cat("gguf: data section: expected it to start at byte ", file.data_offset_,
                        " (directory end ", directory_end, " aligned to ", file.alignment_,
                        "), but the buffer has only ", in.size(), " bytes"));
  }
  for (const auto& t : file.tensors_) {
    if (t.offset > data_size || t.byte_size > data_size - t.offset) {
      throw GgufError(cat("gguf: tensor '", t.name, "' data: expected ", t.byte_size,
                          " bytes at offset ", t.offset, " inside the data section, which has only ",
                          data_size, " bytes (it starts at byte ", file.data_offset_, ")"));
    }
  }
  // No two tensors may share bytes: overlapping data means a corrupt directory.
  std::vector<const GgufTensor*> by_offset;
  by_offset.reserve(file.tensors_.size());
  for (const auto& t : file.tensors_) {
    if (t.byte_size > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensor& a = *by_offset[i - 1];
    const GgufTensor& b = *by_offset[i];
    if (a.offset + a.byte_size > b.offset) {
      throw GgufError(cat("gguf: tensor '", b.name, "' data at offset ", b.offset,
                          ": expected no overlap, but tensor '", a.name, "' occupies [",
                          a.offset, ", ", a.offset + a.byte_size, ")"));
    }
  }

  // Tensor data, dequantized: tensors are independent, so they are spread over the hardware
  // threads (the fp32 image of a quantized model is several times the file). The error reported
  // is the one of the first failing tensor in file order, whatever the thread timing.
  const std::size_t count = file.tensors_.size();
  std::vector<std::exception_ptr> errors(count);
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next++; i < count; i = next++) {
      try {
        GgufTensor& t = file.tensors_[i];
        std::uint64_t elements = 1;
        for (auto d : t.dims) elements *= d;  // checked for overflow while reading the directory
        t.data.resize(static_cast<std::size_t>(elements));
        const auto src = bytes.subspan(static_cast<std::size_t>(file.data_offset_ + t.offset),
                                       static_cast<std::size_t>(t.byte_size));
        dequantize(t.type, src, t.data);
        // Finite values only: the exponent bits, a test the compiler vectorizes; then the first offender.
        std::uint32_t non_finite = 0;
        for (float v : t.data) non_finite |= static_cast<std::uint32_t>((std::bit_cast<std::uint32_t>(v) & 0x7f800000u) == 0x7f800000u);
        if (non_finite != 0) {
          for (std::size_t k = 0; k < t.data.size(); ++k) {
            if (!std::isfinite(t.data[k])) {
              throw GgufError(cat("gguf: tensor '", t.name, "' value ", k, ": expected a finite number, got ", t.data[k]));
            }
          }
        }
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  };
  const unsigned threads = std::min<unsigned>(std::max(1u, std::thread::hardware_concurrency()), static_cast<unsigned>(std::max<std::size_t>(1, count)));
  std::vector<std::thread> helpers;
  for (unsigned k = 1; k < threads; ++k) helpers.emplace_back(work);
  work();
  for (auto& h : helpers) h.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return file;
}

GgufFile read_gguf_file(const std::filesystem::path& path) {
  // A directory (or a device, a FIFO) opens as a stream whose "size" can be 2^63 - 1: check what
  // the path is before allocating its size.
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw GgufError(cat("gguf: cannot open '", path.string(), "': no such file"));
  if (!std::filesystem::is_regular_file(status))
    throw GgufError(cat("gguf: '", path.string(), "' is ", std::filesystem::is_directory(status) ? "a directory" : "not a regular file",
                        ", not a GGUF model file"));
  const std::uintmax_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw GgufError(cat("gguf: cannot determine the size of '", path.string(), "'"));
  if (file_size > static_cast<std::uintmax_t>(std::numeric_limits<std::streamoff>::max()) ||
      file_size > static_cast<std::uintmax_t>(std::numeric_limits<std::size_t>::max() / 2))
    throw GgufError(cat("gguf: '", path.string(), "' is too large (", file_size, " bytes)"));
  std::ifstream stream(path, std::ios::binary | std::ios::ate);
  if (!stream) throw GgufError(cat("gguf: cannot open '", path.string(), "'"));
  const std::streamoff size = stream.tellg();
  if (size < 0) throw GgufError(cat("gguf: cannot determine the size of '", path.string(), "'"));
  std::vector<std::byte> bytes(static_cast<std::size_t>(size));
  stream.seekg(0);
  if (!stream.read(reinterpret_cast<char*>(bytes.data()), size)) {
    throw GgufError(cat("gguf: cannot read ", size, " bytes from '", path.string(), "'"));
  }
  try {
    return read_gguf(bytes);
  } catch (const GgufError& e) {
    throw GgufError(cat(e.what(), " in '", path.string(), "'"));
  }
}

const GgufValue* GgufFile::find(std::string_view key) const noexcept {
  const auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const noexcept {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::tensor(std::string_view name) const {
  if (const GgufTensor* t = find_tensor(name)) return *t;
  throw GgufError(cat("gguf: tensor '", name, "': expected it in the file, it is absent"));
}

namespace {

[[noreturn]] void wrong_type(std::string_view key, std::string_view expected, GgufType got) {
  throw GgufError(cat("gguf: metadata '", key, "': expected ", expected, ", got ", gguf_type_name(got)));
}

[[noreturn]] void missing(std::string_view key) {
  throw GgufError(cat("gguf: metadata '", key, "': expected the key, it is absent"));
}

std::uint64_t as_uint(std::string_view key, const GgufValue& v) {
  if (!is_integer(v.type())) wrong_type(key, "an unsigned integer", v.type());
  const WideInt w = to_wide(v);
  if (w.negative) {
    throw GgufError(cat("gguf: metadata '", key, "': expected a non-negative integer, got -", w.magnitude));
  }
  return w.magnitude;
}

double as_float(std::string_view key, const GgufValue& v) {
  if (v.type() == GgufType::float32) return std::get<float>(v.value);
  if (v.type() == GgufType::float64) return std::get<double>(v.value);
  wrong_type(key, "float32 or float64", v.type());
}

const GgufArray& as_array(std::string_view key, const GgufValue& v) {
  if (v.type() != GgufType::array) wrong_type(key, "an array", v.type());
  return std::get<GgufArray>(v.value);
}

}  // namespace

std::uint64_t GgufFile::get_uint(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(key);
  return as_uint(key, *v);
}

std::optional<std::uint64_t> GgufFile::find_uint(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  return as_uint(key, *v);
}

double GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(key);
  return as_float(key, *v);
}

std::optional<double> GgufFile::find_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  return as_float(key, *v);
}

std::string_view GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(key);
  if (v->type() != GgufType::string) wrong_type(key, "a string", v->type());
  return std::get<std::string>(v->value);
}

std::optional<std::string_view> GgufFile::find_string(std::string_view key) const {
  if (!find(key)) return std::nullopt;
  return get_string(key);
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(key);
  const GgufArray& a = as_array(key, *v);
  if (a.element_type() != GgufType::string) wrong_type(key, "an array of string", a.element_type());
  return std::get<std::vector<std::string>>(a.items);
}

std::vector<float> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(key);
  const GgufArray& a = as_array(key, *v);
  if (a.element_type() == GgufType::float32) return std::get<std::vector<float>>(a.items);
  if (a.element_type() == GgufType::float64) {
    const auto& d = std::get<std::vector<double>>(a.items);
    return std::vector<float>(d.begin(), d.end());
  }
  wrong_type(key, "an array of float32 or float64", a.element_type());
}

std::vector<std::int64_t> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(key);
  const GgufArray& a = as_array(key, *v);
  if (!is_integer(a.element_type())) wrong_type(key, "an array of integers", a.element_type());
  std::vector<std::int64_t> out;
  out.reserve(a.size());
  std::visit(
      [&](const auto& items) {
        using T = typename std::decay_t<decltype(items)>::value_type;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          for (const T x : items) {
            if constexpr (std::is_same_v<T, std::uint64_t>) {
              if (x > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
                throw GgufError(cat("gguf: metadata '", key, "': expected integers that fit in int64, got ", x));
              }
            }
            out.push_back(static_cast<std::int64_t>(x));
          }
        }
      },
      a.items);
  return out;
}

}  // namespace ttq::llama
