// QuantConfig: the runtime description of a groupwise quantization (bits, resolved group size,
// format, clip ratio) that kernels take. `Quantizer<Bits, Group, Format>` produces one for a
// given row length; backends never see the template parameters.
#pragma once

#include <string>

#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/format.hpp"

namespace ttq {

struct QuantConfig {
  int bits = 4;
  Index group = 128;  ///< resolved: 1 <= group <= d_in
  FormatKind format = FormatKind::awq_asymmetric;
  float clip = 1.0f;  ///< range shrink ratio c in (0, 1] (paper Eq. 27-28); 1 is plain RTN

  /// Throws RangeError unless the config is valid for rows of `d_in` elements.
  void validate(Index d_in) const {
    const bool bits_ok = visit_format(format, [&](auto f) { return decltype(f)::supports_bits(bits); });
    detail::require_range(bits_ok, "bits", std::string("a bit width supported by format '") + format_name(format) + "'",
                          std::to_string(bits));
    detail::require_range(group >= 1 && group <= d_in, "group", "1 <= group <= d_in = " + std::to_string(d_in),
                          std::to_string(group));
    detail::require_range(clip > 0.0f && clip <= 1.0f, "clip", "a ratio in (0, 1]", std::to_string(clip));
  }
};

}  // namespace ttq
