"""What every benchmark shares: the device/dtype arguments, syncing, and naming the device."""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from rest_core import DTYPES


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="rest-demo")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    return p


def speech_buzz(seconds: float, rate: int) -> np.ndarray:
    """A voiced buzz with a syllable rhythm, float32 mono: speech-like enough for the speech path, no tool needed."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sign(np.sin(2 * np.pi * 140 * t)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * 0.2).astype(np.float32)


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 0.5) -> float:
    """Best measured FLOP/s of a square matmul in this dtype, about `seconds` per size, the right operand in either
    layout. Both layouts, because where bfloat16 is emulated (a CPU without native bfloat16 instructions) a
    row-major right operand runs 5-15x slower than `nn.Linear`'s transposed one; and a layout moves to the next size
    (8x the work) only while one product stays quick, because a 2048-square one there takes a minute."""
    sizes = (4096, 8192) if device.type == "cuda" else (512, 1024, 2048)
    best, layouts = 0.0, {"row-major", "transposed"}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for layout in sorted(layouts):
            right = b if layout == "row-major" else b.t()
            a @ right  # warm-up: library initialisation, kernel selection
            sync(device)
            start = time.perf_counter()
            a @ right
            sync(device)
            once = time.perf_counter() - start
            reps = max(1, min(20, int(seconds / once)))
            start = time.perf_counter()
            for _ in range(reps):
                a @ right
            sync(device)
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
            if once * 8 > seconds:
                layouts.discard(layout)
        if not layouts:
            break
    return best


# torch.compile modes a benchmark can compare: "reduce-overhead" adds CUDA graphs on a GPU, where a chunk step of
# fixed shapes replays one recorded launch sequence instead of paying Python and launch overhead per kernel.
COMPILE_MODES = ("default", "reduce-overhead")


def add_compile_flag(p: argparse.ArgumentParser):
    p.add_argument("--compile", nargs="?", const="default", default=None, choices=COMPILE_MODES,
                   help="compile the DiT's blocks first (torch.compile; the mode defaults to 'default')")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def header(bench: str, args, device: torch.device) -> dict:
    """The fields every benchmark's JSON line starts with: what ran, where, in which dtype."""
    return {"bench": bench, "preset": args.preset, "device": device_name(device), "threads": torch.get_num_threads(),
            "dtype": args.dtype, "compiled": getattr(args, "compile", None) or False}
