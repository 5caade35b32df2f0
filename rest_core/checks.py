"""Input checks shared by every entry point: a bad tensor gets a ValueError naming the argument and the shape
it should have, never a shape error from deep inside the model; work whose frames the machine cannot hold is refused
before it starts, never run until memory runs out."""

from __future__ import annotations

import math
import numbers
import os

import torch
from torch import Tensor

from .checkpoint import available_memory
from .config import FPS

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


def frame_memory() -> int | None:
    """Bytes the frames of one job may take: the machine's free memory, or less where the server's operator set
    REST_MEMORY_LIMIT_GB (GiB; a server shared by several clients keeps room for the others); None: unknown."""
    free = available_memory()
    limit = os.environ.get("REST_MEMORY_LIMIT_GB")
    if limit:
        try:
            gib = float(limit)
        except ValueError:
            raise ValueError(f"REST_MEMORY_LIMIT_GB={limit!r}: give a number of GiB (e.g. 8)") from None
        free = round(gib * 2**30) if free is None else min(free, round(gib * 2**30))
    return free


def check_frames_fit(what: str, frames: int, height: int, width: int, copies: int, instead: str):
    """Refuse, before any work, `frames` float32 frames of height x width held whole `copies` times over (an IMAGE
    batch and the copies the nodes after it make) where there is less memory for them (`frame_memory`); `instead`
    says what to do."""
    need = copies * frames * height * width * 3 * 4
    free = frame_memory()
    if free is not None and need > free:
        raise ValueError(f"{what}: {frames} frames of {width}x{height} pixels ({frames / FPS / 60:.1f} minutes) held "
                         f"whole take about {need / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free here; "
                         f"{instead}")
