// A small GGUF writer for the tests: it builds well-formed buffers (every metadata type, arrays
// of arrays, any tensor type from raw block bytes, a chosen alignment) that the tests then read
// back or corrupt on purpose. Written from docs/gguf.md, independently of the reader under test,
// and deliberately permissive: counts, offsets and the version can be overridden to make the
// hostile cases.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ttq::llama::test {

using Bytes = std::vector<std::byte>;

inline void put_bytes(Bytes& out, const void* p, std::size_t n) {
  // resize + memcpy rather than insert(): GCC 12 warns falsely (-Wstringop-overflow) on
  // small vector inserts.
  const std::size_t old = out.size();
  out.resize(old + n);
  if (n != 0) std::memcpy(out.data() + old, p, n);
}

template <class T>
void put(Bytes& out, T value) {
  put_bytes(out, &value, sizeof value);  // the tests run on little-endian hosts only
}

inline void put_string(Bytes& out, std::string_view s) {
  put<std::uint64_t>(out, s.size());
  put_bytes(out, s.data(), s.size());
}

// Overwrites sizeof(T) bytes at `at`.
template <class T>
void patch(Bytes& buffer, std::size_t at, T value) {
  std::memcpy(buffer.data() + at, &value, sizeof value);
}

// Offset of the first occurrence of `needle`, or npos.
inline std::size_t find_bytes(const Bytes& haystack, std::string_view needle) {
  const std::string_view h(reinterpret_cast<const char*>(haystack.data()), haystack.size());
  return h.find(needle);
}

// Offset of the 8-byte length that precedes the first GGUF string equal to `s`.
inline std::size_t find_gguf_string(const Bytes& haystack, std::string_view s) {
  std::string needle(8, '\0');
  const std::uint64_t n = s.size();
  std::memcpy(needle.data(), &n, 8);
  needle += s;
  return find_bytes(haystack, needle);
}

class GgufBuilder {
 public:
  // A key with an already-encoded value (type tag + payload).
  GgufBuilder& raw_kv(std::string_view key, std::uint32_t type, const Bytes& payload) {
    put_string(kv_, key);
    put(kv_, type);
    kv_.insert(kv_.end(), payload.begin(), payload.end());
    ++kv_count_;
    return *this;
  }
  template <class T>
  GgufBuilder& kv(std::string_view key, std::uint32_t type, T value) {
    Bytes payload;
    put(payload, value);
    return raw_kv(key, type, payload);
  }
  GgufBuilder& kv_u32(std::string_view key, std::uint32_t v) { return kv(key, 4, v); }
  GgufBuilder& kv_f32(std::string_view key, float v) { return kv(key, 6, v); }
  GgufBuilder& kv_string(std::string_view key, std::string_view v) {
    Bytes payload;
    put_string(payload, v);
    return raw_kv(key, 8, payload);
  }
  GgufBuilder& kv_string_array(std::string_view key, const std::vector<std::string>& items) {
    Bytes payload;
    put<std::uint32_t>(payload, 8);
    put<std::uint64_t>(payload, items.size());
    for (const auto& s : items) put_string(payload, s);
    return raw_kv(key, 9, payload);
  }
  GgufBuilder& kv_f32_array(std::string_view key, const std::vector<float>& items) {
    Bytes payload;
    put<std::uint32_t>(payload, 6);
    put<std::uint64_t>(payload, items.size());
    for (float f : items) put(payload, f);
    return raw_kv(key, 9, payload);
  }
  GgufBuilder& kv_i32_array(std::string_view key, const std::vector<std::int32_t>& items) {
    Bytes payload;
    put<std::uint32_t>(payload, 5);
    put<std::uint64_t>(payload, items.size());
    for (auto v : items) put(payload, v);
    return raw_kv(key, 9, payload);
  }

  // A tensor from its raw bytes in the file's encoding; dims in GGUF order.
  GgufBuilder& tensor(std::string_view name, std::vector<std::uint64_t> dims, std::uint32_t type,
                      Bytes data, std::optional<std::uint64_t> offset_override = std::nullopt) {
    tensors_.push_back({std::string(name), std::move(dims), type, std::move(data), offset_override});
    return *this;
  }
  GgufBuilder& f32_tensor(std::string_view name, std::vector<std::uint64_t> dims, const std::vector<float>& values) {
    Bytes data;
    for (float f : values) put(data, f);
    return tensor(name, std::move(dims), 0, std::move(data));
  }

  GgufBuilder& version(std::uint32_t v) {
    version_ = v;
    return *this;
  }
  // The alignment used to lay out the data; add a `general.alignment` key to declare it.
  GgufBuilder& alignment(std::uint64_t a) {
    alignment_ = a;
    return *this;
  }
  GgufBuilder& tensor_count(std::uint64_t n) {
    tensor_count_override_ = n;
    return *this;
  }
  GgufBuilder& kv_count(std::uint64_t n) {
    kv_count_override_ = n;
    return *this;
  }

  Bytes build() const {
    Bytes out;
    put_bytes(out, "GGUF", 4);
    put(out, version_);
    put<std::uint64_t>(out, tensor_count_override_.value_or(tensors_.size()));
    put<std::uint64_t>(out, kv_count_override_.value_or(kv_count_));
    out.insert(out.end(), kv_.begin(), kv_.end());
    std::vector<std::uint64_t> offsets;
    std::uint64_t next = 0;
    for (const auto& t : tensors_) {
      offsets.push_back(t.offset_override.value_or(next));
      next += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
    }
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const auto& t = tensors_[i];
      put_string(out, t.name);
      put<std::uint32_t>(out, static_cast<std::uint32_t>(t.dims.size()));
      for (auto d : t.dims) put(out, d);
      put(out, t.type);
      put(out, offsets[i]);
    }
    out.resize((out.size() + alignment_ - 1) / alignment_ * alignment_);
    const std::size_t base = out.size();
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      if (tensors_[i].offset_override) continue;
      out.resize(base + offsets[i]);
      out.insert(out.end(), tensors_[i].data.begin(), tensors_[i].data.end());
    }
    return out;
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<std::uint64_t> dims;
    std::uint32_t type;
    Bytes data;
    std::optional<std::uint64_t> offset_override;
  };
  std::uint32_t version_ = 3;
  std::uint64_t alignment_ = 32;
  std::optional<std::uint64_t> tensor_count_override_;
  std::optional<std::uint64_t> kv_count_override_;
  Bytes kv_;
  std::uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace ttq::llama::test
