"""The README's picture: portraits the model never trained on, each followed by frames of the talking head the
shipped model makes from it. Remake it whenever the shipped model changes:

    python scripts/readme_picture.py            (writes docs/images/portraits.jpg)

Rows: the first frame of a clip of a held-out drawing style (one the training generator never draws), and the
public-domain astronaut photograph cut to its portrait square as the evaluation cuts it. Both speak the held-out
clip's own sentence (espeak-ng); the frames shown are those where that sentence's true mouth is most open and most
shut, in time order, so the picture shows whether the mouth follows the speech as well as whether the look is kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rest_core.config import FPS  # noqa: E402
from rest_core.data.images import PORTRAITS, photo  # noqa: E402
from rest_core.data.prepare import crop_resize  # noqa: E402
from rest_core.data.synth import render_clip  # noqa: E402
from rest_core.eval import photo_square  # noqa: E402
from rest_core.media import to_uint8  # noqa: E402
from rest_core.pipeline import RESTPipeline  # noqa: E402

SEED = 4_000_000  # the first held-out family seed the evaluation uses (scripts/train-demo.sh)
SECONDS = 4.0
TILE = 192  # pixels per side of each picture in the sheet
FRAMES_SHOWN = 6  # after the portrait: half the most open moments, half the most shut


def shown_frames(openness: np.ndarray, count: int) -> list[int]:
    """Frame indices, in time order: the count // 2 frames with the widest true opening and as many with the
    narrowest, at least half a second apart within each half so the row spans the sentence."""
    gap = FPS // 2
    picks: list[int] = []
    for order in (np.argsort(-openness, kind="stable"), np.argsort(openness, kind="stable")):
        chosen: list[int] = []
        for i in order:
            if len(chosen) == count // 2:
                break
            if all(abs(int(i) - j) >= gap for j in chosen + picks):
                chosen.append(int(i))
        picks += chosen
    return sorted(picks)


def tile(frame: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((TILE, TILE), Image.LANCZOS))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "models" / "rest-demo.safetensors")
    p.add_argument("--family", default="halftone", help="the held-out drawing style of the first row")
    p.add_argument("--photo", default="astronaut", choices=sorted(PORTRAITS))
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "portraits.jpg")
    args = p.parse_args()
    from PIL import Image

    torch.manual_seed(0)
    pipe = RESTPipeline.from_pretrained(args.model)
    size = pipe.config.resolution
    clip = render_clip(SEED, SECONDS, size, looks=args.family)
    square = crop_resize(np.array(photo(args.photo)[None]), photo_square(args.photo), size)[0]
    openness = np.asarray(clip.truth["mouth_open"], dtype=np.float64)
    picks = shown_frames(openness[1:], FRAMES_SHOWN)  # generated frame t stands for clip frame t + 1
    audio = torch.from_numpy(clip.audio[round(clip.sample_rate / FPS):])  # the speech after the portrait's frame
    rows = []
    for portrait in (clip.frames[0], square):
        image = torch.from_numpy(portrait).float()[None] / 255  # [1, H, W, 3]
        frames = pipe.generate(image, audio, clip.sample_rate, options=pipe.options(seed=0))
        made = to_uint8(frames[picks]).numpy()
        gap = np.full((TILE, TILE // 12, 3), 255, np.uint8)  # white between the portrait and what it made
        rows.append(np.concatenate([tile(portrait), gap] + [tile(f) for f in made], axis=1))
    sheet = np.concatenate([rows[0], np.full((TILE // 12, rows[0].shape[1], 3), 255, np.uint8), rows[1]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out, quality=88)
    print(args.out, "frames", [i + 1 for i in picks])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
