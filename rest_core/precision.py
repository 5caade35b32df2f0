"""Where a model runs (`resolve_device`) and which dtype it runs fastest in on this CPU.

bfloat16 pays on a CPU only where it has native bfloat16 matrix instructions (AMX-BF16 or AVX512-BF16). Elsewhere
torch emulates it, and the rest-demo DiT's matmuls run several times slower than in float32 (an AVX2-only AMD EPYC
measured 8 GFLOP/s against 61 for a [384, 256] x [256, 256] linear). Even with the instructions, small matmuls can
lose to float32, so the choice is measured, once per process, on a matmul of the DiT's shape.

Where oneDNN has no kernels for a reduced dtype on this CPU (it needs AVX-512 or AMX extensions, or AVX-NE-CONVERT,
for them) the VAE's convolutions fall back to torch's unblocked ones: on an AVX2-only CPU the demo model ran 70x
slower in bfloat16 and 60x in float16 than in float32 (`bench/precision_bench.py`), so whoever picks such a dtype is
told (`emulated_dtype_warning`).
"""

from __future__ import annotations

import functools
import time

import torch
import torch.nn.functional as F

# How much faster bfloat16 must be to be chosen: below this, float32's exactness is worth more.
BFLOAT16_MIN_SPEEDUP = 1.2

# A reduced dtype's frames count as float32's when every frame's PSNR against float32's (the same portrait, speech
# and seed) is at least this: an RMS difference of 1% of the range, which the eye does not tell apart.
MIN_PSNR_DB = 40.0


def cpu_has_native_bfloat16() -> bool:
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def onednn_runs(dtype: torch.dtype) -> bool:
    """Whether oneDNN takes `dtype`'s convolutions and matmuls on this CPU (float32 always). Where it does not, torch
    falls back to its own unblocked kernels: a reduced dtype is then tens of times slower than float32."""
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if dtype == torch.float16:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    return True


def emulated_dtype_warning(dtype: torch.dtype, device) -> str | None:
    """What to tell someone who runs a model in a dtype this CPU only emulates; None where that is not so."""
    if torch.device(device).type != "cpu" or onednn_runs(dtype):
        return None
    name = str(dtype).removeprefix("torch.")
    return (f"{name} on this CPU is emulated (oneDNN has no {name} kernels for it), so the model runs tens of times "
            f"slower than in float32; choose dtype auto or float32")


def linear_seconds(dtype: torch.dtype, rows: int = 384, width: int = 256, repeats: int = 20) -> float:
    """Best time of one [rows, width] x [width, width] linear in `dtype` on the CPU."""
    x, w = torch.randn(rows, width, dtype=dtype), torch.randn(width, width, dtype=dtype)
    F.linear(x, w)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        F.linear(x, w)
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def fastest_cpu_dtype() -> torch.dtype:
    """bfloat16 where this CPU has native bfloat16 matmuls and they are measured BFLOAT16_MIN_SPEEDUP times faster
    than float32's, float32 otherwise."""
    if not cpu_has_native_bfloat16():
        return torch.float32
    speedup = linear_seconds(torch.float32) / linear_seconds(torch.bfloat16)
    return torch.bfloat16 if speedup >= BFLOAT16_MIN_SPEEDUP else torch.float32


def resolve_device(device: str) -> str:
    """--device auto -> cuda when a GPU is visible, else cpu; cuda without one is refused."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible; use --device cpu")
    return device
