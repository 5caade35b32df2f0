"""Input checks shared by every entry point: a bad tensor gets a ValueError naming the argument and the shape
it should have, never a shape error from deep inside the model."""

from __future__ import annotations

import torch
from torch import Tensor

Dim = tuple[str, int | None]  # (label, required size or None for any)


def describe(dims: list[Dim]) -> str:
    return "[" + ", ".join(label if size is None else f"{label}={size}" for label, size in dims) + "]"


def expect_shape(name: str, x, dims: list[Dim]) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a tensor of shape {describe(dims)}, got {type(x).__name__}")
    ok = x.dim() == len(dims) and all(size is None or n == size for n, (_, size) in zip(x.shape, dims))
    if not ok:
        raise ValueError(f"{name}: expected shape {describe(dims)}, got {list(x.shape)}")
    return x


def expect_finite(name: str, x: Tensor) -> Tensor:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values; check the upstream encoder or the input file")
    return x


def expect_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return value
