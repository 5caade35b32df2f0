"""The mouth-opening expert: a small CNN that reads how far a mouth is open from a crop of the mouth region.

It is to our evaluation what SyncNet is to the paper's: lip-sync is measured by the correlation between what the
expert reads off generated frames and the true mouth opening under the speech. It reads a frame's mouth *against
the portrait's*: its input is the crop of the portrait (the reference, as the generator had it) beside the crop of
the frame, and its output is how much more open the frame's mouth is. Seeing the identity's own mouth at rest is
what lets it read a style it was never trained on: a closed mouth looks like the portrait, whatever the palette or
the drawing. It never looks at a colour rule: both crops are normalised by the reference's per-channel mean and
spread, and training shows it every palette and drawing style of the corpus under blur, compression, noise, colour
shuffles and small misplacements of the box. It is validated on the held-out style families
(`rest_core.train.expert`), and ships beside this file (`mouth_expert.safetensors`) so anyone can re-run `eval`.

The mouth box is a square in frame pixels around the mouth at rest (the corpus' sidecars carry one, `mouth_box`;
0.8 head units), fixed for a clip: the head may move inside it, as generated heads do.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import load_tensors, read_safetensors

CROP = 48  # pixels per side of the crop the expert reads
# beside this file, not in models/: the plugin offers every file there as a checkpoint
SHIPPED = Path(__file__).with_suffix(".safetensors")
PART = "mouth_expert"


@dataclass(frozen=True)
class ExpertConfig:
    widths: tuple[int, ...] = (24, 48, 96, 128)
    name: str = "mouth-expert"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ExpertConfig":
        d = json.loads(text)
        return cls(widths=tuple(d["widths"]), name=d.get("name", "mouth-expert"))


def normalise(reference: Tensor, crops: Tensor) -> Tensor:
    """Both crops minus the reference's per-channel mean, over the reference's spread: palette and brightness
    drop out, the difference between the two stays.  [N, 3, S, S] x2 -> [N, 6, S, S]"""
    mean = reference.mean(dim=(2, 3), keepdim=True)
    spread = (reference - mean).flatten(1).std(dim=1).clamp_min(0.02)[:, None, None, None]
    return torch.cat([reference - mean, crops - mean], dim=1) / spread


class MouthExpert(nn.Module):
    def __init__(self, config: ExpertConfig = ExpertConfig()):
        super().__init__()
        self.config = config
        layers, width = [], 6
        for out in config.widths:  # each stage halves the crop: 48 -> 24 -> 12 -> 6 -> 3
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.GELU(), nn.Conv2d(out, out, 3, stride=2, padding=1),
                       nn.GroupNorm(8, out), nn.GELU()]
            width = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * 9, 64), nn.GELU(), nn.Linear(64, 1))

    def forward(self, reference: Tensor, crops: Tensor) -> Tensor:
        """[N, 3, CROP, CROP] x2, float in [0, 1] -> [N]: how much more open the crop's mouth is than the
        reference's (the corpus' opening scale: 0 shut .. 1 widest)"""
        return self.head(self.features(normalise(reference, crops))).squeeze(1)


def mouth_crops(frames: Tensor, box, size: int = CROP) -> Tensor:
    """The box [x0, y0, x1, y1] (frame pixels, may be fractional or reach past the edge) of every frame, resampled
    to size x size with antialiasing.  [T, H, W, 3] float in [0, 1] -> [T, 3, size, size]"""
    frames = torch.as_tensor(frames)
    if frames.dtype == torch.uint8:
        frames = frames.float() / 255
    x = frames.permute(0, 3, 1, 2).float()
    _, _, h, w = x.shape
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0)
    if side <= 1:
        raise ValueError(f"mouth box {list(box)} is empty")
    # blur to the crop's scale first (a box filter as wide as one output pixel), then sample the grid
    factor = side / size
    if factor > 1.5:
        k = int(round(factor)) | 1
        x = F.avg_pool2d(F.pad(x, (k // 2,) * 4, mode="replicate"), k, stride=1)
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    steps = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5  # pixel centres across the box
    gx = (centre_x + steps * side) / w * 2 - 1
    gy = (centre_y + steps * side) / h * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)  # [size, size, 2] as (x, y)
    return F.grid_sample(x, grid[None].expand(len(x), -1, -1, -1), mode="bilinear", padding_mode="border",
                         align_corners=False)


@torch.no_grad()
def read_openness(expert: MouthExpert, frames, box, portrait, batch: int = 256) -> np.ndarray:
    """How much more open the mouth is in every frame than in the portrait, as the expert reads it:
    frames [T, H, W, 3], portrait [H, W, 3] (the same framing) -> [T]."""
    frames = torch.as_tensor(frames)
    reference = mouth_crops(torch.as_tensor(portrait)[None], box)
    out = []
    for i in range(0, len(frames), batch):
        crops = mouth_crops(frames[i:i + batch], box)
        out.append(expert(reference.expand(len(crops), -1, -1, -1), crops))
    return torch.cat(out).numpy().astype(np.float64)


def load_expert(path: str | Path | None = None) -> MouthExpert:
    """The expert from a part file written by `train expert` (default: the shipped one)."""
    path = Path(path) if path is not None else SHIPPED
    if not path.is_file():
        raise ValueError(f"{path} not found: the mouth expert ships beside rest_core/eval/mouth_expert.py (or train "
                         f"one: python -m rest_core train expert --config configs/mouth-expert.toml "
                         f"--data runs/expert-data --out runs/expert)")
    def expert_config(metadata: dict[str, str]) -> ExpertConfig:
        if metadata.get("part") != PART:
            raise ValueError(f"{path}: not a mouth expert (part {metadata.get('part')!r})")
        return ExpertConfig.from_json(metadata["config"])

    tensors, config = read_safetensors(path, "mouth expert", expert_config)
    expert = MouthExpert(config)
    load_tensors(expert, PART, tensors, path)
    return expert.eval()
