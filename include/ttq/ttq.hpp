// ttq: test-time quantization for LLM inference. The umbrella header: include this and use
// OnlineAWQ (TTQ), RtnOperator and StaticAwqOperator, or the pieces they are made of.
// Architecture: docs/design.md. Numerical contract: docs/numerics.md.
#pragma once

#include "ttq/backend/backend.hpp"
#include "ttq/backend/scalar/kernels.hpp"
#include "ttq/core/error.hpp"
#include "ttq/core/half.hpp"
#include "ttq/core/types.hpp"
#include "ttq/op/baselines.hpp"
#include "ttq/op/layer_weights.hpp"
#include "ttq/op/metrics.hpp"
#include "ttq/op/online_awq.hpp"
#include "ttq/quant/format.hpp"
#include "ttq/quant/packing.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"
#include "ttq/quant/quantizer.hpp"
#include "ttq/residual/low_rank_residual.hpp"
#include "ttq/stats/adaptive_exponent.hpp"
#include "ttq/stats/diag_correlation.hpp"
#include "ttq/stats/scale_plan.hpp"

namespace ttq {
inline constexpr int kVersionMajor = 0;
inline constexpr int kVersionMinor = 1;
inline constexpr int kVersionPatch = 0;
}  // namespace ttq
