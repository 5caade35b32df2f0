"""What every benchmark shares: the device/dtype arguments, syncing, and naming the device."""

from __future__ import annotations

import argparse
import platform
import time

import torch

from rest_core import DTYPES



def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="rest-demo")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    return p


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Best measured FLOP/s of a square matmul in this dtype."""
    sizes = (8192, 4096) if device.type == "cuda" else (1024, 2048)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        sync(device)
        reps = 20 if device.type == "cuda" else 5
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def compile_blocks(dit):
    """torch.compile each DiT block in place (the first chunks pay for the compilation: read the steady state)."""
    for block in dit.transformer_blocks:
        block.compile()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def header(bench: str, args, device: torch.device) -> dict:
    """The fields every benchmark's JSON line starts with: what ran, where, in which dtype."""
    return {"bench": bench, "preset": args.preset, "device": device_name(device), "threads": torch.get_num_threads(),
            "dtype": args.dtype, "compiled": bool(getattr(args, "compile", False))}
