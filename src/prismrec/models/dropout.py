"""Dropout with a cheaper random-number draw on CPU.

On CPU, ``torch.nn.Dropout`` draws one Bernoulli sample per element (``bernoulli_``), which on
this project's 2-core machine took 27-30% of a SASRec/PRISM training step with the BCE loss
(docs/benchmarks.md, "Training cost"). :class:`Dropout` draws 64 random bits per 4 elements
instead: ``random_()`` on int64 fills 63 uniform bits, so each of the four 16-bit words carries at
least 15 uniform bits, and an element is dropped when its 15-bit value is below
``round(p * 2**15)``. The drop probability is therefore ``p`` rounded to a multiple of 2**-15
(exact for 0.5 or 0.25; 0.1 becomes 0.100006), and kept elements are scaled by one over the
keep probability actually used, so the expected output equals the input, as with ``nn.Dropout``.
Draws come from the global torch generator, so runs stay reproducible from ``torch.manual_seed``.
On other devices (CUDA) it is exactly ``torch.nn.functional.dropout``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_BITS = 15
_LEVELS = 1 << _BITS


def quantised_drop_probability(p: float) -> float:
    """The drop probability :func:`dropout` really uses on CPU for a requested ``p``."""
    return round(p * _LEVELS) / _LEVELS


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each element with probability ``p`` (quantised on CPU, see the module docstring) and
    scale the rest by one over the keep probability. Any shape; returns a new tensor (never in place)."""
    if not training or p == 0.0:
        return x
    threshold = round(p * _LEVELS)  # drop when a uniform 15-bit value is below it
    if x.device.type != "cpu" or threshold >= _LEVELS:
        return F.dropout(x, p, training=True)
    if threshold == 0:  # p below 2**-16 rounds to no dropout on CPU
        return x
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # 63 uniform bits per word
    u15 = words.view(torch.int16)[:n].bitwise_and(_LEVELS - 1)  # (n,) uniform in [0, 2**15)
    keep = u15.ge(threshold).view(x.shape)
    return x * keep.to(x.dtype).mul_(_LEVELS / (_LEVELS - threshold))


class Dropout(nn.Dropout):
    """Drop-in ``nn.Dropout`` that uses :func:`dropout` (cheaper on CPU, identical on CUDA)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
