"""Small tensor operations shared by the models."""
from __future__ import annotations

import torch


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for an integer ``index`` of any shape: (N, ...) -> (*index.shape, ...).

    Same values and gradients as advanced indexing, through ``index_select``, whose backward
    (``index_add_``) is 3-5x faster on CPU than the accumulating ``index_put_`` that ``table[index]``
    runs backward (measured on the PRISM gathers of a Beauty batch: ~1,000 rows to ~1,500 positions).
    """
    return table.index_select(0, index.reshape(-1)).view(*index.shape, *table.shape[1:])
