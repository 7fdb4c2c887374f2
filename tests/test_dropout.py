"""The CPU dropout (prismrec.models.dropout): right drop rate, unbiased scaling, exact gradients,
reproducible from the seed, identity when not training."""
from __future__ import annotations

import math

import pytest
import torch

from prismrec.models.dropout import Dropout, dropout, quantised_drop_probability


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_drop_rate_matches_p(p):
    torch.manual_seed(0)
    n = 400_003  # not a multiple of 4: the last word is only partly used
    y = dropout(torch.ones(n), p)
    dropped = float((y == 0).float().mean())
    q = quantised_drop_probability(p)
    assert abs(q - p) <= 2 ** -16
    assert abs(dropped - q) < 5 * math.sqrt(q * (1 - q) / n)  # 5 sigma
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - q)))  # unbiased: E[y] = x


def test_every_bit_position_is_used_uniformly():
    """Elements at each of the four offsets within a 64-bit word are dropped at the same rate
    (the top word has only 15 random bits, which is all the threshold reads)."""
    torch.manual_seed(1)
    y = dropout(torch.ones(4 * 100_000), 0.5).view(-1, 4)
    rates = (y == 0).float().mean(dim=0)
    assert torch.all((rates - 0.5).abs() < 5 * math.sqrt(0.25 / 100_000)), rates


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(2)
    x = torch.randn(37, 5, requires_grad=True)
    y = dropout(x, 0.4)
    y.sum().backward()
    mask = (y != 0).float()
    scale = 1 / (1 - quantised_drop_probability(0.4))
    torch.testing.assert_close(x.grad, mask * scale)
    torch.testing.assert_close(y, x.detach() * mask * scale)


def test_reproducible_from_the_seed_and_fresh_each_call():
    x = torch.ones(1000)
    torch.manual_seed(3)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.5), a)
    assert not torch.equal(a, b)


def test_module_is_identity_in_eval_mode_and_for_p_zero():
    x = torch.randn(8, 3)
    m = Dropout(0.5).eval()
    assert m(x) is x
    assert dropout(x, 0.0) is x
