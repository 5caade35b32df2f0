"""The head's motion and the blinks: a code the data supplies, as the mouth's (`VAEConfig.pose_code`).

The reference-conditioned VAE drew every frame with the head where the portrait has it and the eyes open: its
encoder never came to code how far the head had moved (a ridge read-out of its latents gave the head's offset at
R^2 0.00), so its decode of a moving clip missed by up to 6 px (docs/TRAINING.md). As with the mouth, the data says
it instead: the synthetic corpus' sidecars give every frame's head pose and eyelid closure. After the mouth's
channels, the chunk latents carry for each frame o of a latent frame's 8:

    channels 16 + o, 24 + o,    the head's move from the portrait, as a similarity of normalised coordinates (the
             32 + o, 40 + o     frame's centre at 0, half its shorter side 1):  u' = [[a, -b], [b, a]] u + t,
                                coded POSE_SCALE x (a - 1, b, t_x, t_y); all zero where the portrait has the head
    channel  48 + o             the eyes' closure (0 open .. 1 shut), as 2 x - 1
    every cell of a channel the same value, as the mouth's

The decoder reads each frame's numbers (the cells' mean, so a DiT's noisy map still gives one value) and moves the
portrait by them where a head mask, predicted from the portrait alone, says the head is: that similarity's flow times
the mask joins the flow the decoder predicts itself (vae_reference.ReferenceWarp). The mouth head (vae_mouth.py)
reads the blink beside the mouth's numbers, so it paints closed eyes too, and what it paints moves with the head: it
is painted on the portrait before the move.

Each frame is decoded from its own numbers: the decode stays causal and streams exactly. The stream's first frame is
the portrait itself: no move, eyes as the portrait has them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .config import MOUTH_CODE_CHANNELS, POSE_CODE_CHANNELS, VAE_TEMPORAL
from .vae import channel_norm

POSE_SCALE = 5.0  # the corpus' moves (a few degrees, a few % of the side) code within about [-1, 1]
POSE_VALUES = 5  # per frame: a - 1, b, t_x, t_y, closure


def normalising(height: int, width: int) -> Tensor:
    """[3, 3]: pixel positions (x in [0, width], y in [0, height]) -> the code's normalised coordinates"""
    half = min(height, width) / 2
    return torch.tensor([[1 / half, 0, -width / 2 / half], [0, 1 / half, -height / 2 / half], [0, 0, 1]],
                        dtype=torch.float64)


def homogeneous(maps: Tensor) -> Tensor:
    """Affine maps [..., 2, 3] -> the same as [..., 3, 3] (a last row 0 0 1), to compose and invert them"""
    last = torch.tensor([0, 0, 1], dtype=maps.dtype, device=maps.device).expand(*maps.shape[:-2], 1, 3)
    return torch.cat([maps, last], dim=-2)


def pose_from_maps(maps: Tensor, height: int, width: int) -> Tensor:
    """Affine maps from the portrait's pixels to each frame's, [..., 2, 3] or [..., 3, 3] (positions x in [0, width],
    of a height x width frame) -> the head's pose code [..., 4]: the nearest similarity, in normalised coordinates"""
    maps = maps.double()
    if maps.shape[-2] == 2:
        maps = homogeneous(maps)
    n = normalising(height, width)
    m = n @ maps @ torch.linalg.inv(n)
    a = (m[..., 0, 0] + m[..., 1, 1]) / 2
    b = (m[..., 1, 0] - m[..., 0, 1]) / 2
    return (POSE_SCALE * torch.stack([a - 1, b, m[..., 0, 2], m[..., 1, 2]], -1)).float()


def pose_channels(pose: Tensor, closure: Tensor) -> Tensor:
    """Pose codes [B, 8k, 4] and eyelid closure [B, 8k] in [0, 1] of the frames of k latent frames -> those latent
    frames' pose channels [B, POSE_CODE_CHANNELS, k] (`frame_poses` reads them back)"""
    values = torch.cat([pose, closure[..., None] * 2 - 1], dim=-1)  # [B, 8k, 5]
    return rearrange(values, "b (k o) s -> b (s o) k", o=VAE_TEMPORAL)


def frame_poses(z: Tensor) -> tuple[Tensor, Tensor]:
    """Chunk latents [B, C, k, h, w] -> each frame's pose code [B, 8k, 4] and eyelid closure [B, 8k], the cells'
    mean"""
    code = z[:, MOUTH_CODE_CHANNELS:MOUTH_CODE_CHANNELS + POSE_CODE_CHANNELS].float().mean(dim=(-2, -1))
    values = rearrange(code, "b (s o) k -> b (k o) s", s=POSE_VALUES, o=VAE_TEMPORAL)
    return values[..., :4], (values[..., 4] + 1) / 2


def pose_flow(pose: Tensor, height: int, width: int) -> Tensor:
    """Pose codes [N, 4] -> the flow that moves the portrait by each, [N, 2, height, width] in pixels (x, y): the
    warp samples backwards, so output pixel u shows the portrait at the similarity's inverse of u."""
    a, b, tx, ty = (pose.float() / POSE_SCALE).unbind(-1)
    a = a + 1
    half = min(height, width) / 2
    ys = (torch.arange(height, device=pose.device) + 0.5 - height / 2) / half
    xs = (torch.arange(width, device=pose.device) + 0.5 - width / 2) / half
    uy, ux = torch.meshgrid(ys, xs, indexing="ij")  # [H, W] each: pixel centres, normalised
    dx, dy = ux - tx[:, None, None], uy - ty[:, None, None]  # [N, H, W]
    det = (a * a + b * b)[:, None, None]
    sx = (a[:, None, None] * dx + b[:, None, None] * dy) / det
    sy = (a[:, None, None] * dy - b[:, None, None] * dx) / det
    return torch.stack([sx - ux, sy - uy], dim=1) * half


class HeadMask(nn.Module):
    """The portrait's features at every scale of the reference encoder -> where its head is, [B, 1, h, w] at the
    finest scale, in (0, 1): what moves with the head's pose. Whether a pixel of a flat patch of skin belongs to the
    head shows only at the coarse scales, so each scale adds its say, upsampled to the finest.

    Training teaches it from the corpus' head outlines, on whole portraits (train/vae.py, `head_mask`), while the
    decoder moves the head by the true outline: learnt from the reconstruction alone, after 300 steps it still said
    0.15-0.4 on the backgrounds and moved them with the head, which a halftone screen, fixed in the frame, cannot
    afford; the decoder reads it without a gradient."""

    def __init__(self, widths: tuple[int, ...], hidden: int = 32):
        super().__init__()
        self.reads = nn.ModuleList(nn.Conv2d(w, hidden, 3, padding=1) for w in widths)
        self.out = nn.Conv2d(hidden, 1, 3, padding=1)
        nn.init.zeros_(self.out.bias)

    def logits(self, features: list[Tensor]) -> Tensor:
        """features: [B, w_i, H_i, W_i] fine to coarse (ReferenceEncoder2d's, the portrait left out) -> the mask's
        logits [B, 1, H_0, W_0]"""
        size = features[0].shape[-2:]
        x = sum(F.interpolate(read(channel_norm(f)), size=size, mode="bilinear", align_corners=False)
                for read, f in zip(self.reads, features))
        return self.out(F.silu(x))

    def forward(self, features: list[Tensor]) -> Tensor:
        return torch.sigmoid(self.logits(features))
