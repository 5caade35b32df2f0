"""Held-out clips with their ground truth: a synthetic clip (mp4) and its sidecar (json) read back, cropped as the
training clips were, for the evaluation and for the mouth expert's validation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..media import read_audio
from .face_code import FaceTruth
from .prepare import (CROPS, crop_resize, crop_square, find_videos, head_in_square, read_frames_25fps, sidecar_head,
                      sidecar_mouth_state)


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
    head: np.ndarray | None = None  # [T, 2, 3] the head's map from head units to the cropped pixels, if known
    closure: np.ndarray | None = None  # [T] the eyes' closure, if known

    def face_truth(self, frames: int) -> FaceTruth:
        """What a coded VAE's latents say of the clip's first `frames` frames (data.face_code); a photograph (one
        frame) is held still. Without the sidecar's mouth state the code cannot be made: render the clip again."""
        if len(self.frames) == 1:
            return FaceTruth.still(self.mouth_box, frames)
        if self.mouth_state is None:
            raise ValueError(f"{self.name}: its sidecar has no mouth_open and mouth_width per frame, which a coded "
                             f"VAE needs; render the clip again with python -m rest_core synth")
        head = closure = None
        if self.head is not None:
            head, closure = torch.from_numpy(self.head[:frames]), torch.from_numpy(self.closure[:frames])
        return FaceTruth(self.mouth_box, torch.from_numpy(self.mouth_state[:frames]), head, closure)


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
    head = sidecar_head(path, count, truth)
    maps = None if head is None else head_in_square(head, square, resolution).numpy()
    closure = None if head is None else head.closure
    return HeldOutClip(path.stem, torch.from_numpy(pixels[:count]).float() / 255, audio, rate,
                       np.asarray(truth["mouth_open"][:count]), box, truth["identity"]["style"]["family"],
                       sidecar_mouth_state(path, count, truth), maps, closure)


def each_clip(folder, resolution: int, crop: str, limit: int | None = None) -> Iterator[HeldOutClip]:
    """The first `limit` clips of a folder (none for no folder), read one at a time: a 60 s clip is 1.2 GB of float
    frames, and an evaluation's dozen long clips read at once did not fit in 24 GB beside the model's work."""
    for path in find_videos(folder)[:limit] if folder else []:
        yield load_clip(path, resolution, crop)


def clips_in(folder, resolution: int, crop: str, limit: int | None = None) -> list[HeldOutClip]:
    """`each_clip`'s clips, all read"""
    return list(each_clip(folder, resolution, crop, limit))
