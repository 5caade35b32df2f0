"""The mouth code: the same few numbers say how open and how wide the mouth is, for every face (`VAEConfig.mouth_code`).

A reference-conditioned encoder that sees the mouth codes it in a way of its own for each look, and the DiT, which
knows the look only through z_R, cannot learn that code from the speech (docs/TRAINING.md). So the mouth is not the
encoder's to code: it sees the frames after the first with the mouth box grey, and the first MOUTH_CODE_CHANNELS
channels of every chunk latent are written from the data instead (data.face_code.with_code):

    channel o       the mouth's opening in frame o of the latent frame's 8 (0 shut .. 1 wide, as 2 x - 1)
    channel 8 + o   its width in that frame
    every cell of a channel holds the same value: the DiT need not know where the mouth is, only how it moves

Frame by frame, not one value per latent frame: lips move within a latent frame's 0.32 s.

Written into the latents alone, the code was ignored: the conditioned decoder's output is the portrait moved by a
flow plus a painting of 1 % of the output's size, and a code entering at the latent's 8x8 grid had shrunk to 0.04 %
of the activations by the finest up block, so no step taught the painting to read it (measured: a shut and a wide
open code decoded to the same mouth after 600 steps). Here it enters where the painting is made: `MouthHead` reads
each frame's code (the channels' mean over the cells, so a DiT's noisy map still gives one value) and modulates
features of the decoder's finest scale by it, and paints what it says.

What it paints is painted on the portrait, which the decoder then moves as the frame needs (vae_reference.py): the
mouth goes where the head went. With a pose code (vae_pose.py) the head reads the eyes' closure beside the mouth's two
numbers and paints the blinks too.

The head acts on each frame alone: the decode stays causal and streams exactly. The first frame of a stream is the
portrait (its latent the reference's, which carries no code): the head paints nothing on it.

With `VAEConfig.mouth_shape` the open mouth's inside is also drawn by construction (`MouthShape`): the head had
learnt the training looks' mouths, and on other faces it painted almost nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .config import MOUTH_CODE_CHANNELS, VAE_TEMPORAL
from .vae import channel_norm
from .vae_pose import HeadMask


def code_channels(state: Tensor) -> Tensor:
    """The mouth's state in each frame of k latent frames, [B, 8k, 2] in [0, 1] (opening, width) -> the code's
    channels of those latent frames [B, MOUTH_CODE_CHANNELS, k] (each 2 x - 1; `frame_codes` reads them back)."""
    return rearrange(state * 2 - 1, "b (k o) s -> b (s o) k", o=VAE_TEMPORAL)


def frame_codes(z: Tensor) -> Tensor:
    """Chunk latents [B, C, k, h, w] -> each frame's mouth code [B, 2, 8k] (opening, width), the cells' mean."""
    code = z[:, :MOUTH_CODE_CHANNELS].float().mean(dim=(-2, -1))  # [B, 16, k]
    return rearrange(code, "b (s o) k -> b s (k o)", s=2, o=VAE_TEMPORAL)


class MouthHead(nn.Module):
    """The decoder's finest features of each frame and the portrait's at that scale, modulated by the frame's code
    (the mouth's opening and width, and with a pose code the eyes' closure) -> a painting in the decoder's output
    patches, put on the portrait. It starts painting nothing."""

    def __init__(self, channels: int, patch_channels: int, codes: int = 2, hidden: int = 32):
        super().__init__()
        self.conv_in = nn.Conv2d(2 * channels, hidden, 3, padding=1)
        self.modulation = nn.Linear(codes, 2 * hidden)  # code -> a scale and a shift per hidden channel
        self.conv_out = nn.Conv2d(hidden, patch_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, guide: Tensor, features: Tensor, code: Tensor) -> Tensor:
        """guide: [B, C, T, h, w] (the frames the code covers); features: [B, C, h, w]; code: [B, codes, T] ->
        [B, patch_channels, T, h, w]"""
        b, _, t = guide.shape[:3]
        frames = rearrange(guide, "b c t h w -> (b t) c h w")
        ref = channel_norm(features).repeat_interleave(t, dim=0)  # [(B T), C, h, w]
        x = F.silu(self.conv_in(torch.cat([channel_norm(frames), ref], dim=1)))  # [(B T), hidden, h, w]
        scale, shift = self.modulation(rearrange(code, "b s t -> (b t) s").to(x.dtype)).chunk(2, dim=1)
        x = F.silu(x * (1 + scale[..., None, None]) + shift[..., None, None])
        return rearrange(self.conv_out(x), "(b t) c h w -> b c t h w", b=b)


@dataclass
class MouthPlace:
    """Where a portrait's mouth is, read off the portrait alone (`MouthShape.place`)."""

    centre: Tensor  # [B, 2] (y, x) pixels: the mask's middle
    half: Tensor  # [B, 2] (y, x) pixels: half the sides of a box as spread as the mask
    presence: Tensor  # [B] in [0, 1]: 0 where the mask found no mouth
    around: Tensor  # [B, 3] in [0, 1]: the portrait's colour under the mask


class MouthShape(nn.Module):
    """Where the portrait's mouth is -> the open mouth's inside, drawn as the code says, for any face
    (`VAEConfig.mouth_shape`).

    The mouth head paints from features that know the look, and it had learnt the training looks' mouths alone:
    decoded with a wide open and a shut code, the pose-code VAE's frames differed by 0.027 (of 2) inside the mouth box
    of a training look, 0.002-0.006 on the held-out drawing styles and 0.003-0.004 on both photographs. Here the
    opening is drawn by construction, as the head's move is (vae_pose.py): a mask predicted from the portrait says
    where its mouth is (taught from the corpus' mouth boxes on whole portraits, as the head mask from the head
    outlines); an ellipse at the mask's middle, as wide as the mask's spread times what the code's width says and as
    tall as its spread times what its opening says, is filled with the portrait's colour under the mask, darkened:
    an open mouth's inside is in shadow, darker than the lips and skin around it, on a drawn face and a photographed
    one alike. Only the ellipse's proportions and the darkening are learnt from the reconstruction; the head then
    paints the detail. (A colour read from the portrait's features, tried first, learnt the corpus' mean inside, a
    beige about as light as most skins: on the astronaut the open mouth all but vanished.)

    Like the head's painting, the ellipse is drawn on the portrait before the decoder moves it: it goes where the head
    goes. Each frame is drawn from its own code: the decode stays causal and streams exactly. Where the mouth is and
    its colour depend on the portrait alone: a stream reads them once (`place`), into its DecodeState; or the user
    says where the mouth is (`place_at`: the mask, taught on drawn faces, can miss a photographed mouth)."""

    SOFT_EDGE_PX = 1.0  # the ellipse's edge ramps over this many pixels
    MIN_MASK_CELLS = 8.0  # a mask of fewer cells draws nothing, of twice as many all: no mouth found, nothing drawn
    MAX_LIGHTNESS = 0.6  # the inside is at most this share of the colour around it (in [0, 1] pixel values)

    def __init__(self, widths: tuple[int, ...], hidden: int = 32):
        super().__init__()
        self.reads = nn.ModuleList(nn.Conv2d(w, hidden, 3, padding=1) for w in widths)
        self.out = nn.Conv2d(hidden, 1, 3, padding=1)
        nn.init.constant_(self.out.bias, -8.0)  # an empty mask to start: a fresh shape draws nothing
        # log sizes, in halves of the mask's extent: the width at the code's neutral width (0.5), how far the code's
        # width (0 .. 1) changes it, the height at full opening; then the inside's lightness, as a logit of its share
        # of MAX_LIGHTNESS
        self.size = nn.Parameter(torch.tensor([math.log(0.6), 0.5, math.log(0.5)]))
        self.lightness = nn.Parameter(torch.tensor(0.0))

    # where the mouth is, read from every scale of the portrait's features as the head mask reads where the head is:
    # features [B, w_i, H_i, W_i] fine to coarse -> logits [B, 1, H_0, W_0]
    logits = HeadMask.logits

    def place(self, portrait: Tensor, features: list[Tensor]) -> MouthPlace:
        """Where the portrait's mouth is and its colour, from the portrait alone: once per stream (DecodeState).
        portrait: [B, 3, H, W] in [-1, 1]; features as `logits`"""
        mask = torch.sigmoid(self.logits(features).float()).detach()[:, 0]  # [B, h, w]: learnt from the boxes alone
        b, h, w = mask.shape
        height, width = portrait.shape[-2:]
        step_y, step_x = height / h, width / w  # pixels per cell
        cells = mask.sum(dim=(1, 2))  # [B]
        weights = mask / cells.clamp_min(1e-6)[:, None, None]
        ys = (torch.arange(h, device=mask.device) + 0.5) * step_y
        xs = (torch.arange(w, device=mask.device) + 0.5) * step_x
        cy = (weights.sum(2) * ys).sum(1)  # [B] pixels
        cx = (weights.sum(1) * xs).sum(1)
        # a box of side s has a variance of s^2 / 12: its half-sides from the mask's spread
        half_y = (weights.sum(2) * (ys - cy[:, None]).square()).sum(1).mul(3).sqrt()
        half_x = (weights.sum(1) * (xs - cx[:, None]).square()).sum(1).mul(3).sqrt()
        around = F.interpolate((portrait.float() + 1) / 2, size=(h, w), mode="area")  # [B, 3, h, w] in [0, 1]
        return MouthPlace(centre=torch.stack([cy, cx], dim=1), half=torch.stack([half_y, half_x], dim=1),
                          presence=(cells / self.MIN_MASK_CELLS - 1).clamp(0, 1),
                          around=torch.einsum("bchw,bhw->bc", around, weights))

    @staticmethod
    def place_at(portrait: Tensor, box: Tensor) -> MouthPlace:
        """The mouth where the user says it is, in place of the mask's guess: its box [B, 4] (x0, y0, x1, y1 in the
        portrait's pixels, x1 > x0, y1 > y0), read as the mask reads a mouth box it was taught on (a box of side s
        has the spread of one: half-sides s / 2). portrait: [B, 3, H, W] in [-1, 1]"""
        box = box.to(device=portrait.device, dtype=torch.float32)
        x0, y0, x1, y1 = box.unbind(1)
        height, width = portrait.shape[-2:]
        ys = torch.arange(height, device=portrait.device) + 0.5
        xs = torch.arange(width, device=portrait.device) + 0.5
        inside = (((ys >= y0[:, None]) & (ys < y1[:, None]))[:, :, None]
                  & ((xs >= x0[:, None]) & (xs < x1[:, None]))[:, None, :]).float()  # [B, H, W]
        weights = inside / inside.sum(dim=(1, 2), keepdim=True).clamp_min(1)
        around = torch.einsum("bchw,bhw->bc", (portrait.float() + 1) / 2, weights)
        return MouthPlace(centre=torch.stack([(y0 + y1) / 2, (x0 + x1) / 2], dim=1),
                          half=torch.stack([(y1 - y0) / 2, (x1 - x0) / 2], dim=1),
                          presence=torch.ones_like(x0), around=around)

    def forward(self, place: MouthPlace, portrait: Tensor, code: Tensor) -> Tensor:
        """place: the portrait's (`place`); portrait: [B, 3, H, W] in [-1, 1]; code: [B, 2, T] (opening, width, each
        2 x - 1) -> what to put on the portrait in each frame [B, 3, T, H, W]: the inside's colour minus the
        portrait's, where the ellipse is"""
        height, width = portrait.shape[-2:]
        device = portrait.device
        (cy, cx), (half_y, half_x) = place.centre.unbind(1), place.half.unbind(1)  # [B] each, pixels
        opening = ((code[:, 0].float() + 1) / 2).clamp(0, 1)  # [B, T]
        spread = ((code[:, 1].float() + 1) / 2).clamp(0, 1)
        rx = half_x[:, None] * torch.exp(self.size[0] + self.size[1] * (spread - 0.5))  # [B, T]
        ry = half_y[:, None] * torch.exp(self.size[2]) * opening
        tall = ry.clamp_min(0.5)
        py = torch.arange(height, device=device) + 0.5
        px = torch.arange(width, device=device) + 0.5
        dy = (py[None, None, :, None] - cy[:, None, None, None]) / tall[..., None, None]  # [B, T, H, 1]
        dx = (px[None, None, None, :] - cx[:, None, None, None]) / rx[..., None, None]  # [B, T, 1, W]
        reach = torch.minimum(rx, tall)[..., None, None]  # pixels from the middle to the nearest edge
        # 1 inside, 0 outside, a linear ramp SOFT_EDGE_PX wide across the edge (where the proportions learn)
        inside = ((1 - (dx.square() + dy.square()).sqrt()) * reach / self.SOFT_EDGE_PX + 0.5).clamp(0, 1)
        # a shut mouth draws nothing: the ellipse fades in over its first pixel of height
        inside = inside * ry.clamp(max=1)[..., None, None] * place.presence[:, None, None, None]  # [B, T, H, W]
        colour = place.around * self.MAX_LIGHTNESS * torch.sigmoid(self.lightness) * 2 - 1  # [B, 3] in [-1, 1]
        drawn = inside[:, None] * (colour[:, :, None, None, None] - portrait.float()[:, :, None])  # [B, 3, T, H, W]
        return drawn.to(portrait.dtype)
