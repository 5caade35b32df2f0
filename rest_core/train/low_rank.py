"""Low-rank fine-tuning of the DiT (LoRA): each matrix of the transformer blocks and of the timestep MLP trains as
W + up @ down with W frozen, so the fine-tune changes it by a matrix of rank `rank` at most.

Why: the model ships in git, and a fine-tune that moves every weight stores the whole DiT again (12.7 MB of float16
for rest-demo); a rank-8 change of those matrices is 0.33 M numbers, and the export stores it as such
(`checkpoint.weight_deltas`, `export --dit-from`). The part file a run writes holds the merged weights under their
usual names, so evaluation and export read it as any DiT part."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..dit import A2VDiT


class LowRankChange(nn.Module):
    """A weight's parametrization W -> W + up @ down. `up` starts at zero, so training starts from W exactly; `down`
    at the scale of a fresh layer's weights, so the first steps move `up` at the usual rate."""

    def __init__(self, rows: int, cols: int, rank: int):
        super().__init__()
        self.down = nn.Parameter(torch.randn(rank, cols) / cols**0.5)  # [r, in]
        self.up = nn.Parameter(torch.zeros(rows, rank))  # [out, r]

    def forward(self, weight: Tensor) -> Tensor:
        return weight + (self.up @ self.down).to(weight.dtype)


def add_low_rank(dit: A2VDiT, rank: int):
    """Freeze every linear weight of the transformer blocks and of the timestep MLP and give it a trainable
    rank-`rank` change (its factors become the module's trainable parameters). Call before compiling and before the
    training loop copies the module for its EMA."""
    for part in [*dit.transformer_blocks, dit.adaln_single]:
        for linear in [m for m in part.modules() if isinstance(m, nn.Linear)]:
            rows, cols = linear.weight.shape
            if not 0 < rank < min(rows, cols):
                raise ValueError(f"rank={rank}: choose one from 1 to {min(rows, cols) - 1} (the smallest block "
                                 f"matrix is {rows}x{cols})")
            change = LowRankChange(rows, cols, rank).to(linear.weight.device)
            linear.weight.requires_grad_(False)
            parametrize.register_parametrization(linear, "weight", change)


def merge_low_rank(dit: nn.Module):
    """Fold every change into its weight, in place: a plain DiT again, its state dict under the usual names."""
    for module in [m for m in dit.modules() if parametrize.is_parametrized(m, "weight")]:
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
