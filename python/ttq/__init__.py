"""ttq: test-time quantization of LLM linear layers, from numpy and PyTorch.

Thin bindings of the ttq C++ library (the same headers and kernels as the C++ API and the CLI
tools; the instruction set is chosen at run time). Quick start and rules: docs/python.md.

    import numpy as np, ttq
    w = np.random.randn(256, 512).astype(np.float32)      # an nn.Linear weight [d_out, d_in]
    layer = ttq.OnlineAWQ(w, bits=4, group=128)           # TTQ, exponent chosen per prompt
    y = layer.prefill(prompt)                              # calibrate on the prompt, then forward
    y_next = layer.decode(x_next)                          # decode steps reuse the quantization

``ttq.torch`` (imported explicitly) has ``TTQLinear``, an ``nn.Module`` over ``OnlineAWQ``.
"""

from ._ttq import (
    Error,
    NonFiniteError,
    OnlineAWQ,
    QuantizedMatrix,
    RangeError,
    ShapeError,
    StateError,
    __version__,
    best_isa,
    compiled_isas,
    cpu_supports,
    isa,
    num_threads,
    quantize,
    quantize_dequantize,
    set_isa,
    set_num_threads,
)

# The exceptions are defined in ttq._ttq; they are ttq's: tracebacks say ttq.NonFiniteError.
for _error in (Error, ShapeError, RangeError, NonFiniteError, StateError):
    _error.__module__ = "ttq"
del _error

__all__ = [
    "Error",
    "NonFiniteError",
    "OnlineAWQ",
    "QuantizedMatrix",
    "RangeError",
    "ShapeError",
    "StateError",
    "__version__",
    "best_isa",
    "compiled_isas",
    "cpu_supports",
    "isa",
    "num_threads",
    "quantize",
    "quantize_dequantize",
    "set_isa",
    "set_num_threads",
]
