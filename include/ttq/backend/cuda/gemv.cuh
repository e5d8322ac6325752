// Decode GEMV / skinny GEMM from packed codes on the GPU (spec "TTQ for one linear layer"):
//
//   Y [T, d_out] = (X diag(1/D)) deq(Q)^T + (X A^T) B^T + bias,   T = 1..16 per launch
//
// Two kernels compute it:
// - packed_gemv_kernel (2, 3, 4, 8 bits; integer formats; groups that are multiples of 32 and
//   divide or are divided by 128): tensor cores. The 1/D prescale is fused into the prologue:
//   each block stages x' = x * (1/D) for its tile in shared memory as bf16 hi + lo parts
//   (x' ~= hi + lo to about 2^-16 relative, with fp32's range, so fp16 activations lose nothing
//   and a tiny D cannot overflow), together with per-32-column sums of x'. Codes are unpacked
//   straight from the library's bit layout into exact bf16 integers, multiplied with mma.m16n8k16
//   (fp32 accumulate) per group, and each group's result is scaled in fp32:
//     y += scale_g * sum_k q_k x'_k + offset_g * sum_k x'_k        (format.hpp AffineDecode)
//   k is split across blocks until the grid fills the GPU; the last block of each row block
//   reduces the partial sums in a fixed order (deterministic), adds the low-rank term and bias,
//   and writes fp16/bf16/fp32 outputs.
// - generic_gemv_kernel (any bits 2..8, any group, NF4, or when forced): one warp per row,
//   per-element F::decode in fp32 through the shared functions, like the scalar oracle.
// The low-rank projection u = X A^T [T, r] is a small kernel in the same stream; B u is fused
// into the GEMV's epilogue. Nothing here synchronises the device.
#pragma once

#include <algorithm>
#include <cstdint>

#include "ttq/backend/cuda/common.cuh"
#include "ttq/backend/cuda/gemv_layout.hpp"
#include "ttq/backend/cuda/quantize.cuh"
#include "ttq/core/error.hpp"
#include "ttq/quant/group_kernel.hpp"
#include "ttq/quant/packing.hpp"

namespace ttq::cuda {

/// Which kernel a GEMV runs.
enum class GemvPath : std::uint8_t {
  automatic,  ///< the packed tensor-core kernel where it applies, else the generic one
  packed,     ///< the packed kernel; throws RangeError where it does not apply
  generic,    ///< the generic per-element kernel (always applies)
};

/// The activation-side operands of a GEMV, all in device memory.
template <class Act>
struct GemvOperands {
  DeviceMatrixView<const Act> x;       ///< [T, d_in]
  const float* inverse_scale = nullptr;  ///< 1/D [>= d_in], 16-byte aligned; read only below d_in
  const float* lowrank_a = nullptr;    ///< A [rank, d_in] row-major fp32, or null
  const float* lowrank_bt = nullptr;   ///< B^T [rank, d_out] row-major fp32 (B transposed), or null
  int rank = 0;
  const float* bias = nullptr;  ///< [d_out] or null
  DeviceMatrixView<Act> y;      ///< [T, d_out], written
};

/// Scratch memory of the GEMV (k-split partial sums, their arrival counters, the low-rank
/// projection). Grows on demand, stream-ordered; one workspace must not serve two GEMVs that
/// run concurrently (different streams).
class GemvWorkspace {
 public:
  GemvWorkspace() = default;
  explicit GemvWorkspace(cudaStream_t stream) : stream_(stream) {}

  void reserve(std::size_t partial_floats, std::size_t counters, std::size_t lowrank_floats) {
    if (partials_.size() < partial_floats) partials_ = DeviceBuffer<float>(partial_floats, stream_);
    if (counters_.size() < counters) {
      counters_ = DeviceBuffer<unsigned>(counters, stream_);
      counters_.zero();  // the packed kernel leaves them at zero after every launch
    }
    if (lowrank_.size() < lowrank_floats) lowrank_ = DeviceBuffer<float>(lowrank_floats, stream_);
  }
  float* partials() const { return partials_.data(); }
  unsigned* counters() const { return counters_.data(); }
  float* lowrank() const { return lowrank_.data(); }
  cudaStream_t stream() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
  DeviceBuffer<float> partials_;
  DeviceBuffer<unsigned> counters_;
  DeviceBuffer<float> lowrank_;
};

namespace detail {

/// Everything one GEMV launch reads and writes (device pointers; x and y type-erased).
struct GemvArgs {
  const std::uint32_t* codes = nullptr;
  Index code_stride = 0;
  const float* scales = nullptr;
  const float* zeros = nullptr;
  Index groups_per_row = 0;
  Index group = 0;
  int bits = 0;
  FormatKind format = FormatKind::awq_asymmetric;
  Index d_out = 0;
  Index d_in = 0;
  const float* inverse_scale = nullptr;
  const void* x = nullptr;
  Index x_stride = 0;
  bool x_vector_ok = false;
  int tokens = 0;
  void* y = nullptr;
  Index y_stride = 0;
  const float* lowrank_u = nullptr;   ///< [tokens, rank]
  const float* lowrank_bt = nullptr;  ///< [rank, d_out]
  int rank = 0;
  const float* bias = nullptr;
  float* partials = nullptr;     ///< [splits, tokens, d_out]
  unsigned* counters = nullptr;  ///< [row_blocks]
  Index tile_cols = 0;
  Index split_cols = 0;
};

__device__ __forceinline__ std::uint32_t fma_bf16x2(std::uint32_t a, std::uint32_t b, std::uint32_t c) {
  std::uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

/// bf16x2 of (lo, hi): lo in the lower 16 bits (cvt puts its first source in the upper half).
__device__ __forceinline__ std::uint32_t pack_bf16x2(float lo, float hi) {
  std::uint32_t d;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
}

/// D += A B for one m16n8k16 tile: A 16x16 bf16 (row), B 16x8 bf16 (col), fp32 accumulators.
__device__ __forceinline__ void mma_bf16_m16n8k16(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                                  std::uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// An 8-bit code as an exact fp32 (2^23 + q has q in its low mantissa bits; subtracting 2^23 is exact).
__device__ __forceinline__ float byte_to_float(std::uint32_t q) { return __uint_as_float(0x4B000000u | q) - 8388608.0f; }

/// The four bf16x2 A-operand pairs (j, j+4), j = 0..3, of one thread's field (gemv_layout.hpp).
template <int Bits>
__device__ __forceinline__ void unpack_pairs(layout::QuadField f, std::uint32_t (&pairs)[4]) {
  if constexpr (Bits == 8) {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      pairs[j] = pack_bf16x2(byte_to_float(layout::byte_code(f, j)), byte_to_float(layout::byte_code(f, j + 4)));
  } else {
    const std::uint32_t spread = layout::spread_field<Bits>(f);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const layout::PairUnpack u = layout::pair_unpack<Bits>(j);
      pairs[j] = fma_bf16x2(layout::pair_pattern<Bits>(spread, j), layout::bf16x2_pow2(-u.exponent),
                            layout::bf16x2_neg_pow2(7 - u.exponent));
    }
  }
}

__device__ __forceinline__ std::uint32_t bf16_bits(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
__device__ __forceinline__ float bf16_value(std::uint32_t bits) { return __uint_as_float(bits << 16); }

/// x'_e = x[col + e] * (1/D)[col + e] for e = 0..7 in fp32 (0 past d_in or when !valid).
template <class Act>
__device__ __forceinline__ void load_prescaled8(const Act* row, const float* inverse_scale, Index col, Index d_in,
                                                bool valid, bool vector_ok, float (&v)[8]) {
  if (valid && col + 8 <= d_in) {
    float x[8];
    if (vector_ok) {
      if constexpr (sizeof(Act) == 2) {
        const uint4 raw = *reinterpret_cast<const uint4*>(row + col);
        const Act* h = reinterpret_cast<const Act*>(&raw);
#pragma unroll
        for (int e = 0; e < 8; ++e) x[e] = to_float(h[e]);
      } else {
        const float4 a = *reinterpret_cast<const float4*>(row + col);
        const float4 b = *reinterpret_cast<const float4*>(row + col + 4);
        x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
      }
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] = to_float(row[col + e]);
    }
    const float4 i0 = *reinterpret_cast<const float4*>(inverse_scale + col);
    const float4 i1 = *reinterpret_cast<const float4*>(inverse_scale + col + 4);
    v[0] = x[0] * i0.x, v[1] = x[1] * i0.y, v[2] = x[2] * i0.z, v[3] = x[3] * i0.w;
    v[4] = x[4] * i1.x, v[5] = x[5] * i1.y, v[6] = x[6] * i1.z, v[7] = x[7] * i1.w;
    return;
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) v[e] = valid && col + e < d_in ? to_float(row[col + e]) * inverse_scale[col + e] : 0.0f;
}

inline constexpr int kGemvThreads = layout::kBlockWarps * 32;

/// The epilogue of every GEMV kernel: adds the low-rank term (u_t . B_row) and the bias to one
/// output's product and stores it as Act.
template <class Act>
__device__ __forceinline__ void store_output(const GemvArgs& a, int t, Index row, float value) {
  if (a.rank > 0) {
    float low = 0.0f;
    for (int k = 0; k < a.rank; ++k) low += a.lowrank_u[t * a.rank + k] * a.lowrank_bt[k * a.d_out + row];
    value += low;
  }
  if (a.bias != nullptr) value += a.bias[row];
  static_cast<Act*>(a.y)[t * a.y_stride + row] = from_float<Act>(value);
}

/// The packed tensor-core GEMV (see the file comment). Grid: (row blocks of 128 rows, k-splits).
/// Block: 8 warps, warp w owns rows [16w, 16w + 16) of the row block; all warps share the
/// staged activations of each tile.
template <int Bits, class Act>
__global__ void __launch_bounds__(kGemvThreads) packed_gemv_kernel(GemvArgs a) {
  extern __shared__ __align__(16) unsigned char shared_raw[];
  __shared__ bool last_block;
  const int tokens = a.tokens;
  const int slots = tokens > 8 ? 16 : 8;
  const int n_tiles = tokens > 8 ? 2 : 1;
  const Index pitch = a.tile_cols + 32;  // bf16 elements per staged token row (see gemv_shared_bytes)
  auto* x_hi = reinterpret_cast<std::uint16_t*>(shared_raw);
  auto* x_lo = x_hi + tokens * pitch;
  auto* chunk_sum = reinterpret_cast<float*>(x_lo + tokens * pitch);  // [tile_cols / 32][slots]

  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int quad_row = lane >> 2;  // the mma "groupID": A/C row, B column (token)
  const int quad_i = lane & 3;     // the mma "threadID_in_group": which field of a chunk
  const Index row_base = static_cast<Index>(blockIdx.x) * layout::kBlockRows;
  const Index r0 = row_base + warp * layout::kWarpRows + quad_row;
  const Index r1 = r0 + 8;
  // Rows past d_out load the last row (valid memory) and are never stored.
  const Index r0_load = r0 < a.d_out ? r0 : a.d_out - 1;
  const Index r1_load = r1 < a.d_out ? r1 : a.d_out - 1;
  const std::uint32_t* codes0 = a.codes + r0_load * a.code_stride;
  const std::uint32_t* codes1 = a.codes + r1_load * a.code_stride;
  const Index k_begin = static_cast<Index>(blockIdx.y) * a.split_cols;
  const Index cols_with_codes = (a.d_in + 31) / 32 * 32;
  const Index k_stop = k_begin + a.split_cols < cols_with_codes ? k_begin + a.split_cols : cols_with_codes;
  const Act* x = static_cast<const Act*>(a.x);

  // Per n-tile, the mma accumulator layout: (r0, t0), (r0, t0+1), (r1, t0), (r1, t0+1), t0 = 8nt + 2 quad_i.
  float acc[2][4] = {};
  float group_acc[2][4] = {};  // the current group's sum of q x' (same layout)
  float group_xsum[2][2] = {};  // the current group's sum of x' for tokens t0, t0+1

  for (Index tile_begin = k_begin; tile_begin < k_stop; tile_begin += a.tile_cols) {
    const Index tile_end = tile_begin + a.tile_cols < k_stop ? tile_begin + a.tile_cols : k_stop;
    const int tile_chunks = static_cast<int>((tile_end - tile_begin) / 32);
    const int units_per_row = tile_chunks * 4;  // 8-column staging units
    const int units = tokens * units_per_row;

    // Prologue: stage x' = x * (1/D) of this tile as bf16 hi + lo, and per-chunk sums of x'.
    __syncthreads();  // the previous tile is consumed
    for (int base = 0; base < units; base += kGemvThreads) {  // uniform trip count: shuffles below
      const int u = base + static_cast<int>(threadIdx.x);
      const bool valid = u < units;
      const int t = valid ? u / units_per_row : 0;
      const int cu = valid ? u % units_per_row : 0;
      const Index col = tile_begin + 8 * cu;
      float v[8];
      load_prescaled8(x + t * a.x_stride, a.inverse_scale, col, a.d_in, valid, a.x_vector_ok, v);
      std::uint32_t hi[4], lo[4];
      float sum = 0.0f;
#pragma unroll
      for (int p = 0; p < 8; p += 2) {
        const float v0 = v[layout::staged_column(p)];
        const float v1 = v[layout::staged_column(p + 1)];
        const std::uint32_t h0 = bf16_bits(v0), h1 = bf16_bits(v1);
        const std::uint32_t l0 = bf16_bits(v0 - bf16_value(h0)), l1 = bf16_bits(v1 - bf16_value(h1));
        hi[p / 2] = h0 | (h1 << 16);
        lo[p / 2] = l0 | (l1 << 16);
        // The sum of exactly what the mma multiplies, so that scale*sum(q x') + offset*sum(x')
        // is the group's sum of w^ x' for the same x'.
        sum += (bf16_value(h0) + bf16_value(l0)) + (bf16_value(h1) + bf16_value(l1));
      }
      if (valid) {
        *reinterpret_cast<uint4*>(x_hi + t * pitch + 8 * cu) = make_uint4(hi[0], hi[1], hi[2], hi[3]);
        *reinterpret_cast<uint4*>(x_lo + t * pitch + 8 * cu) = make_uint4(lo[0], lo[1], lo[2], lo[3]);
      }
      // Lanes 4m..4m+3 hold the four units of one chunk of one token (units_per_row % 4 == 0).
      sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 1);
      sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 2);
      if (valid && (cu & 3) == 0) chunk_sum[(cu >> 2) * slots + t] = sum;
    }
    __syncthreads();

    const Index tile_chunk0 = tile_begin / 32;
    for (int cb = 0; cb < tile_chunks; cb += layout::kBatchChunks) {
      // Issue every load of the batch first: 2 rows x 4 chunks of codes, and the group
      // parameters of the groups that end in this batch.
      layout::QuadField f0[layout::kBatchChunks], f1[layout::kBatchChunks];
      AffineDecode m0[layout::kBatchChunks], m1[layout::kBatchChunks];
      bool flush[layout::kBatchChunks];
#pragma unroll
      for (int c = 0; c < layout::kBatchChunks; ++c) {
        flush[c] = false;
        if (cb + c >= tile_chunks) continue;
        const Index word = (tile_chunk0 + cb + c) * Bits;
        f0[c] = layout::load_quad_field<Bits>(codes0 + word, quad_i);
        f1[c] = layout::load_quad_field<Bits>(codes1 + word, quad_i);
        const Index col = tile_begin + 32 * (cb + c);
        // A group ends at a multiple of the group size, at d_in (ragged) or at the split's end
        // (a multiple of the group size too).
        flush[c] = (col + 32) % a.group == 0 || col + 32 >= k_stop;
        if (flush[c]) {
          Index g = col / a.group;
          if (g >= a.groups_per_row) g = a.groups_per_row - 1;
          const Index i0 = r0_load * a.groups_per_row + g;
          const Index i1 = r1_load * a.groups_per_row + g;
          m0[c] = ttq::detail::affine_decode(a.format, GroupParams{a.scales[i0], a.zeros[i0]}, Bits);
          m1[c] = ttq::detail::affine_decode(a.format, GroupParams{a.scales[i1], a.zeros[i1]}, Bits);
        }
      }
#pragma unroll
      for (int c = 0; c < layout::kBatchChunks; ++c) {
        if (cb + c >= tile_chunks) break;
        const int chunk_local = cb + c;
        std::uint32_t p0[4], p1[4];
        unpack_pairs<Bits>(f0[c], p0);
        unpack_pairs<Bits>(f1[c], p1);
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
          if (nt >= n_tiles) break;
          const int n = nt * 8 + quad_row;
          uint4 h = make_uint4(0u, 0u, 0u, 0u), l = make_uint4(0u, 0u, 0u, 0u);
          if (n < tokens) {
            h = *reinterpret_cast<const uint4*>(x_hi + n * pitch + chunk_local * 32 + 8 * quad_i);
            l = *reinterpret_cast<const uint4*>(x_lo + n * pitch + chunk_local * 32 + 8 * quad_i);
          }
          const int t0 = nt * 8 + 2 * quad_i;
          if (t0 < tokens) {
            const float2 s = *reinterpret_cast<const float2*>(chunk_sum + chunk_local * slots + t0);
            group_xsum[nt][0] += s.x;
            group_xsum[nt][1] += s.y;  // garbage when t0 + 1 == tokens; that token is never stored
          }
          // Two k-steps of 16 per chunk; the fragment assignment is gemv_layout.hpp's (CPU-tested).
          const std::uint32_t hw[4] = {h.x, h.y, h.z, h.w};
          const std::uint32_t lw[4] = {l.x, l.y, l.z, l.w};
#pragma unroll
          for (int step = 0; step < 2; ++step) {
            std::uint32_t fragment[4];
#pragma unroll
            for (int reg = 0; reg < 4; ++reg)
              fragment[reg] = layout::a_register_row(reg) == 0 ? p0[layout::a_register_pair(step, reg)]
                                                               : p1[layout::a_register_pair(step, reg)];
            mma_bf16_m16n8k16(group_acc[nt], fragment, hw[layout::b_register_word(step, 0)],
                              hw[layout::b_register_word(step, 1)]);
            mma_bf16_m16n8k16(group_acc[nt], fragment, lw[layout::b_register_word(step, 0)],
                              lw[layout::b_register_word(step, 1)]);
          }
        }
        if (flush[c]) {
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
            for (int reg = 0; reg < 4; ++reg) {
              const AffineDecode& m = layout::c_register_row(reg) == 0 ? m0[c] : m1[c];
              acc[nt][reg] += m.scale * group_acc[nt][reg] + m.offset * group_xsum[nt][layout::c_register_token(reg)];
              group_acc[nt][reg] = 0.0f;
            }
            group_xsum[nt][0] = group_xsum[nt][1] = 0.0f;
          }
        }
      }
    }
  }

  // Epilogue: this split's partial sums, then the last block of the row block reduces them.
  float* partial = a.partials + static_cast<Index>(blockIdx.y) * tokens * a.d_out;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
    for (int reg = 0; reg < 4; ++reg) {
      const Index row = layout::c_register_row(reg) == 0 ? r0 : r1;
      const int t = nt * 8 + 2 * quad_i + layout::c_register_token(reg);
      if (row < a.d_out && t < tokens) partial[t * a.d_out + row] = acc[nt][reg];
    }
  }
  __threadfence();  // publish the partials before counting this block in
  __syncthreads();
  if (threadIdx.x == 0) last_block = atomicAdd(a.counters + blockIdx.x, 1u) == gridDim.y - 1;
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  for (int idx = static_cast<int>(threadIdx.x); idx < tokens * layout::kBlockRows; idx += kGemvThreads) {
    const int t = idx / layout::kBlockRows;
    const Index row = row_base + idx % layout::kBlockRows;
    if (row >= a.d_out) continue;
    float value = 0.0f;
    for (unsigned s = 0; s < gridDim.y; ++s) value += __ldcg(a.partials + (static_cast<Index>(s) * tokens + t) * a.d_out + row);
    store_output<Act>(a, t, row, value);
  }
  if (threadIdx.x == 0) a.counters[blockIdx.x] = 0u;  // ready for the next launch on this workspace
}

/// The generic GEMV: one warp per output row, lanes over columns, per-element decode through
/// the shared format functions and fp32 prescale, like the scalar oracle. Any bits, any group.
template <class Act>
__global__ void __launch_bounds__(kGemvThreads) generic_gemv_kernel(GemvArgs a) {
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const Index row = static_cast<Index>(blockIdx.x) * layout::kBlockWarps + warp;
  if (row >= a.d_out) return;  // whole warps only
  const Act* x = static_cast<const Act*>(a.x);
  const std::uint32_t* codes = a.codes + row * a.code_stride;
  float acc[layout::kMaxTokens] = {};
  for (Index k = lane; k < a.d_in; k += 32) {
    const Index g = k / a.group;
    const GroupParams p{a.scales[row * a.groups_per_row + g], a.zeros[row * a.groups_per_row + g]};
    const float w = ttq::detail::decode_value(a.format, unpack_code(codes, k, a.bits), p, a.bits);
    const float inverse = a.inverse_scale[k];
#pragma unroll
    for (int t = 0; t < layout::kMaxTokens; ++t)
      if (t < a.tokens) acc[t] += w * (to_float(x[t * a.x_stride + k]) * inverse);
  }
  // Sum over lanes; lane t then holds token t's total (kMaxTokens <= 32). Indices stay
  // compile-time constants so that acc lives in registers.
  float total = 0.0f;
#pragma unroll
  for (int t = 0; t < layout::kMaxTokens; ++t) {
    if (t < a.tokens) {
      for (int offset = 16; offset > 0; offset >>= 1) acc[t] += __shfl_xor_sync(0xFFFFFFFFu, acc[t], offset);
    }
    if (lane == t) total = acc[t];
  }
  if (lane < a.tokens) store_output<Act>(a, lane, row, total);
}

/// u [tokens, rank] = X A^T in fp32 (the low-rank projection, on the unscaled x as the spec's
/// (X A^T) B^T). One block per rank row; threads over d_in, then a block reduction.
template <class Act>
__global__ void __launch_bounds__(256) lowrank_project_kernel(const Act* x, Index x_stride, int tokens, Index d_in,
                                                             const float* a_matrix, int rank, float* u) {
  __shared__ float partial[8][layout::kMaxTokens];
  const int k = static_cast<int>(blockIdx.x);
  const float* a_row = a_matrix + static_cast<Index>(k) * d_in;
  float acc[layout::kMaxTokens] = {};
  for (Index j = threadIdx.x; j < d_in; j += blockDim.x) {
    const float av = a_row[j];
#pragma unroll
    for (int t = 0; t < layout::kMaxTokens; ++t)
      if (t < tokens) acc[t] += to_float(x[t * x_stride + j]) * av;
  }
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int lane = static_cast<int>(threadIdx.x) & 31;
#pragma unroll
  for (int t = 0; t < layout::kMaxTokens; ++t) {
    for (int offset = 16; offset > 0; offset >>= 1) acc[t] += __shfl_xor_sync(0xFFFFFFFFu, acc[t], offset);
    if (lane == 0) partial[warp][t] = acc[t];
  }
  __syncthreads();
  if (threadIdx.x < static_cast<unsigned>(tokens)) {
    float total = 0.0f;
    for (int w = 0; w < 8; ++w) total += partial[w][threadIdx.x];
    u[static_cast<Index>(threadIdx.x) * rank + k] = total;
  }
}

template <class Act>
void launch_packed(const GemvArgs& a, const layout::GemvPlan& plan, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(plan.row_blocks), static_cast<unsigned>(plan.splits));
  const auto shared = static_cast<std::size_t>(plan.shared_bytes);
  switch (a.bits) {
    case 2: packed_gemv_kernel<2, Act><<<grid, kGemvThreads, shared, stream>>>(a); break;
    case 3: packed_gemv_kernel<3, Act><<<grid, kGemvThreads, shared, stream>>>(a); break;
    case 4: packed_gemv_kernel<4, Act><<<grid, kGemvThreads, shared, stream>>>(a); break;
    case 8: packed_gemv_kernel<8, Act><<<grid, kGemvThreads, shared, stream>>>(a); break;
    default: throw RangeError("bits", "2, 3, 4 or 8 for the packed GEMV, got " + std::to_string(a.bits));
  }
  check_launch("packed_gemv_kernel");
}

}  // namespace detail

/// The kernel a GEMV of `weights` with `tokens` tokens would run under `path` on a device with
/// `sms` multiprocessors, and its launch plan (plan.supported is false for the generic kernel).
inline layout::GemvPlan plan_gemv(const DeviceQuantizedView& weights, int tokens, GemvPath path, int sms) {
  if (path == GemvPath::generic) return {};
  const int slice = tokens < layout::kMaxTokens ? tokens : layout::kMaxTokens;
  return layout::plan_packed_gemv(weights.rows, weights.cols, slice, weights.bits, weights.group,
                                  ttq::detail::has_integer_codes(weights.format), sms);
}

/// Y = (X diag(1/D)) deq(Q)^T + (X A^T) B^T + bias on `stream`, for any number of tokens (in
/// launches of at most 16). weights: [d_out, d_in] on the device; operands as documented in
/// GemvOperands; `workspace` grows as needed and must not be shared with a concurrent GEMV.
/// Never synchronises. Throws ShapeError / RangeError on bad shapes or an impossible `path`.
template <class Act>
  requires is_element_v<Act>
void gemv_on_device(const DeviceQuantizedView& weights, const GemvOperands<Act>& operands, GemvWorkspace& workspace,
                    cudaStream_t stream, GemvPath path = GemvPath::automatic, int sms = 0) {
  const Index d_out = weights.rows, d_in = weights.cols, tokens = operands.x.rows;
  // Checked on every decode step, so the messages are built only on failure.
  if (!(operands.x.cols == d_in && tokens >= 1 && operands.x.row_stride >= operands.x.cols))
    ttq::detail::require_shape(false, "x", "[T >= 1, " + std::to_string(d_in) + "]", operands.x.rows, operands.x.cols);
  if (!(operands.y.rows == tokens && operands.y.cols == d_out && operands.y.row_stride >= operands.y.cols))
    ttq::detail::require_shape(false, "y", "[" + std::to_string(tokens) + ", " + std::to_string(d_out) + "]",
                               operands.y.rows, operands.y.cols);
  if (!(operands.rank == 0 || (operands.lowrank_a != nullptr && operands.lowrank_bt != nullptr)))
    ttq::detail::require_range(false, "rank", "0, or A and B^T given", std::to_string(operands.rank));
  if (reinterpret_cast<std::uintptr_t>(operands.inverse_scale) % 16 != 0)
    ttq::detail::require_range(false, "inverse_scale", "a 16-byte aligned device pointer", "a misaligned one");
  if (d_out == 0) return;
  if (sms <= 0) sms = multiprocessor_count();
  const layout::GemvPlan plan = plan_gemv(weights, static_cast<int>(tokens), path, sms);
  if (path == GemvPath::packed && !plan.supported)
    ttq::detail::require_range(false, "path",
                               "a configuration the packed kernel supports (bits 2/3/4/8, integer format, group multiple of "
                               "32 dividing or divided by 128, group fitting shared memory)",
                               "bits " + std::to_string(weights.bits) + ", group " + std::to_string(weights.group));
  const int slice_max = static_cast<int>(tokens < layout::kMaxTokens ? tokens : layout::kMaxTokens);
  workspace.reserve(plan.supported ? static_cast<std::size_t>(plan.splits) * slice_max * d_out : 0,
                    plan.supported ? static_cast<std::size_t>(plan.row_blocks) : 0,
                    static_cast<std::size_t>(operands.rank) * layout::kMaxTokens);

  detail::GemvArgs a;
  a.codes = weights.codes;
  a.code_stride = weights.code_stride;
  a.scales = weights.scales;
  a.zeros = weights.zeros;
  a.groups_per_row = weights.groups_per_row();
  a.group = weights.group;
  a.bits = weights.bits;
  a.format = weights.format;
  a.d_out = d_out;
  a.d_in = d_in;
  a.inverse_scale = operands.inverse_scale;
  a.x_stride = operands.x.row_stride;
  a.x_vector_ok = reinterpret_cast<std::uintptr_t>(operands.x.data) % 16 == 0 &&
                  (static_cast<std::size_t>(operands.x.row_stride) * sizeof(Act)) % 16 == 0;
  a.y_stride = operands.y.row_stride;
  a.lowrank_bt = operands.lowrank_bt;
  a.rank = operands.rank;
  a.bias = operands.bias;
  a.partials = workspace.partials();
  a.counters = workspace.counters();
  a.lowrank_u = workspace.lowrank();
  a.tile_cols = plan.tile_cols;
  a.split_cols = plan.split_cols;

  for (Index first = 0; first < tokens; first += layout::kMaxTokens) {
    const int slice = static_cast<int>(tokens - first < layout::kMaxTokens ? tokens - first : layout::kMaxTokens);
    a.tokens = slice;
    a.x = operands.x.data + first * operands.x.row_stride;
    a.y = operands.y.data + first * operands.y.row_stride;
    if (operands.rank > 0) {
      detail::lowrank_project_kernel<Act><<<static_cast<unsigned>(operands.rank), 256, 0, stream>>>(
          operands.x.data + first * operands.x.row_stride, operands.x.row_stride, slice, d_in, operands.lowrank_a,
          operands.rank, workspace.lowrank());
      detail::check_launch("lowrank_project_kernel");
    }
    if (plan.supported) {
      // A last slice with fewer tokens may stage less; the plan for the full slice is valid for it.
      detail::launch_packed<Act>(a, plan, stream);
    } else {
      const Index blocks = (d_out + layout::kBlockWarps - 1) / layout::kBlockWarps;
      detail::generic_gemv_kernel<Act><<<static_cast<unsigned>(blocks), detail::kGemvThreads, 0, stream>>>(a);
      detail::check_launch("generic_gemv_kernel");
    }
  }
}

}  // namespace ttq::cuda
