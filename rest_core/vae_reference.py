"""Reference conditioning of the causal VAE: the look comes from the portrait, the latents carry what it lacks.

A plain VAE has to learn every look there is to reconstruct it; a 2-core CPU cannot teach it that. So when
`VAEConfig.reference` is on, the decoder copies appearance from the stream's portrait instead, as one-shot renderers
do (Wav2Lip feeds a reference frame to every decoder scale; FOMM and LIA warp the source by a predicted flow and
blend it by a predicted occlusion mask):

    portrait [B, 3, H, W] -> ReferenceEncoder2d -> the portrait, then one feature map per decoder up block, at its
                                                   scale and width
    each up block:  upsample -> ReferenceMerge(its features, the portrait's at that scale) -> resnets
    output:         conv_out paints -> ReferenceWarp: warp(portrait, flow) + the painting (flow from conv_out's input)

Inside the decoder, a merge predicts for every frame, from the decoder's own features next to the portrait's, a
flow and a gate, and adds the portrait's features warped and gated: the painting knows the look (the lips' colour,
the skin around the mouth). At the output, the portrait itself is moved by a flow predicted for that frame, and the
decoder paints on top of it what the moved portrait lacks: an open mouth, teeth, closed eyes, what a turned head
uncovers. Where the portrait already shows the frame (most of it) the painting is nothing and the pixels are the
portrait's; no pixel is pasted by a fixed mask: the flow and the painting are the decoder's, from the latents.

Two designs before this one failed, and why matters. Adding the portrait's patches, warped and gated, to a painting
of the whole frame stayed blurred: the painting had to learn to cancel what the copy added, and after 2000 steps the
frames were as soft as a plain VAE's. A convex blend, mask * moved portrait + (1 - mask) * a painting of the whole
frame, was sharp within 250 steps, but the mask stayed open over the mouth (0.9) and the mouth stayed the
portrait's: a whole-frame painting's mouth was worse than the portrait's closed one, so the copy won and the painting
was never taught the mouth. Painting only the difference gives the mouth's error straight to the painting.

Every step acts on each frame alone, so the decode stays causal and streams exactly: the portrait's features are
computed once per stream and kept in the decoder's state.

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
    """The portrait -> itself (for the output warp), then one feature map per decoder up block, fine to coarse: at
    1/patch of its side with the decoder's finest width, then halved wherever the decoder doubles
    (`decoder_spatio_temporal_scaling`)."""

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
        """portrait [B, 3, H, W] in [-1, 1] -> [the portrait, [B, w_i, H_i, W_i], ...], the features fine to coarse
        (one per up block)"""
        x = self.blocks[0](self.conv_in(patchify(portrait, self.patch)))
        features = [portrait, x]
        for down, block in zip(self.downs, self.blocks[1:]):
            x = block(down(F.silu(channel_norm(x))))
            features.append(x)
        return features


class ReferenceMerge(nn.Module):
    """Decoder features of every frame + the portrait's at the same scale and width -> the features with the
    portrait's look added in, warped by a predicted flow and gated. x: [B, C, F, H, W]"""

    def __init__(self, channels: int):
        super().__init__()
        self.predict = flow_head(2 * channels, channels, gate=True)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, reference: Tensor) -> Tensor:
        """x: [B, C, F, H, W]; reference: [B, C, H, W] -> [B, C, F, H, W]"""
        b, _, f = x.shape[:3]
        frames = rearrange(x, "b c f h w -> (b f) c h w")
        ref = reference.repeat_interleave(f, dim=0)  # [(B F), C, H, W]
        out = self.predict(torch.cat([channel_norm(frames), channel_norm(ref)], dim=1))  # [(B F), 3, H, W]
        flow, gate = out[:, :2], torch.sigmoid(out[:, 2:])
        frames = frames + self.proj(gate * warp(ref, flow))
        return rearrange(frames, "(b f) c h w -> b c f h w", b=b)


class ReferenceWarp(nn.Module):
    """The portrait, moved by a flow predicted for every frame, plus what the decoder painted: each output pixel is
    the portrait's where it shows what the frame shows, and the decoder's painting on top where it does not.

    The flow is predicted at 1/patch of the side, from the features the decoder's output conv reads (`guide`) next
    to the portrait's at that scale and width (`features`), then upsampled to pixels: one flow vector per patch would
    move a patch's pixels together, and bilinear upsampling lets the copy bend smoothly inside it."""

    def __init__(self, channels: int, patch: int):
        super().__init__()
        self.patch = patch
        self.predict = flow_head(2 * channels, channels, gate=False)

    def forward(self, painted: Tensor, portrait: Tensor, guide: Tensor, features: Tensor,
                on_portrait: Tensor | None = None, head_flow: Tensor | None = None) -> Tensor:
        """painted: [B, 3, F, H, W]; portrait: [B, 3, H, W]; guide: [B, C, F, H/p, W/p]; features: [B, C, H/p, W/p];
        a code's (vae_mouth.py, vae_pose.py): what is painted on the portrait before it moves [B, 3, F, H, W] and
        the head's flow, added to the predicted one [(B F), 2, H, W] -> [B, 3, F, H, W]"""
        b, _, f = painted.shape[:3]
        guide = rearrange(guide, "b c f h w -> (b f) c h w")
        ref = features.repeat_interleave(f, dim=0)  # [(B F), C, H/p, W/p]
        flow = self.predict(torch.cat([channel_norm(guide), channel_norm(ref)], dim=1)).float()  # [(B F), 2, h, w]
        flow = F.interpolate(flow, scale_factor=self.patch, mode="bilinear", align_corners=False) * self.patch
        if head_flow is not None:
            flow = flow + head_flow
        source = portrait.repeat_interleave(f, dim=0)  # [(B F), 3, H, W]
        if on_portrait is not None:
            source = source + rearrange(on_portrait, "b c f h w -> (b f) c h w")
        copied = warp(source, flow)
        return rearrange(copied, "(b f) c h w -> b c f h w", b=b).to(painted.dtype) + painted


def flow_head(cin: int, hidden: int, gate: bool) -> nn.Sequential:
    """Features -> [N, 2 (+1), H, W]: a flow (x, y, in positions of the grid) and, with `gate`, a gate's logit. It
    starts predicting no flow and a half-open gate."""
    predict = nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.SiLU(),
                            nn.Conv2d(hidden, 3 if gate else 2, 3, padding=1))
    nn.init.zeros_(predict[-1].weight)
    nn.init.zeros_(predict[-1].bias)
    return predict
