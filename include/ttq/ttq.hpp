// ttq: test-time quantization for LLM inference. The umbrella header: include this and use
// OnlineAWQ (TTQ), RtnOperator and StaticAwqOperator, or the pieces they are made of.
// Operators run on backend::Default, the SIMD backend for this translation unit's instruction
// set (backend/default.hpp); backend::Scalar is the reference. Run-time ISA choice is the
// compiled add-on ttq::dispatch (<ttq/backend/dispatch.hpp>), the GPU is <ttq/backend/cuda/...>.
// Architecture: docs/design.md. Numerical contract: docs/numerics.md.
#pragma once

#include "ttq/backend/contract.hpp"
#include "ttq/backend/default.hpp"
#include "ttq/backend/parallel.hpp"
#include "ttq/core/error.hpp"
#include "ttq/core/half.hpp"
#include "ttq/core/markers.hpp"
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
#include "ttq/quant/reference.hpp"
#include "ttq/residual/low_rank_residual.hpp"
#include "ttq/stats/adaptive_exponent.hpp"
#include "ttq/stats/channel_stats.hpp"
#include "ttq/stats/diag_correlation.hpp"
#include "ttq/stats/preset_scales.hpp"
#include "ttq/stats/scale_plan.hpp"
#include "ttq/stats/static_awq.hpp"
#include "ttq/stats/uniform_scales.hpp"
#include "ttq/version.hpp"
