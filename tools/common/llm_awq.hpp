// Static AWQ exactly as llm-awq runs it (`--awq-mode llm-awq`; spec "Baselines", second mode),
// searched on the fp32 model. Per block, on the fp32 activations of the calibration windows:
//   - one scale for q, k and v, chosen by the self-attention output (o in fp32);
//   - o scaled on its own output only when v and o have the same shape (no GQA), else not;
//   - one scale for gate and up, chosen by the FFN output (down in fp32);
//   - down scaled on its own output;
// each scale s^a / sqrt(max s^a * min s^a) of the mean |x| per channel (floored at 1e-4), a on
// llm-awq's 20-point grid; then, with --awq-clip, a clamp ratio per (row, group) for every
// projection but q and k: the scaled weights are clamped to +-r max|w| of the group (the
// quantizer then re-takes min and max), r from 1.00 down to 0.55, chosen by that group's output
// error on at most 512 of the calibration tokens (every (T / 512)-th). The quantized weights are
// those of clamp(W diag(s)) with D = s (ttq::PresetScales).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <ttq/core/types.hpp>

#include "common/ttq_linear.hpp"
#include "llama/model.hpp"

namespace ttq::llama {

/// What the search needs of one projection; the tools' llm-awq projections implement it. Until
/// freeze(), forward() computes in fp32 with W (or the candidate set) and, while recording,
/// keeps a copy of each input.
class LlmAwqProbe {
 public:
  virtual ~LlmAwqProbe() = default;
  /// W [d_out, d_in], fp32.
  virtual const RowMatrix& weight() const = 0;
  /// forward() uses `candidate` (same shape as W, outliving its use) instead of W; nullptr: W.
  virtual void set_candidate(const RowMatrix* candidate) = 0;
  /// While on, forward() appends a copy of its input [tokens, d_in] to recorded().
  virtual void set_recording(bool on) = 0;
  virtual std::vector<RowMatrix>& recorded() = 0;
  /// Quantizes `weight` (clamp(W diag(s)) diag(1/s)) with D = `scales`; forward() then runs the
  /// quantized operator.
  virtual void freeze(std::vector<float> scales, const RowMatrix& weight) = 0;
};

/// Runs `window` through every block of `model` from position 0 (projections see their inputs)
/// without computing the output head: what a calibration pass needs.
void run_blocks(LlamaModel& model, std::span<const int> window);

/// Runs llm-awq's search on `model` (whose projections are the llm-awq projections of
/// `config`, not yet frozen) over `windows` (each one sequence, all used), and freezes every
/// projection. Progress per block on stderr. Throws LlamaError when a projection is not an
/// llm-awq projection or the windows hold no token.
void search_llm_awq(LlamaModel& model, const MethodConfig& config, const std::vector<std::vector<int>>& windows);

}  // namespace ttq::llama
