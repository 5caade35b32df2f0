"""How the context's noise level changes a model's long streams: `eval`'s measures, one row per value and clip.

A finished chunk enters the context cache by one pass over the chunk put back to the noise level `context_noise`
(rest_core/sampling.py). This streams every long clip of each held-out style family and the photographs once per
value, with the model's other options at seed 0, and prints fidelity, lip-sync, seams and drift as `eval` measures
them, then each family's means (the rows `eval --families` would give for that value).

    python scripts/context_noise.py --checkpoint models/rest-demo.safetensors \
        --families runs/demo/corpus/families-60s --photos astronaut camera --values 0 0.03 0.05
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rest_core.checkpoint import DTYPES
from rest_core.config import FPS
from rest_core.data.heldout import clips_in
from rest_core.eval.evaluate import mean_rows, measure, photo_clip, streamed
from rest_core.eval.mouth_expert import load_expert
from rest_core.pipeline import RESTPipeline

MEASURES = ("fidelity", "lipsync", "seam", "drift")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--families", required=True, help="a folder of held-out style families' long clips")
    p.add_argument("--photos", nargs="*", default=[], help="photographs of rest_core.data.images to add")
    p.add_argument("--values", nargs="+", type=float, required=True, help="context_noise values to compare")
    p.add_argument("--seconds", type=float, default=59.84,
                   help="stream length, at most the clips' own (59.84 s: the 1496 frames eval streams of 60 s clips)")
    p.add_argument("--clips", type=int, default=2, help="clips per family")
    p.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    args = p.parse_args(argv)

    pipe = RESTPipeline.from_pretrained(args.checkpoint, dtype=DTYPES[args.dtype])
    size, chunk_frames = pipe.config.resolution, pipe.config.frames_per_chunk
    frames = round(args.seconds * FPS)
    expert = load_expert()
    clips = [(f"{family.name}{k}", family.name, clip)
             for family in sorted(Path(args.families).iterdir()) if family.is_dir()
             for k, clip in enumerate(clips_in(family, size, "full", args.clips))]
    if not clips:
        raise SystemExit(f"{args.families}: no family folders with clips")
    clips += [(name, name, photo_clip(name, clips[0][2], size)) for name in args.photos]

    print("| context_noise | clip | " + " | ".join(MEASURES) + " |\n|---|---|" + "---|" * len(MEASURES))
    for value in args.values:
        rows: dict[str, list[dict]] = {}
        for name, group, clip in clips:
            start = time.time()
            row = measure(streamed(pipe, clip, frames, context_noise=value), clip, chunk_frames, expert,
                          drift_seconds=10.0)
            rows.setdefault(group, []).append(row)
            print(f"| {value:g} | {name} | " + " | ".join(f"{row[m]:.3f}" for m in MEASURES)
                  + f" |  <!-- {time.time() - start:.0f} s -->", flush=True)
        for group, mean in ((g, mean_rows(r)) for g, r in rows.items() if len(r) > 1):
            print(f"| {value:g} | **{group}, mean** | " + " | ".join(f"{mean[m]:.3f}" for m in MEASURES) + " |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
