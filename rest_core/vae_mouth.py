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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .config import MOUTH_CODE_CHANNELS, VAE_TEMPORAL
from .vae import channel_norm


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
