"""Causal temporal VAE, 32x32x8 pixels per latent token (paper §3.2, LTX-Video 0.9.0 layout).

Module and parameter names follow diffusers' `AutoencoderKLLTXVideo` (0.9.0 family: strided-conv downsamplers,
pixel-shuffle upsamplers, no timestep conditioning), so such a checkpoint loads with a plain state-dict copy.

Time is causal everywhere: each 3x3x3 conv sees its frame and the two before it, with frame 0 repeated in front of
the first frame. Frame 0 is therefore encoded alone: 1 + 8k frames <-> 1 + k latent frames. Norms act per voxel,
so nothing mixes information across time except the convs, and streaming is exact:

    state = vae.decode_start()
    frames, state = vae.decode_stream(z_ref, state)        # primes every conv with the reference; 1 frame
    frames, state = vae.decode_stream(z_chunk, state)      # 8 frames per latent frame, as decode() would give

The state holds, per causal conv, the last two frames of its input, and whether the first call (the one whose
upsamplers drop their first frame) has happened; for a reference-conditioned VAE also what it computes from the
portrait alone (its features, and a coded VAE's reading of where the head and the mouth are), once per stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.flop_counter import conv_flop_count, flop_registry, register_flop_formula

from .checks import expect_finite, expect_shape
from .config import VAE_TEMPORAL, VAEConfig, vae_length

if TYPE_CHECKING:
    from .vae_mouth import MouthPlace  # vae_mouth builds on this module


@dataclass
class DecodeState:
    """Carried between `decode_stream` calls; one slot per causal conv of the decoder."""

    frames: list = field(default_factory=list)  # [B, C, k-1, H, W] tails of each conv's input, or None
    started: bool = False
    reference: list | None = None  # the portrait's features per up block (a reference-conditioned VAE), or None
    reading: PortraitReading | None = None  # a coded VAE: what its decoder reads off the portrait alone, or None


@dataclass
class PortraitReading:
    """What a coded decoder reads off the portrait alone, the same for every frame: where the head is (a pose code)
    and where the mouth is (the mouth shape). A stream reads it once, at `decode_start`."""

    head: Tensor | None = None  # [B, 1, H, W] in (0, 1): the head mask at the frames' pixels
    mouth: MouthPlace | None = None  # where the mouth is (vae_mouth.MouthShape.place)


class CausalConv3d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int | tuple = 1):
        super().__init__()
        self.time_kernel = kernel
        self.slot = None  # index into DecodeState.frames, assigned by the decoder
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=(0, kernel // 2, kernel // 2))

    def forward(self, x: Tensor, state: DecodeState | None = None) -> Tensor:
        pad = self.time_kernel - 1
        if pad == 0:
            return self.conv(x)
        if state is None and x.shape[2] == 1:
            return self.single_frame(x)
        past = None if state is None else state.frames[self.slot]
        if past is None:
            past = x[:, :, :1].expand(-1, -1, pad, -1, -1)  # frame 0 repeated: nothing came before it
        x = torch.cat([past, x], dim=2)
        if state is not None:
            state.frames[self.slot] = x[:, :, -pad:]
        return self.time_conv(x)

    def time_conv(self, x: Tensor) -> Tensor:
        """The k x 3 x 3 conv. On the CPU in float32, torch sends a one-clip input with few rows (batch * channels *
        frames * height <= 20480: a streamed chunk's deeper layers) to its unblocked im2col kernel, 1.1-5.9x slower
        than oneDNN's on the same shapes; this asks for oneDNN's directly. Compiled code keeps torch's choice."""
        conv = self.conv
        if (x.device.type != "cpu" or x.dtype != torch.float32 or not torch.backends.mkldnn.is_available()
                or torch.compiler.is_compiling()):
            return conv(x)
        return torch.ops.aten.mkldnn_convolution(x, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation,
                                                 conv.groups)

    def single_frame(self, x: Tensor) -> Tensor:
        """A one-frame video shows every time tap frame 0, so the taps' summed weights as one 2-D conv give the
        same output (to rounding) for a third of the work: portraits and the VAE's image training steps."""
        conv = self.conv
        out = F.conv2d(x[:, :, 0], conv.weight.sum(dim=2), conv.bias, stride=conv.stride[1:], padding=conv.padding[1:])
        return out[:, :, None]


if torch.ops.aten.mkldnn_convolution not in flop_registry:  # torch counts only the convs it dispatches itself

    @register_flop_formula(torch.ops.aten.mkldnn_convolution)
    def _mkldnn_convolution_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return conv_flop_count(x_shape, w_shape, out_shape)


def patchify(image: Tensor, patch: int) -> Tensor:
    """[B, 3, H, W] -> [B, 3 p^2, H/p, W/p], channels in LTX-Video's patch order (c, w-offset, h-offset)."""
    return rearrange(image, "b c (h q) (w r) -> b (c r q) h w", q=patch, r=patch)


def channel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """RMS over channels (dim 1) at each voxel or pixel (PixelNorm).  x: [B, C, F, H, W] or [B, C, H, W]

    The mean square is summed in float32: the encoder's activations reach a few hundred, whose squares overflow
    float16 (65504), and the reference latent came out wrong by 75% of its range in float16."""
    mean_square = x.float().pow(2).mean(dim=1, keepdim=True)  # [B, 1, F, H, W]
    return x * torch.rsqrt(mean_square + eps).to(x.dtype)


class ResnetBlock3d(nn.Module):
    def __init__(self, cin: int, cout: int, eps: float):
        super().__init__()
        self.conv1 = CausalConv3d(cin, cout)
        self.conv2 = CausalConv3d(cout, cout)
        self.norm3 = self.conv_shortcut = None
        if cin != cout:
            self.norm3 = nn.LayerNorm(cin, eps=eps)
            self.conv_shortcut = CausalConv3d(cin, cout, kernel=1)

    def forward(self, x: Tensor, state: DecodeState | None = None) -> Tensor:
        h = self.conv1(F.silu(channel_norm(x)), state)
        h = self.conv2(F.silu(channel_norm(h)), state)
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(self.norm3(x.movedim(1, -1)).movedim(-1, 1))
        return h + x


class MidBlock3d(nn.Module):
    def __init__(self, channels: int, layers: int, eps: float):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock3d(channels, channels, eps) for _ in range(layers))

    def forward(self, x: Tensor, state: DecodeState | None = None) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x, state)
        return x


class DownBlock3d(nn.Module):
    """Resnets, then a stride-2 causal conv in t, h and w (1 + 2k frames -> 1 + k), then a widening resnet."""

    def __init__(self, cin: int, cout: int, layers: int, downsample: bool, eps: float):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock3d(cin, cin, eps) for _ in range(layers))
        self.downsamplers = nn.ModuleList([CausalConv3d(cin, cin, stride=2)]) if downsample else None
        self.conv_out = ResnetBlock3d(cin, cout, eps) if cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for down in self.downsamplers or ():
            x = down(x)
        return x if self.conv_out is None else self.conv_out(x)


class Upsampler3d(nn.Module):
    """Causal conv to 8x the channels, then depth-to-space in t, h and w. The very first output frame is dropped,
    so 1 + k frames become 1 + 2k: the reference frame stays one frame."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv3d(channels, channels * 8)

    def forward(self, x: Tensor, state: DecodeState | None = None) -> Tensor:
        x = rearrange(self.conv(x, state), "b (c pt ph pw) f h w -> b c (f pt) (h ph) (w pw)", pt=2, ph=2, pw=2)
        first_call = state is None or not state.started
        return x[:, :, 1:] if first_call else x


class UpBlock3d(nn.Module):
    """A widening resnet, a 2x upsampler, the portrait's look merged in (`reference_merge`, a reference-conditioned
    VAE's ReferenceMerge), resnets."""

    def __init__(self, cin: int, cout: int, layers: int, upsample: bool, eps: float,
                 reference_merge: nn.Module | None = None):
        super().__init__()
        self.conv_in = ResnetBlock3d(cin, cout, eps) if cin != cout else None
        self.upsamplers = nn.ModuleList([Upsampler3d(cout)]) if upsample else None
        self.reference_merge = reference_merge
        self.resnets = nn.ModuleList(ResnetBlock3d(cout, cout, eps) for _ in range(layers))

    def forward(self, x: Tensor, state: DecodeState | None = None, reference: Tensor | None = None) -> Tensor:
        if self.conv_in is not None:
            x = self.conv_in(x, state)
        for up in self.upsamplers or ():
            x = up(x, state)
        if self.reference_merge is not None:
            x = self.reference_merge(x, reference)
        for resnet in self.resnets:
            x = resnet(x, state)
        return x


class Encoder3d(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.patch = config.patch_size
        self.sees_reference = config.reference == "both"
        widths, layers, eps = config.block_out_channels, config.layers_per_block, config.resnet_norm_eps
        # with the portrait: its patches beside each frame's
        self.conv_in = CausalConv3d(3 * self.patch**2 * (2 if self.sees_reference else 1), widths[0])
        self.down_blocks = nn.ModuleList(
            DownBlock3d(widths[i], widths[min(i + 1, len(widths) - 1)], layers[i], config.spatio_temporal_scaling[i],
                        eps)
            for i in range(len(widths))
        )
        self.mid_block = MidBlock3d(widths[-1], layers[-1], eps)
        # one extra channel: a log-variance shared by all latent channels (LTX "uniform" log-var)
        self.conv_out = CausalConv3d(widths[-1], config.latent_channels + 1)

    def forward(self, video: Tensor, reference: Tensor | None = None) -> Tensor:
        """video: [B, 3, 1+8k, H, W] in [-1, 1] (and, for reference = "both", the portrait [B, 3, H, W]) ->
        posterior mean and log-variance [B, C+1, 1+k, H/32, W/32]"""
        # channel order (c, w-offset, h-offset), as LTX-Video patchifies
        x = rearrange(video, "b c f (h q) (w r) -> b (c r q) f h w", q=self.patch, r=self.patch)
        if self.sees_reference:
            x = torch.cat([x, patchify(reference, self.patch)[:, :, None].expand(-1, -1, x.shape[2], -1, -1)], dim=1)
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(channel_norm(x)))


class Decoder3d(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.patch = config.patch_size
        widths = tuple(reversed(config.decoder_block_out_channels))
        layers = tuple(reversed(config.decoder_layers_per_block))
        scaling = tuple(reversed(config.decoder_spatio_temporal_scaling))
        eps = config.resnet_norm_eps
        conditioned = config.reference != "none"
        if conditioned:
            from .vae_reference import ReferenceWarp, ReferenceMerge  # they build on this module's norm
        self.conv_in = CausalConv3d(config.latent_channels, widths[0])
        self.mid_block = MidBlock3d(widths[0], layers[0], eps)
        self.up_blocks = nn.ModuleList(
            UpBlock3d(widths[max(i - 1, 0)], widths[i], layers[i + 1], scaling[i], eps,
                      ReferenceMerge(widths[i]) if conditioned else None)
            for i in range(len(widths))
        )
        patch_channels = 3 * self.patch**2
        self.conv_out = CausalConv3d(widths[-1], patch_channels)
        # a conditioned VAE's output conv paints what the moved portrait lacks (ReferenceWarp)
        self.reference_out = ReferenceWarp(widths[-1], self.patch) if conditioned else None
        self.mouth_head = self.head_mask = self.mouth_shape = None
        if config.mouth_code:
            from .vae_mouth import MouthHead, MouthShape  # they build on this module's norm

            self.mouth_head = MouthHead(widths[-1], patch_channels, codes=3 if config.pose_code else 2)
            if config.mouth_shape:
                self.mouth_shape = MouthShape(config.decoder_block_out_channels)
        if config.pose_code:
            from .vae_pose import HeadMask  # it builds on this module's norm

            self.head_mask = HeadMask(config.decoder_block_out_channels)
        self.convs = [m for m in self.modules() if isinstance(m, CausalConv3d) and m.time_kernel > 1]
        for slot, conv in enumerate(self.convs):
            conv.slot = slot

    def forward(self, z: Tensor, state: DecodeState | None = None, reference: list[Tensor] | None = None,
                head_region: Tensor | None = None) -> Tensor:
        """z: [B, C, F, h, w] (un-normalised latents); reference: the portrait and its features
        (ReferenceEncoder2d) for a reference-conditioned VAE; head_region: for a pose code, where the portrait's head
        truly is, at the head mask's grid [B, 1, 32h/p, 32w/p], in place of its guess (training) -> video
        [B, 3, frames, 32h, 32w]"""
        x = self.mid_block(self.conv_in(z, state), state)
        for i, block in enumerate(self.up_blocks):
            x = block(x, state, None if reference is None else reference[-1 - i])
        guide = F.silu(channel_norm(x))
        painted = self.conv_out(guide, state)  # [B, 3 p^2, frames, H/p, W/p]
        painted = rearrange(painted, "b (c r q) f h w -> b c f (h q) (w r)", q=self.patch, r=self.patch)
        if self.reference_out is None:
            return painted
        on_portrait = head_flow = None
        if self.mouth_head is not None:
            reading = state.reading if state is not None and state.reading is not None else \
                self.read_portrait(reference, head_region)
            on_portrait, head_flow = self.coded(z, guide, reference, reading, state)
        return self.reference_out(painted, reference[0], guide, reference[1], on_portrait, head_flow)

    def read_portrait(self, reference: list[Tensor], head_region: Tensor | None = None,
                      mouth: Tensor | None = None) -> PortraitReading:
        """A coded decoder's reading of the portrait (reference: the portrait and its features); head_region: where
        the head truly is, at the head mask's grid, in place of the mask's guess (training); mouth: where the mouth
        is, [B, 4] boxes (x0, y0, x1, y1) in the portrait's pixels, in place of the mouth mask's guess"""
        head = None
        if self.head_mask is not None:
            # the mask learns where the head is from the corpus' outlines alone (train/vae.py, `head_mask`)
            grid = self.head_mask(reference[1:]).detach() if head_region is None else head_region
            head = F.interpolate(grid.to(reference[0].dtype), size=reference[0].shape[-2:], mode="bilinear",
                                 align_corners=False)
        if self.mouth_shape is not None:
            mouth = self.mouth_shape.place(reference[0], reference[1:]) if mouth is None else \
                self.mouth_shape.place_at(reference[0], mouth)
        return PortraitReading(head=head, mouth=mouth)

    def coded(self, z: Tensor, guide: Tensor, reference: list[Tensor], reading: PortraitReading,
              state: DecodeState | None) -> tuple[Tensor | None, Tensor | None]:
        """What the data's code says of each output frame (vae_mouth.py, vae_pose.py): the mouth head's painting
        and the mouth shape's ellipse, put on the portrait, [B, 3, frames, H, W], and with a pose code the flow that
        moves the portrait's head, [(B frames), 2, H, W] (each None where there is none). The stream's first frame
        is the portrait (its latent, the reference's, carries no code): nothing painted, nothing moved."""
        from .vae_mouth import frame_codes

        first = state is None or not state.started  # z starts with the reference latent
        chunks = z[:, :, 1:] if first else z
        frames, coded = guide.shape[2], VAE_TEMPORAL * chunks.shape[2]
        lead = frames - coded  # the portrait's frame, on a stream's first call
        if coded == 0:  # the portrait's frame alone
            return None, None
        code = frame_codes(chunks)  # [B, 2, coded]
        if self.head_mask is not None:
            from .vae_pose import frame_poses, pose_flow

            pose, closure = frame_poses(chunks)  # [B, coded, 4], [B, coded]
            code = torch.cat([code, closure[:, None]], dim=1)
        painting = self.mouth_head(guide[:, :, lead:], reference[1], code)  # [B, 3 p^2, coded, h, w]
        painting = rearrange(painting, "b (c r q) f h w -> b c f (h q) (w r)", q=self.patch, r=self.patch)
        if self.mouth_shape is not None:
            painting = painting + self.mouth_shape(reading.mouth, reference[0], code[:, :2, :]).to(painting.dtype)
        painting = F.pad(painting, (0, 0, 0, 0, lead, 0))
        if self.head_mask is None:
            return painting, None
        pose = F.pad(pose, (0, 0, lead, 0))  # the portrait's frame: no move
        size = reading.head.shape[-2:]
        flow = pose_flow(rearrange(pose, "b f s -> (b f) s"), *size) * reading.head.repeat_interleave(frames, dim=0)
        return painting, flow


class CausalVAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder3d(config)
        self.decoder = Decoder3d(config)
        self.reference_encoder = None
        if config.reference != "none":
            from .vae_reference import ReferenceEncoder2d  # it builds on this module's norm

            self.reference_encoder = ReferenceEncoder2d(config)
        # per-channel latent statistics: the DiT works on (mean - latents_mean) / latents_std
        self.register_buffer("latents_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latents_std", torch.ones(config.latent_channels))

    def _stats(self, z: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, -1, 1, 1, 1)
        return self.latents_mean.view(shape).to(z), self.latents_std.view(shape).to(z)

    def normalize(self, z: Tensor) -> Tensor:
        mean, std = self._stats(z)
        return (z - mean) / std

    def denormalize(self, z: Tensor) -> Tensor:
        mean, std = self._stats(z)
        return z * std + mean

    def check_latents(self, z: Tensor) -> Tensor:
        return expect_shape("z", z, [("B", None), ("C", self.config.latent_channels), ("frames", None), ("h", None),
                                     ("w", None)])

    def check_video(self, name: str, video: Tensor) -> Tensor:
        expect_shape(name, video, [("B", None), ("RGB", 3), ("frames", None), ("H", None), ("W", None)])
        frames, h, w = video.shape[2:]
        if vae_length(frames) != frames:
            t = VAE_TEMPORAL
            valid = ", ".join(str(1 + t * k) for k in range(4))
            raise ValueError(f"{name}: {frames} frames; the VAE takes 1 + {t}k frames ({valid}, ...): trim or pad "
                             f"the clip to {vae_length(frames)} or {vae_length(frames) + t} frames")
        if h % 32 or w % 32:
            raise ValueError(f"{name}: {h}x{w} pixels; height and width must be multiples of 32")
        return expect_finite(name, video)

    def check_reference(self, reference: Tensor | None, batch: int | None = None,
                        size: tuple[int | None, int | None] = (None, None)) -> Tensor | None:
        """The portrait a reference-conditioned VAE needs, [B, 3, H, W] at the video's batch and size where given;
        None for a plain VAE (which ignores one)."""
        if self.reference_encoder is None:
            return None
        if reference is None:
            raise ValueError("this VAE copies the look from the portrait (reference-conditioned): pass the portrait "
                             "as `reference`, [B, 3, H, W] in [-1, 1]")
        expect_shape("reference", reference, [("B", batch), ("RGB", 3), ("H", size[0]), ("W", size[1])])
        return expect_finite("reference", reference)

    def encode_moments(self, video: Tensor, reference: Tensor | None = None) -> Tensor:
        """video [B, 3, 1+8k, H, W] in [-1, 1] (checked) -> posterior mean and log-variance, un-normalised
        [B, C+1, 1+k, H/32, W/32]; `reference` as for encode_video."""
        reference = self.check_reference(reference, video.shape[0], video.shape[-2:])
        return self.encoder(video, reference if self.encoder.sees_reference else None)

    def encode_video(self, video: Tensor, reference: Tensor | None = None, sample: bool = False,
                     generator: torch.Generator | None = None) -> Tensor:
        """video: [B, 3, 1+8k, H, W] in [-1, 1] -> normalised latents [B, C, 1+k, H/32, W/32] (posterior mean, or a
        sample of the posterior with `sample`). A reference-conditioned VAE needs the stream's portrait,
        `reference` [B, 3, H, W] in [-1, 1]; a video whose first frame is the portrait encodes it to z_R."""
        self.check_video("video", video)
        moments = self.encode_moments(video, reference)
        mean, log_var = moments[:, :-1], moments[:, -1:]
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device="cpu").to(mean)
            mean = mean + torch.exp(0.5 * log_var) * noise
        return self.normalize(mean)

    def encode_image(self, image: Tensor) -> Tensor:
        """image: [B, 3, H, W] in [-1, 1] -> the reference latent z_R [B, C, 1, H/32, W/32] (for a
        reference-conditioned VAE: the image encoded with itself as the portrait)."""
        expect_shape("image", image, [("B", None), ("RGB", 3), ("H", None), ("W", None)])
        return self.encode_video(image[:, :, None], image)

    def reference_features(self, reference: Tensor | None, batch: int | None = None,
                           size: tuple[int | None, int | None] = (None, None)) -> list[Tensor] | None:
        """The portrait's features for every decoder up block, once per stream (None for a plain VAE); `batch` and
        `size` (height, width) are the frames', where known."""
        reference = self.check_reference(reference, batch, size)
        return None if reference is None else self.reference_encoder(reference)

    def decode(self, z: Tensor, reference: Tensor | None = None) -> Tensor:
        """Normalised latents [B, C, 1+k, h, w] -> video [B, 3, 1+8k, 32h, 32w] in about [-1, 1]; `reference` the
        portrait [B, 3, 32h, 32w] for a reference-conditioned VAE."""
        z = self.check_latents(z)
        features = self.reference_features(reference, z.shape[0], (z.shape[-2] * 32, z.shape[-1] * 32))
        return self.decoder(self.denormalize(z), reference=features)

    def decode_start(self, reference: Tensor | None = None, mouth: Tensor | None = None) -> DecodeState:
        """A stream's decoder state; a reference-conditioned VAE computes the portrait's features into it here, once
        (`reference` [B, 3, H, W] in [-1, 1], the frames' size), and a coded one its reading of the portrait;
        `mouth`: where the portrait's mouth is ([B, 4] boxes x0, y0, x1, y1 in its pixels; `check_mouth`), for a VAE
        that draws the mouth's shape, in place of its own guess."""
        features = self.reference_features(reference)
        self.check_mouth(mouth, reference)
        coded = features is not None and self.decoder.mouth_head is not None
        return DecodeState(frames=[None] * len(self.decoder.convs), reference=features,
                           reading=self.decoder.read_portrait(features, mouth=mouth) if coded else None)

    def check_mouth(self, mouth: Tensor | None, reference: Tensor | None) -> None:
        """A mouth box is for a VAE that draws the mouth's shape, [B, 4] (x0, y0, x1, y1) with x0 < x1 and y0 < y1
        inside the portrait [B, 3, H, W]; else a ValueError that says what to do."""
        if mouth is None:
            return
        if not self.config.mouth_shape:
            raise ValueError("a mouth box was given, but this model does not draw the mouth's shape (only rest-demo "
                             "models with the mouth shape do); leave the mouth box out")
        expect_shape("mouth", mouth, [("B", None if reference is None else reference.shape[0]), ("x0 y0 x1 y1", 4)])
        x0, y0, x1, y1 = mouth.float().unbind(1)
        height, width = reference.shape[-2:]
        # (NaN fails every comparison)
        if not bool(((x0 >= 0) & (y0 >= 0) & (x1 <= width) & (y1 <= height) & (x1 - x0 >= 1) & (y1 - y0 >= 1)).all()):
            raise ValueError(f"mouth box {[[round(float(v), 1) for v in b] for b in mouth]}: give x0 < x1 and "
                             f"y0 < y1 at least a pixel apart, inside the {width}x{height} portrait")

    def decode_stream(self, z: Tensor, state: DecodeState) -> tuple[Tensor, DecodeState]:
        """Decode the next latent frames of a stream. The first call (normally the reference latent alone) gives
        1 + 8(F-1) frames, every later call exactly 8 per latent frame; together they equal `decode` of the
        concatenation."""
        frames = self.decoder(self.denormalize(self.check_latents(z)), state, state.reference)
        state.started = True
        return frames, state
