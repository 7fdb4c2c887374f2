"""prismrec.models.ops.gather_rows: the same values and gradients as advanced indexing."""
from __future__ import annotations

import torch

from prismrec.models.ops import gather_rows


def test_gather_rows_matches_advanced_indexing_forward_and_backward():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(7, 3, 2, generator=g, requires_grad=True)
    index = torch.randint(0, 7, (4, 5), generator=g)  # repeated rows: gradients must accumulate
    upstream = torch.randn(4, 5, 3, 2, generator=g)
    out = gather_rows(table, index)
    assert out.shape == (4, 5, 3, 2)
    torch.testing.assert_close(out, table[index])
    (grad_new,) = torch.autograd.grad(out, table, upstream)
    (grad_ref,) = torch.autograd.grad(table[index], table, upstream)
    torch.testing.assert_close(grad_new, grad_ref)
    assert gather_rows(table, torch.tensor(2)).shape == (3, 2)  # a 0-d index gives one row
