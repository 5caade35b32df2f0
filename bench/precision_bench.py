"""How close a reduced dtype's frames are to float32's: the same portrait, speech and seed through RESTPipeline in
float32 and in `--dtype`, compared frame by frame.

    python bench/precision_bench.py                                   # CPU, the shipped demo model, bfloat16
    python bench/precision_bench.py --device cuda --seconds 30

The portrait is a speaker the demo model's training generator never drew (a still, mouth shut); the speech a voiced
buzz with a syllable rhythm, so no tool is needed. Prints one JSON line: the PSNR of the dtype's frames against
float32's (mean, lowest frame, and per chunk, which says whether the difference grows along the stream through the
context cache), the largest pixel difference, how well each dtype keeps the portrait's look (appearance fidelity,
rest_core.eval.metrics), the seconds each run took, and whether every frame clears `rest_core.precision.MIN_PSNR_DB`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import device_name, speech_buzz, sync  # noqa: E402

from rest_core import DTYPES, RESTPipeline  # noqa: E402
from rest_core.eval import metrics  # noqa: E402
from rest_core.data.synth import render_portrait  # noqa: E402
from rest_core.precision import MIN_PSNR_DB  # noqa: E402

DEMO_MODEL = ROOT / "models" / "rest-demo.safetensors"
PORTRAIT_SEED = 3_000_001  # the demo model was trained on seeds below 1,000,000
RATE = 16_000


def generated(pipe: RESTPipeline, portrait: torch.Tensor, audio: torch.Tensor, device) -> tuple[torch.Tensor, float]:
    """(frames [T, H, W, 3] in [0, 1] on the CPU, seconds it took)"""
    sync(device)
    start = time.perf_counter()
    frames = pipe.generate(portrait, audio, RATE, options=pipe.options(seed=0))
    sync(device)
    return frames.float().cpu(), time.perf_counter() - start


def compare(checkpoint: Path, dtype: torch.dtype, device, seconds: float) -> dict:
    """Frames of `checkpoint` in float32 and in `dtype` on `device`, and how far apart they are."""
    loaded = {name: RESTPipeline.from_pretrained(checkpoint, device=device, dtype=DTYPES[name])
              for name in ("float32", str(dtype).removeprefix("torch."))}
    config = next(iter(loaded.values())).config
    picture, mouth_box = render_portrait(PORTRAIT_SEED, size=config.resolution)
    portrait = torch.from_numpy(picture).float() / 255  # [R, R, 3]: already the model's square
    audio = torch.from_numpy(speech_buzz(seconds, RATE))[None]
    frames, spent = {}, {}
    for name, pipe in loaded.items():
        frames[name], spent[name] = generated(pipe, portrait, audio, device)
    reference, reduced = frames["float32"], frames[str(dtype).removeprefix("torch.")]
    psnr = metrics.frame_psnr(reduced, reference)  # [T]
    return {
        "frames": len(psnr),
        "psnr_db_mean": round(float(psnr.mean()), 2),
        "psnr_db_min": round(float(psnr.min()), 2),
        "psnr_db_per_chunk": [round(float(p.mean()), 2) for p in psnr.split(config.frames_per_chunk)],
        "max_abs_difference": round(float((reduced - reference).abs().max()), 4),
        "fidelity_db": {name: round(float(metrics.appearance_fidelity(f, portrait, mouth_box).mean()), 2)
                        for name, f in frames.items()},
        "seconds": {name: round(s, 2) for name, s in spent.items()},
        "min_psnr_db": MIN_PSNR_DB,
        "pass": bool(psnr.min() >= MIN_PSNR_DB),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=DEMO_MODEL)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="bfloat16", choices=sorted(set(DTYPES) - {"float32"}))
    p.add_argument("--seconds", type=float, default=8.0, help="length of the speech")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = {"bench": "precision", "checkpoint": args.checkpoint.name, "device": device_name(device),
              "threads": torch.get_num_threads(), "dtype": args.dtype, "against": "float32", "audio_s": args.seconds,
              **compare(args.checkpoint, DTYPES[args.dtype], device, args.seconds), "torch": torch.__version__}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
