"""The pictures made from the shipped model: the README's picture, the plugin's icon and the template browser's
thumbnails. Remake them whenever the shipped model changes:

    python scripts/pictures.py

- docs/images/portraits.jpg: portraits the model never trained on, each followed by frames of the talking head it
  makes from them. Rows: the first frame of a clip of a held-out drawing style (one the training generator never
  draws), the public-domain astronaut photograph cut to its portrait square as the evaluation cuts it, and the same
  photograph with its mouth given (its mouth box, as a user paints it into REST Reference Encoder's `mouth_mask`).
  All speak the held-out clip's own sentence (espeak-ng); the frames shown are those where that sentence's true mouth
  is most open and most shut, in time order, so the picture shows whether the mouth follows the speech as well as
  whether the look is kept.
- docs/images/icon.png: the photograph talking, its mouth given, square (the registry's icon).
- workflows/<workflow>.jpg: one thumbnail per workflow in the template browser: talking_head the drawn portrait
  talking, long_audio the photograph talking pasted back into the whole photograph, ablation full / no ID sink /
  no context cache side by side at the end of the clip, live_session four chunks of the photograph's stream.
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
from rest_core.eval.evaluate import photo_square  # noqa: E402
from rest_core.media import to_uint8  # noqa: E402
from rest_core.pipeline import RESTPipeline  # noqa: E402
from rest_core.reference import paste_back  # noqa: E402

SEED = 4_000_000  # the first held-out family seed the evaluation uses (scripts/train-demo.sh)
SECONDS = 4.0
TILE = 192  # pixels per side of each picture in the README's sheet
FRAMES_SHOWN = 6  # after the portrait: half the most open moments, half the most shut
THUMBNAIL = 384  # pixels per side of a template thumbnail
ICON = 256


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


def resized(frame: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((side, side), Image.LANCZOS))


def white(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 255, np.uint8)


def save(array: np.ndarray, path: Path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **({"quality": 88} if path.suffix == ".jpg" else {}))
    print(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "models" / "rest-demo.safetensors")
    p.add_argument("--family", default="duotone", help="the held-out drawing style of the drawn portrait")
    p.add_argument("--photo", default="astronaut", choices=sorted(PORTRAITS))
    p.add_argument("--out", type=Path, default=ROOT, help="the repository the pictures go into")
    args = p.parse_args()

    torch.manual_seed(0)
    pipe = RESTPipeline.from_pretrained(args.model)
    size = pipe.config.resolution
    clip = render_clip(SEED, SECONDS, size, looks=args.family)
    square = photo_square(args.photo)
    photo_portrait = crop_resize(np.array(photo(args.photo)[None]), square, size)[0]
    openness = np.asarray(clip.truth["mouth_open"], dtype=np.float64)[1:]  # generated frame t is clip frame t + 1
    picks = shown_frames(openness, FRAMES_SHOWN)
    widest = int(np.argmax(openness))
    audio = torch.from_numpy(clip.audio[round(clip.sample_rate / FPS):])  # the speech after the portrait's frame

    def talk(portrait: np.ndarray, mouth: list[float] | None = None, **changes) -> torch.Tensor:
        image = torch.from_numpy(portrait).float()[None] / 255  # [1, H, W, 3]
        return pipe.generate(image, audio, clip.sample_rate, options=pipe.options(seed=0, **changes), mouth=mouth)

    drawn, photographed = talk(clip.frames[0]), talk(photo_portrait)
    mouth_given = talk(photo_portrait, mouth=square.map(PORTRAITS[args.photo].mouth_box, size))

    rows = []
    for portrait, frames in ((clip.frames[0], drawn), (photo_portrait, photographed), (photo_portrait, mouth_given)):
        made = to_uint8(frames[picks]).numpy()
        rows.append(np.concatenate([resized(portrait, TILE), white(TILE, TILE // 12)]
                                   + [resized(f, TILE) for f in made], axis=1))
    gap = white(TILE // 12, rows[0].shape[1])
    save(np.concatenate([rows[0], gap, rows[1], gap, rows[2]]), args.out / "docs" / "images" / "portraits.jpg")
    save(resized(to_uint8(mouth_given[widest]).numpy(), ICON), args.out / "docs" / "images" / "icon.png")

    thumbnails = args.out / "workflows"
    save(resized(to_uint8(drawn[widest]).numpy(), THUMBNAIL), thumbnails / "talking_head.jpg")
    whole = torch.from_numpy(np.array(photo(args.photo))).float() / 255  # [H, W, 3]
    pasted = paste_back(photographed[widest:widest + 1], whole, square, feather=16)[0]
    save(resized(to_uint8(pasted).numpy(), THUMBNAIL), thumbnails / "long_audio.jpg")
    last = len(drawn) - 1
    variants = [drawn[last], talk(clip.frames[0], id_sink=False)[last], talk(clip.frames[0], context_cache=False)[last]]
    third = THUMBNAIL // 3
    strip = np.concatenate([resized(to_uint8(v).numpy(), third) for v in variants], axis=1)
    save(np.concatenate([white((THUMBNAIL - third) // 2, strip.shape[1]), strip,
                         white(THUMBNAIL - third - (THUMBNAIL - third) // 2, strip.shape[1])]),
         thumbnails / "ablation.jpg")
    half = THUMBNAIL // 2
    chunk = pipe.config.frames_per_chunk
    quarters = [resized(to_uint8(photographed[min(k * chunk + widest % chunk, last)]).numpy(), half)
                for k in range(4)]
    save(np.concatenate([np.concatenate(quarters[:2], axis=1), np.concatenate(quarters[2:], axis=1)]),
         thumbnails / "live_session.jpg")
    print("README frames", [i + 1 for i in picks])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
