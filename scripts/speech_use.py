"""Does a DiT use the speech? Its flow-matching loss on training segments with the speech and without it.

A DiT that learnt to move the mouth from the speech predicts the mouth's latents better when it hears the speech:
the loss at the mouth's latent cells is lower with it than without it (the Joint-CFG null branch). A DiT that
ignores the speech scores the same on both. Both passes see the same noise and times, so the gap is the speech's
alone. Run it on the segments a DiT trained on (`prepare latents`): it reads their clips' mouth boxes.

    python scripts/speech_use.py --data runs/demo/data --dit runs/demo/teacher/dit.safetensors [--dit other ...]

For a mouth_code VAE's latents it also scores the code's channels, which the DiT can only get from the speech.
"""

from __future__ import annotations

import argparse
import json

import torch

from rest_core.checkpoint import load_part
from rest_core.config import MOUTH_CODE_CHANNELS, VAE_SPATIAL
from rest_core.data.prepare import ClipSet, SegmentSet
from rest_core.dit import sequence_timesteps
from rest_core.train.dit import chunk_noise_times, noised_segments


def mouth_cells(box: list[float], h: int) -> tuple[slice, slice]:
    """The 3x3 latent cells around the centre of a mouth box [x0, y0, x1, y1] in frame pixels."""
    cx, cy = ((box[0] + box[2]) / 2 / VAE_SPATIAL, (box[1] + box[3]) / 2 / VAE_SPATIAL)
    x, y = (min(max(int(v) - 1, 0), h - 3) for v in (cx, cy))
    return slice(y, y + 3), slice(x, x + 3)


@torch.no_grad()
def flow_matching_errors(model, chunk_latents: int, shift: float, latents: torch.Tensor, speech: torch.Tensor,
                         cells: list[tuple[slice, slice]], g: torch.Generator, code: bool = False) -> dict[str, float]:
    """Summed flow-matching errors of a batch of segments with their speech and without it (the same noise and
    times), over all latent cells, over each segment's mouth cells and, with `code` (a mouth_code VAE's latents),
    over the mouth code's channels.
    latents: [B, C, 1 + cK, h, w]; speech: [B, cK, h_w, d_A]; cells: each segment's mouth cells (rows, columns)."""
    b, _, f, h, _ = latents.shape
    t = chunk_noise_times(b, (f - 1) // chunk_latents, shift, 0.0, 1.0, g)  # [B, K]
    zt, target = noised_segments(latents, chunk_latents, t, g)
    times = sequence_timesteps(t, chunk_latents, h)
    sums = {}
    for name, heard in (("with", speech), ("without", speech[:0])):
        err = (model.forward_sequence(zt, times, heard, chunk_latents=chunk_latents, global_attention=True)
               - target) ** 2
        sums[f"all {name}"] = err.mean().item() * b
        sums[f"mouth {name}"] = sum(err[j, :, :, ys, xs].mean().item() for j, (ys, xs) in enumerate(cells))
        if code:  # a mouth_code VAE's latents: the code channels, the same at every cell, come from the speech alone
            sums[f"code {name}"] = err[:, :MOUTH_CODE_CHANNELS].mean().item() * b
    return sums


def speech_use(dit_path: str, segments: SegmentSet, boxes: list, count: int, batch: int, seed: int) -> dict:
    model, config = load_part(dit_path, "dit")
    model.eval()
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(segments), generator=g)[:count]
    sums: dict[str, float] = {}
    for first in range(0, len(pick), batch):
        idx = pick[first:first + batch]
        latents = segments.latents[idx].float()  # [B, C, 1 + cK, h, w]
        cells = [mouth_cells(boxes[int(segments.clip[i])], latents.shape[-2]) for i in idx]
        part = flow_matching_errors(model, config.chunk_latents, config.sampler.shift, latents,
                                    segments.speech[idx].float(), cells, g, config.vae.mouth_code)
        sums = {k: sums.get(k, 0.0) + v for k, v in part.items()}
    return {k: round(v / len(pick), 4) for k, v in sums.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a data folder with clips/ and segments/")
    p.add_argument("--dit", action="append", required=True, help="a DiT part (repeat to compare)")
    p.add_argument("--segments", type=int, default=256, help="segments to score (default 256)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    segments = SegmentSet(args.data)
    boxes = [clip.get("mouth_box") for clip in ClipSet(args.data).clips]
    if any(box is None for box in boxes):
        raise SystemExit(f"{args.data}: some clips have no mouth box; this needs the synthetic corpus's sidecars")
    for path in args.dit:
        print(json.dumps({"dit": path, **speech_use(path, segments, boxes, args.segments, args.batch, args.seed)}))


if __name__ == "__main__":
    main()
