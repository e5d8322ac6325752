"""PyTorch integration: ``TTQLinear``, an ``nn.Module`` over :class:`ttq.OnlineAWQ`, and helpers
that swap the ``nn.Linear`` layers of a model in place (docs/python.md, "PyTorch").

A ``TTQLinear`` calibrates on the prompt: the first forward after construction or after
``begin_prompt()`` (``ttq.torch.begin_prompt(model)`` for every layer) calibrates the operator
on its input, then computes with the new quantization; every later forward (decode steps)
reuses it. ``calibrate(x)`` calibrates explicitly. RTN never calibrates; static AWQ calibrates
only inside ``with ttq.torch.awq_calibration(model): ...``.

Inference only: no gradient flows through a ``TTQLinear``. Inputs may be fp32, fp16 or bf16 on
any device (a non-CPU input is copied to the CPU and the result back); the output has the
input's dtype and device, as ``nn.Linear``.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Optional, Union

import torch
from torch import nn

from . import _ttq

__all__ = ["TTQLinear", "replace_linear", "ttq_modules", "begin_prompt", "awq_calibration"]


class TTQLinear(nn.Module):
    """A linear layer ``y = x @ W.T + b`` served by a ttq operator.

    Args:
        weight: W [out_features, in_features] (copied into the operator).
        bias: optional b [out_features].
        **options: every keyword of :class:`ttq.OnlineAWQ` (bits, group, method, format,
            alpha, p, lambda_, rank, ...).
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, **options) -> None:
        super().__init__()
        weight = weight.detach()
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.method = options.get("method", "ttq")
        self.op = _ttq.OnlineAWQ(weight.cpu(), None if bias is None else bias.detach().cpu(), **options)
        self._calibrate_next = True
        self._recording = False
        # Static AWQ computes in fp32 while it records calibration inputs: it keeps W and b.
        self._fp32 = (weight.cpu().float(), None if bias is None else bias.detach().cpu().float()) if self.method == "awq" else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 4, group: int = 128, **options) -> "TTQLinear":
        """A TTQLinear with the weight and bias of ``linear`` (which is left unchanged)."""
        return cls(linear.weight, linear.bias, bits=bits, group=group, **options)

    def begin_prompt(self) -> None:
        """A new sequence starts: statistics decay or are forgotten, and the next forward calibrates."""
        self.op.begin_prompt()
        self._calibrate_next = True

    def calibrate(self, x: torch.Tensor) -> None:
        """Calibrates on x [..., in_features] now; the next forward does not calibrate again."""
        self.op.calibrate(x.detach().cpu())
        self._calibrate_next = False

    def reset(self) -> None:
        """Forgets every statistic (and static AWQ's fit); the next forward calibrates."""
        self.op.reset()
        self._calibrate_next = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xc = x.detach().cpu()
        if self._recording:  # static AWQ's calibration pass: record the input, compute in fp32
            self.op.observe(xc)
            w, b = self._fp32
            y = torch.nn.functional.linear(xc.float(), w, b)
        elif self.method == "ttq" and self._calibrate_next:
            y = self.op.prefill(xc)
            self._calibrate_next = False
        else:
            if self.method == "awq" and not self.op.frozen:
                raise _ttq.StateError(
                    "ttq: static AWQ layer used before calibration: run calibration data through the model inside "
                    "`with ttq.torch.awq_calibration(model):` first (it would run as RTN)")
            y = self.op.forward(xc)
        return y.to(device=x.device, dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, op={self.op!r}"


def ttq_modules(model: nn.Module) -> Iterator[TTQLinear]:
    """Every TTQLinear of ``model``."""
    return (m for m in model.modules() if isinstance(m, TTQLinear))


def begin_prompt(model: nn.Module) -> None:
    """Starts a new sequence on every TTQLinear of ``model``: the next forward calibrates."""
    for m in ttq_modules(model):
        m.begin_prompt()


def replace_linear(model: nn.Module, bits: int = 4, group: int = 128, *,
                   skip: Union[Iterable[str], Callable[[str, nn.Linear], bool]] = ("lm_head",),
                   **options) -> nn.Module:
    """Replaces, in place, every ``nn.Linear`` of ``model`` by a :class:`TTQLinear` with these options.

    Args:
        model: the model; modified in place and returned.
        bits, group, **options: as :class:`ttq.OnlineAWQ`.
        skip: linear layers to keep in full precision: names (a layer is skipped when its
            qualified name or its last component is listed; default: ``lm_head``), or a
            predicate ``skip(name, linear) -> bool``.
    """
    if callable(skip):
        should_skip = skip
    else:
        names = set(skip)
        should_skip = lambda name, _: name in names or name.rsplit(".", 1)[-1] in names  # noqa: E731
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and not should_skip(name, m)]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, TTQLinear.from_linear(linear, bits=bits, group=group, **options))
    return model


@contextlib.contextmanager
def awq_calibration(model: nn.Module):
    """Static AWQ's offline calibration: inside the block every static-AWQ TTQLinear of ``model``
    records its inputs and computes in fp32; on leaving, each fits and freezes its scales."""
    layers = [m for m in ttq_modules(model) if m.method == "awq"]
    for m in layers:
        m.op.reset()
        m._recording = True
    try:
        yield model
    finally:
        for m in layers:
            m._recording = False
    for m in layers:
        if m.op.tokens <= 0:
            raise _ttq.StateError("ttq: static AWQ: a layer saw no calibration token; it would run as RTN")
        m.op.requantize()
