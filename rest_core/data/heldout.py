"""Held-out clips with their ground truth: a synthetic clip (mp4) and its sidecar (json) read back, cropped as the
training clips were, for the evaluation and for the mouth expert's validation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..media import read_audio
from .prepare import CROPS, crop_resize, crop_square, find_videos, read_frames_25fps, sidecar_mouth_state


@dataclass
class HeldOutClip:
    name: str
    frames: torch.Tensor  # [T, R, R, 3] float in [0, 1], cropped ground truth
    audio: torch.Tensor  # [channels, samples]
    rate: int
    mouth_open: np.ndarray  # [T] the corpus' true openness
    mouth_box: list[float]  # [x0, y0, x1, y1] in the cropped frames' pixels: where the expert reads the mouth
    family: str = ""  # the drawing style family of a synthetic clip
    mouth_state: np.ndarray | None = None  # [T, 2] opening and width per frame (MOUTH_STATE), if the sidecar has them


def load_clip(path: Path, resolution: int, crop: str = CROPS[0]) -> HeldOutClip:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise ValueError(f"{path}: no {sidecar.name} beside it; eval needs the synthetic corpus' ground truth "
                         f"(python -m rest_core synth)")
    truth = json.loads(sidecar.read_text())
    if "mouth_box" not in truth:
        raise ValueError(f"{sidecar}: no mouth_box; this corpus predates the mouth expert, render it again with "
                         f"python -m rest_core synth")
    frames = read_frames_25fps(path)
    square = crop_square(path, *frames.shape[1:3], crop)
    pixels = crop_resize(frames, square, resolution)
    audio, rate = read_audio(path)
    count = min(len(pixels), len(truth["mouth_open"]))
    box = square.map(truth["mouth_box"], resolution)
    return HeldOutClip(path.stem, torch.from_numpy(pixels[:count]).float() / 255, audio, rate,
                       np.asarray(truth["mouth_open"][:count]), box, truth["identity"]["style"]["family"],
                       sidecar_mouth_state(path, count, truth))


def clips_in(folder, resolution: int, crop: str, limit: int | None = None) -> list[HeldOutClip]:
    """The first `limit` clips of a folder (none for no folder)."""
    return [load_clip(p, resolution, crop) for p in find_videos(folder)[:limit]] if folder else []
