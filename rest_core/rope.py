"""Rotary position embedding over (t, h, w), with chunk-relative time.

Time is counted in latent frames. A chunk of `c` latent frames with index k sits in a window whose geometry never
changes: the ID sink at time k*c, the previous chunk (the context) at k*c + 1 .. k*c + c, the chunk itself at
k*c + c + 1 .. k*c + 2c. Attention scores under RoPE depend only on position differences, so every chunk sees
exactly what chunk 0 sees; streaming therefore always uses k = 0, and the cost and the positions of chunk 1000 are
those of chunk 2. The full-sequence pass uses the true k of each chunk, with one copy of the sink per chunk, and
gives the same scores.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def sink_time(chunk_index: int, chunk_latents: int) -> float:
    return float(chunk_index * chunk_latents)


def chunk_times(chunk_index: int, chunk_latents: int) -> Tensor:
    """Times of the latent frames of chunk `chunk_index`; index -1 gives the context slots of chunk 0."""
    start = chunk_index * chunk_latents + chunk_latents + 1
    return torch.arange(start, start + chunk_latents, dtype=torch.float64)


def grid_positions(times: Tensor, size: int) -> Tensor:
    """(t, h, w) of every token of the given latent frames, in token order (f h w).  # [F*size*size, 3]"""
    t, h, w = torch.meshgrid(
        times.to(torch.float64), torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
        indexing="ij",
    )
    return torch.stack([t, h, w], dim=-1).reshape(-1, 3)


class RotaryTable(NamedTuple):
    """Laid out like the head dims, so rotating is two products and a sum (in bfloat16 a third of the time of
    slicing the pairs apart and stacking them again)."""

    cos: Tensor  # [N, head_dim]: each pair's cos, on both of its entries
    sin: Tensor  # [N, head_dim]: each pair's -sin on its first entry, +sin on its second


def axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """How many rotary pairs of a head go to t, h and w. Time gets the remainder so it is never starved."""
    pairs = head_dim // 2
    hw = pairs // 3
    return pairs - 2 * hw, hw, hw


def rotary_table(positions: Tensor, head_dim: int, theta: float, dtype: torch.dtype, device) -> RotaryTable:
    """cos/sin of every (token, pair) angle. Angles are built in float64 so large positions stay exact."""
    angles = []
    for axis, n in enumerate(axis_pairs(head_dim)):
        if n == 0:
            continue
        inv_freq = theta ** (-torch.arange(n, dtype=torch.float64) / n)  # [n]
        angles.append(positions[:, axis : axis + 1] * inv_freq)  # [N, n]
    angle = torch.cat(angles, dim=-1)  # [N, head_dim/2]
    cos = angle.cos().repeat_interleave(2, dim=-1)  # [N, head_dim]
    sin = torch.stack([-angle.sin(), angle.sin()], dim=-1).flatten(-2)
    return RotaryTable(cos.to(device=device, dtype=dtype), sin.to(device=device, dtype=dtype))


def apply_rope(x: Tensor, table: RotaryTable) -> Tensor:
    """Rotate adjacent pairs of the last dim: (x1, x2) -> (x1 cos - x2 sin, x1 sin + x2 cos).  x: [B, H, N, head_dim]"""
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x2, x1) in every pair
    return x * table.cos + swapped * table.sin
