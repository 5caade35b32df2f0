"""Input checks shared by every entry point: a bad tensor gets a ValueError naming the argument and the shape
it should have, never a shape error from deep inside the model."""

from __future__ import annotations

import math
import numbers

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


def expect_number(name: str, value, low: float | None = None) -> float:
    """A finite real number (NaN and Inf pass range checks, so they are refused here), at least `low`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name}: expected a number >= {low:g}, got {value!r}")
    return float(value)


def expect_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return value


def as_tensor(name: str, x, layout: str) -> Tensor:
    """Tensors pass through; arrays and nested lists become tensors; anything else is a ValueError."""
    if isinstance(x, Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{name}: expected a tensor or array {layout}, got {type(x).__name__}") from e


def unbatch(name: str, x: Tensor, batch_dims: int, hint: str) -> Tensor:
    """Drop a leading batch of one from an x of `batch_dims` dims; a larger batch is a ValueError with `hint`."""
    if x.dim() != batch_dims:
        return x
    if x.shape[0] != 1:
        raise ValueError(f"{name}: a batch of {x.shape[0]}; {hint}")
    return x[0]
