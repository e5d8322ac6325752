// The baselines through the operator API: RTN and static AWQ are scale policies of the same
// OnlineAWQ operator (stats/uniform_scales.hpp, stats/static_awq.hpp), so RTN, static AWQ and
// TTQ share every line of quantization and forward code (spec "Baselines").
#pragma once

#include "ttq/backend/default.hpp"
#include "ttq/op/online_awq.hpp"
#include "ttq/residual/low_rank_residual.hpp"
#include "ttq/stats/static_awq.hpp"
#include "ttq/stats/uniform_scales.hpp"

namespace ttq {

/// RTN through the operator API: D = 1.
template <QuantizerPolicy Q, backend::Backend B = backend::Default>
using RtnOperator = OnlineAWQ<Q, UniformScales, NoResidual, B>;

/// Static AWQ through the operator API: calibrate() once on calibration data, then frozen.
template <QuantizerPolicy Q, backend::Backend B = backend::Default>
using StaticAwqOperator = OnlineAWQ<Q, StaticAwqScales, NoResidual, B>;

}  // namespace ttq
