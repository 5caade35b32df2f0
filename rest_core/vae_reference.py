"""Reference conditioning of the causal VAE: the look comes from the portrait, the latents carry what it lacks.

A plain VAE has to learn every look there is to reconstruct it; a 2-core CPU cannot teach it that. So when
`VAEConfig.reference` is on, the decoder copies appearance from the stream's portrait instead, as one-shot renderers
do (Wav2Lip feeds a reference frame to every decoder scale; FOMM and LIA warp the source's features by a predicted
flow and blend them by a predicted occlusion mask):

    portrait [B, 3, H, W] -> ReferenceEncoder2d -> one feature map per decoder up block, at its scale and width,
                                                   and its patches
    each up block:  upsample -> ReferenceMerge(its features, the portrait's at that scale) -> resnets
    output:         conv_out -> ReferenceMerge(the output patches, the portrait's patches; guided by conv_out's input)

The merge predicts, for every frame from the decoder's own features next to the portrait's, a flow (where each
position's look is in the portrait: head motion) and a gate (how much of the copy to take: nothing where the mouth
opens or the eyes close, which the latents paint). It acts on each frame alone, so the decode stays causal and
streams exactly: the portrait's features are computed once per stream and kept in the decoder's state.

The merges inside the decoder carry the look through 32-wide features at 1/4 of the side, too narrow for a 4x4
patch's 48 values: fine textures (halftone dots, hatching, hair) came out blurred. So the last merge acts at the
output itself: the decoder predicts, from the features its output conv reads, a flow and a gate per frame, and adds
the portrait's patches warped and gated through a learned 1x1 conv (starting as the identity) to what its output conv
paints. No pixel is pasted by a fixed mask: where the decoder's gate closes (an open mouth, closed eyes) the output
is its own painting, and every copied pixel is moved by its predicted flow.

With `reference = "both"` the encoder sees the portrait too (its patches beside each frame's), so a latent can carry
the difference from it; the KL term then squeezes out what the portrait already supplies, and the DiT's latents
depend little on the look.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .config import VAEConfig
from .vae import channel_norm, patchify


def warp(features: Tensor, flow: Tensor) -> Tensor:
    """Each position takes the features `flow` points at (bilinear, border values beyond the edge).
    features: [N, C, H, W]; flow: [N, 2, H, W] in positions of this grid (x, y)."""
    n, _, h, w = features.shape
    ys = torch.linspace(-1, 1, h, device=features.device, dtype=torch.float32)
    xs = torch.linspace(-1, 1, w, device=features.device, dtype=torch.float32)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H, W, 2] (x, y)
    scale = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], device=features.device)
    grid = base + flow.float().permute(0, 2, 3, 1) * scale  # [N, H, W, 2]
    # grid_sample has no bfloat16 CPU kernel: sample in float32, hand back the features' dtype
    out = F.grid_sample(features.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(features.dtype)


class ResBlock2d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.silu(channel_norm(self.conv1(F.silu(channel_norm(x))))))


class ReferenceEncoder2d(nn.Module):
    """The portrait -> its patches, then one feature map per decoder up block, fine to coarse: at 1/patch of its
    side with the decoder's finest width, then halved wherever the decoder doubles (`decoder_spatio_temporal_scaling`).
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.patch = config.patch_size
        widths, scaling = config.decoder_block_out_channels, config.decoder_spatio_temporal_scaling
        self.conv_in = nn.Conv2d(3 * self.patch**2, widths[0], 3, padding=1)
        self.downs = nn.ModuleList(
            nn.Conv2d(widths[i - 1], widths[i], 3, stride=2 if scaling[i - 1] else 1, padding=1)
            for i in range(1, len(widths)))
        self.blocks = nn.ModuleList(ResBlock2d(w) for w in widths)

    def forward(self, portrait: Tensor) -> list[Tensor]:
        """portrait [B, 3, H, W] in [-1, 1] -> its patches [B, 3 p^2, H/p, W/p] (for the output merge), then
        [[B, w_i, H_i, W_i], ...] fine to coarse (one per up block)"""
        patches = patchify(portrait, self.patch)
        x = self.blocks[0](self.conv_in(patches))
        features = [patches, x]
        for down, block in zip(self.downs, self.blocks[1:]):
            x = block(down(F.silu(channel_norm(x))))
            features.append(x)
        return features


class ReferenceMerge(nn.Module):
    """Decoder features of every frame + the portrait's at the same scale -> the features with the portrait's look
    copied in, warped by a predicted flow and gated by a predicted mask.

    `channels`: the width of what the copy is added to; `reference_channels` of the portrait's features (default the
    same); `guide_channels` of the features the flow and gate are predicted from (default: what is added to)."""

    def __init__(self, channels: int, reference_channels: int | None = None, guide_channels: int | None = None,
                 identity: bool = False):
        super().__init__()
        reference_channels = reference_channels or channels
        guide_channels = guide_channels or channels
        hidden = max(guide_channels, reference_channels)
        self.predict = nn.Sequential(nn.Conv2d(guide_channels + reference_channels, hidden, 3, padding=1), nn.SiLU(),
                                     nn.Conv2d(hidden, 3, 3, padding=1))
        nn.init.zeros_(self.predict[-1].weight)  # no flow at the start, the gate half open
        nn.init.zeros_(self.predict[-1].bias)
        self.proj = nn.Conv2d(reference_channels, channels, 1)
        if identity:  # the copy starts as the portrait's own values (the output merge: its patches)
            nn.init.eye_(self.proj.weight[:, :, 0, 0])
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, reference: Tensor, guide: Tensor | None = None) -> Tensor:
        """x: [B, C, F, H, W]; reference: [B, Cr, H, W]; guide: [B, Cg, F, H, W] (default x) -> [B, C, F, H, W]"""
        b, _, f = x.shape[:3]
        frames = rearrange(x, "b c f h w -> (b f) c h w")
        guide = frames if guide is None else rearrange(guide, "b c f h w -> (b f) c h w")
        ref = reference.repeat_interleave(f, dim=0)  # [(B F), Cr, H, W]
        out = self.predict(torch.cat([channel_norm(guide), channel_norm(ref)], dim=1))  # [(B F), 3, H, W]
        flow, gate = out[:, :2], torch.sigmoid(out[:, 2:])
        frames = frames + self.proj(gate * warp(ref, flow))
        return rearrange(frames, "(b f) c h w -> b c f h w", b=b)
