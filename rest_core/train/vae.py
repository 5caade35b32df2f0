"""Stage 1a: the causal temporal VAE, trained on prepared clips (paper §3.2).

Each sample is a random window of 1 + 8k frames of a random clip (random horizontal flip, or the augmentation
below), encoded, sampled from
the posterior, decoded. Loss: L1 + MSE reconstruction and a small KL term that keeps the latent space smooth
enough for the DiT to model. The L1 term is weighted up where the window moves (distance from its mean frame):
in a talking head that is the mouth, the eyes and the head's outline, a small share of the pixels that carries
everything the speech drives. A second term (`missed_motion`) adds the share of the frame-to-frame change the
reconstruction misses: an 8x time compression first learns a still mouth that is right on average, and this
term is what a still mouth costs the most.

The first `image_steps` steps train on single frames instead, `image_batch` per step, each a random frame of such
a window with that window's weights. A one-frame video takes the encoder's and decoder's first-frame path (the
same weights with the time axis collapsed), so the spatial compression is learnt from many faces per step at a
fraction of a clip's cost before the clips teach the time axis.

The image steps leave the time axis untrained in two ways: a one-frame video shows every causal conv the same frame
in all its time taps (so only their sum is learnt; each tap keeps its random start, which turns motion into noise),
and it uses only the second time half of each decoder upsampler (the first output frame is dropped). So before the
first clip step `video_path_from_images` sums each conv's taps into the newest one and copies each upsampler's
second half into its first. Single frames decode exactly as before, and a clip starts as a sequence of such
frames: each latent frame holds its newest video frame for 8 frames. The clip steps then learn motion from a
decoder that already draws the mouth, rather than from one that blurs it away.

With `augment = true` every sample is also zoomed into (a random crop of 74-100 % of the side, resized back),
recoloured (channels shuffled, per-channel gains, saturation, brightness, contrast) and flipped, the same for all
its frames: the VAE has to reconstruct whatever it is shown, not the corpus' palettes and framings.

With `crop = N` every sample is an N x N window of the frames (a multiple of the VAE's 32 px; with `augment`, cut
from a window up to 1.35x smaller and zoomed into): the VAE is convolutional, so it learns the same weights from a
quarter of the pixels at a quarter of the cost, and sees faces cut anywhere. The window is cut before anything is
computed on it, so at 256 px a 128 px crop makes the whole step, data included, about four times cheaper. The loss
weights' motion is then measured within the window.

`compile = true` compiles the encoder and the decoder (torch.compile, a few minutes before the first step and again
when the clip steps start): a 256x256 image step takes three quarters of its time.

At the end the per-channel latent statistics are measured on the training clips and stored in the VAE
(`latents_mean`, `latents_std`), so the DiT sees unit-scale latents.

A reference-conditioned VAE (`VAEConfig.reference`) gets each sample's portrait too: a frame from another moment of
its clip (`another_moment`), cut from the sample's window with its recolouring, or for a `reference_moved` share of
the samples from a window moved and scaled by up to 8 % (the decoder has to warp it, not paste it). Copying the
portrait gets the look right; only the latents can get the mouth, the eyes and the motion right. But copying is the
easy part: trained from scratch, the decoder learnt it within a few hundred steps and never came to read the
latents. So such a VAE starts (`--init`) from a trained plain VAE whose decoder reads them
(`conditioned_from_plain`), with its KL weight rising from zero (`kl_warmup`) while its painting grows from nothing; a
`mouth_crops` share of the windows is cut around the clip's mouth box (kept by `prepare clips` from the corpus'
sidecars), since a random 128 px window of a 256 px frame missed the mouth most of the time, and `mouth_weight` raises
the L1 weights inside that box: the mouth is a few hundred pixels of the frame and what the latents must carry.

A `mouth_code` VAE (`VAEConfig.mouth_code`, vae_mouth.py) does not let its encoder code the mouth: the encoder sees
the frames after the first with the mouth box grey (`without_mouth`), the chunk latents' first channels are the
mouth's opening and width per frame from the corpus' sidecars (`data.face_code`, the same code for every face) and
the decoder's mouth head paints what they say. A reference-conditioned encoder left to itself codes each look's mouth
in a way of its own, which the DiT, seeing the portrait only as z_R, cannot learn from the speech (docs/TRAINING.md).
A `pose_code` VAE (vae_pose.py) is given the head's move from the portrait and the eyes' closure the same way,
written in the sample's own coordinates (its zoom, cut and flip; a moved portrait's cut is not in it, data.face_code).
Such a VAE may start (`--init`) from one of the same shape with less of the code (`with_code_heads`): every weight is
copied and what is new starts from nothing. `prepare latents` writes the same code into the training segments.

With `train_encoder = false` a run starts from a trained VAE (`--init`) and tunes its decoder alone (with the
portrait's encoder a reference-conditioned decoder reads): the latents and their statistics stay exactly those of
the VAE it started from, so prepared segments and DiTs trained on them remain valid. A high `missed_motion` weight
there teaches the decoder where the motion goes inside each latent frame: a decoder that puts each latent frame's
change at its first frame jumps at every chunk boundary, since chunks start on latent frames.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors import SafetensorError, safe_open
from torch import Tensor

from ..checkpoint import PART_FORMAT, load_part
from ..config import VAE_SPATIAL, VAE_TEMPORAL, RESTConfig, vae_length
from ..data.face_code import FaceCode, box_mask, encode_stream, map_box, view_matrix, with_code, without_mouth
from ..data.prepare import MOUTH_AT_REST_BELOW, ClipSet, to_video
from ..vae import CausalConv3d, CausalVAE, Upsampler3d
from .loop import Settings, Stage, stage_options, start_processes, train



@dataclass(frozen=True)
class VAEOptions:
    """The [vae] table of a VAE stage's config (configs/rest-demo/vae.toml explains each)."""

    frames: int = 17  # 1 + 8k frames per clip sample
    kl: float = 1e-4
    kl_warmup: int = 0  # steps over which the KL weight rises from 0 to `kl`
    mse: float = 1.0
    motion_weight: float = 1.0
    missed_motion: float = 0.0
    log_var_init: float = -6.0
    stats_clips: int = 64
    image_steps: int = 0
    image_batch: int = 16
    train_encoder: bool = True
    train_decoder: bool = True  # false (train_encoder false too): only the mouth head and the mouth shape learn
    augment: bool = False
    compile: bool = False
    crop: int = 0  # 0: whole frames
    reference_moved: float = 0.3  # reference-conditioned VAE: share of samples whose portrait is cut moved and scaled
    mouth_crops: float = 0.0  # share of samples whose window holds the clip's mouth box (prepared from sidecars)
    mouth_weight: float = 0.0  # L1 weights inside the clip's mouth box multiplied by 1 + this
    mouth_mse: float = 0.0  # a mouth_code VAE: weight of the squared error inside the mouth box, after the first frame
    code_heads_lr: float = 1.0  # a coded VAE: its mouth head's and head mask's learning rate, times the stage's
    head_mask: float = 0.0  # a pose_code VAE: weight of its head mask's cross-entropy against the head's outline
    mouth_mask: float = 0.0  # a mouth_shape VAE: weight of its mouth mask's cross-entropy against the mouth box

IMAGE_WINDOW = 17  # frames around an image sample whose motion sets its weights (0.68 s: a syllable or two)


@dataclass(frozen=True)
class Augmentation:
    """One random zoom, recolouring and flip, drawn once and applied alike to every frame of a sample (and, the
    geometry only, to its loss weights). The sample is cut from the source frames first (`cut`), so weights and
    colours are computed on the window it shows, not on the whole frame."""

    crop: tuple[int, int, int, int]  # top, left, height, width of the source window the sample shows
    out: tuple[int, int]  # the sample's height and width
    channels: tuple[int, int, int]  # channel order (a shuffle 30 % of the time)
    gains: tuple[float, float, float]
    saturation: float
    contrast: float
    brightness: float
    flip: bool

    @classmethod
    def draw(cls, height: int, width: int, g: torch.Generator, out: int | None = None,
             holding: list[float] | None = None) -> "Augmentation":
        """For height x width frames; `out`: the side of a square sample (default: the frames' own size), zoomed
        into by up to 1.35x; `holding`: a box [x0, y0, x1, y1] the window must hold where it can."""
        u = lambda: float(torch.rand(1, generator=g))  # noqa: E731
        oh, ow = (height, width) if out is None else (out, out)
        side = 1 - 0.26 * u()
        ch, cw = max(8, round(oh * side)), max(8, round(ow * side))
        top = window_start(height, ch, None if holding is None else holding[1::2], u())
        left = window_start(width, cw, None if holding is None else holding[0::2], u())
        channels = tuple(torch.randperm(3, generator=g).tolist()) if u() < 0.3 else (0, 1, 2)
        gains = tuple(0.85 + 0.3 * float(v) for v in torch.rand(3, generator=g))
        return cls((top, left, ch, cw), (oh, ow), channels, gains, saturation=0.5 + 0.8 * u(),
                   contrast=0.8 + 0.4 * u(), brightness=(u() - 0.5) * 0.16, flip=u() < 0.5)

    def moved(self, height: int, width: int, g: torch.Generator) -> "Augmentation":
        """The same recolouring and flip with the window moved by up to 8 % of its side and scaled by up to 8 %,
        inside height x width frames: a portrait the decoder has to warp, not paste."""
        u = lambda: float(torch.rand(1, generator=g)) * 2 - 1  # noqa: E731
        top, left, ch, cw = self.crop
        scale = 1 + 0.08 * u()
        nh, nw = min(height, max(8, round(ch * scale))), min(width, max(8, round(cw * scale)))
        top = min(max(round(top + (ch - nh) / 2 + 0.08 * ch * u()), 0), height - nh)
        left = min(max(round(left + (cw - nw) / 2 + 0.08 * cw * u()), 0), width - nw)
        return dataclasses.replace(self, crop=(top, left, nh, nw))

    def cut(self, frames: Tensor) -> Tensor:
        """The window of source frames [T, H, W, C] -> [T, h, w, C]"""
        top, left, ch, cw = self.crop
        return frames[:, top:top + ch, left:left + cw]

    def geometry(self, x: Tensor) -> Tensor:
        """A cut window, resized to the sample's size and flipped.  [B, C, T, h, w] -> [B, C, T, *out]"""
        b = x.shape[0]
        if tuple(x.shape[-2:]) != self.out:
            x = rearrange(x, "b c t h w -> (b t) c h w")
            x = F.interpolate(x, size=self.out, mode="bilinear", antialias=True, align_corners=False)
            x = rearrange(x, "(b t) c h w -> b c t h w", b=b)
        return x.flip(-1) if self.flip else x

    def __call__(self, video: Tensor) -> Tensor:
        """A cut window [B, 3, T, h, w] in [-1, 1] -> the sample [B, 3, T, *out]"""
        x = (self.geometry(video) + 1) / 2
        x = x[:, list(self.channels)] * torch.tensor(self.gains).view(1, 3, 1, 1, 1)
        grey = x.mean(dim=1, keepdim=True)
        x = grey + (x - grey) * self.saturation  # less or more saturated
        mean = x.mean()
        x = (x - mean) * self.contrast + mean + self.brightness
        return x.clamp(0, 1) * 2 - 1


def window_start(size: int, side: int, span: list[float] | None, u: float) -> int:
    """Where a window `side` long starts in `size` pixels, for u in [0, 1): anywhere, or anywhere it holds the span
    [lo, hi] (centred on it, inside the frame, where it cannot)."""
    if span is None:
        return int(u * (size - side + 1))
    lo, hi = span
    first, last = max(0, math.ceil(hi) - side), min(int(lo), size - side)
    if first > last:
        return min(max(round((lo + hi - side) / 2), 0), size - side)
    return first + int(u * (last - first + 1))


def motion_weights(video: Tensor, strength: float) -> Tensor:
    """1 + strength * (each pixel's distance from the window's mean frame, over its mean).  [B, 1, T, H, W]"""
    moving = (video - video.mean(dim=2, keepdim=True)).abs().mean(dim=1, keepdim=True)
    return 1 + strength * moving / moving.mean(dim=(2, 3, 4), keepdim=True).clamp_min(1e-3)


def missed_motion(recon: Tensor, video: Tensor) -> Tensor:
    """The share of the frame-to-frame change the reconstruction gets wrong: 1 for a still reconstruction of a
    moving clip, 0 for a perfect one.  [B, 3, T, H, W] each, T > 1"""
    change = video[:, :, 1:] - video[:, :, :-1]
    return ((recon[:, :, 1:] - recon[:, :, :-1]) - change).abs().sum() / change.abs().sum().clamp_min(1e-6)


def reconstruction_losses(vae: CausalVAE, video: Tensor, weights: Tensor, opts: VAEOptions,
                          generator: torch.Generator | None = None, reference: Tensor | None = None,
                          code: FaceCode | None = None, whole: tuple[Tensor, Tensor] | None = None
                          ) -> dict[str, Tensor]:
    """video: [B, 3, 1+8k, H, W] in [-1, 1]; weights: [B, 1, 1+8k, H, W], the L1 term's per-pixel weights; opts: the
    terms' weights (kl, mse, missed_motion, head_mask); reference: [B, 3, H, W], the portrait a reference-conditioned
    VAE copies the look from; code: a coded VAE's (data.face_code): the encoder sees the frames without the mouth
    and the code is written in, and a pose code's decoder moves the head where the code's head region says; whole:
    the portraits uncut [B, 3, R, R], where their heads are and where their mouths are [B, 1, R, R] (each None where
    not taught), that the head mask and the mouth shape's mask learn from"""
    seen = video if code is None else without_mouth(video, code.in_mouth)
    moments = vae.encode_moments(seen, reference)
    mean, log_var = moments[:, :-1], moments[:, -1:].clamp(-30, 20)
    noise = torch.randn(mean.shape, generator=generator).to(mean)
    features = vae.reference_features(reference)
    z = mean + torch.exp(0.5 * log_var) * noise
    if code is not None and z.shape[2] > 1:  # a single frame is the first latent frame alone: it carries no code
        z = with_code(z, code)
    region = None  # where the head truly is, at the head mask's grid
    if code is not None and code.head_region is not None:
        region = F.adaptive_avg_pool2d(code.head_region, features[1].shape[-2:])
    recon = vae.decoder(z, reference=features, head_region=region)
    l1 = ((recon - video).abs() * weights).mean() / weights.mean()
    mse = F.mse_loss(recon, video)
    kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).mean()
    terms = {"loss": l1 + opts.mse * mse + opts.kl * kl, "l1": l1, "mse": mse, "kl": kl}
    if code is not None and video.shape[2] > 1 and opts.mouth_mse:
        # the mouth's inside is any colour in the corpus and hidden in a portrait at rest: L1's sign-only gradient
        # pulled the mouth head every way at once (one sample, 150 steps: mouth error 0.062 -> 0.043), the squared
        # error gives it the mean's direction (-> 0.030)
        inside = code.in_mouth.expand(-1, 3, video.shape[2] - 1, -1, -1)
        error = (recon[:, :, 1:] - video[:, :, 1:]).square() * inside
        terms["mouth_mse"] = error.sum() / inside.sum().clamp_min(1)
        terms["loss"] = terms["loss"] + opts.mouth_mse * terms["mouth_mse"]
    if whole is not None:
        # forward, not the module's call: with `compile` the encoder is compiled for the windows' size, and
        # compiling it again for the uncut portraits' failed inside inductor (torch 2.11, dynamic shapes)
        uncut = vae.reference_encoder.forward(whole[0])[1:]
        for name, mask, region in (("head_mask", vae.decoder.head_mask, whole[1]),
                                   ("mouth_mask", vae.decoder.mouth_shape, whole[2])):
            if region is not None and getattr(opts, name):
                logits = mask.logits(uncut).float()  # [B, 1, R/p, R/p]
                target = F.adaptive_avg_pool2d(region, logits.shape[-2:])
                terms[name] = F.binary_cross_entropy_with_logits(logits, target)
                terms["loss"] = terms["loss"] + getattr(opts, name) * terms[name]
    if video.shape[2] > 1 and opts.missed_motion:
        terms["missed_motion"] = missed_motion(recon, video)
        terms["loss"] = terms["loss"] + opts.missed_motion * terms["missed_motion"]
    return terms


def another_moment(frames: int, start: int, length: int, g: torch.Generator, allowed: Tensor | None = None) -> int:
    """A frame of a `frames`-long clip outside the window [start, start + length) where there is one: the portrait
    of a sample, so that copying it gets the look right and only the latents get the motion right. With `allowed`
    ([frames] bool) only those frames, outside the window where one is, else anywhere (else any frame)."""
    ok = torch.ones(frames, dtype=torch.bool) if allowed is None else allowed[:frames]
    outside = ok.clone()
    outside[start:start + length] = False
    pool = outside if outside.any() else ok if ok.any() else torch.ones(frames, dtype=torch.bool)
    candidates = pool.nonzero()[:, 0]
    return candidates[torch.randint(len(candidates), (1,), generator=g)].item()


@torch.no_grad()
def video_path_from_images(vaes: list[CausalVAE], optimizer: torch.optim.Optimizer | None = None):
    """Make each VAE's video path a frame-by-frame copy of its one-frame path (see the module docstring), keeping
    what a single frame decodes to. The optimizer's moments follow the weights they belong to."""
    def moments(p: Tensor) -> list[Tensor]:
        state = optimizer.state.get(p, {}) if optimizer is not None else {}
        return [t for t in state.values() if t.shape == p.shape]

    for vae in vaes:
        for conv in vae.modules():
            if isinstance(conv, CausalConv3d) and conv.time_kernel > 1:
                for w in [conv.conv.weight] + moments(conv.conv.weight):  # [out, in, t, h, w]
                    w[:, :, -1] = w.sum(dim=2)
                    w[:, :, :-1] = 0
        for up in vae.decoder.modules():
            if isinstance(up, Upsampler3d):
                for p in (up.conv.conv.weight, up.conv.conv.bias):
                    for t in [p] + moments(p):
                        halves = t.view(t.shape[0] // 8, 2, 4, *t.shape[1:])  # output channels are (c pt ph pw)
                        halves[:, 0] = halves[:, 1]


@torch.no_grad()
def conditioned_from_plain(vae: CausalVAE, plain: CausalVAE) -> CausalVAE:
    """A reference-conditioned VAE that starts from the trained plain VAE `plain` of the same shape: every weight they
    share is copied, so it encodes exactly as `plain` (the encoder's portrait channels start at zero) and its decoder
    reads the latents as `plain`'s does; the merges and the output conv start at zero, so it first decodes the
    portrait, unmoved, and learns to paint on it what the latents say differs.

    Trained from scratch, the conditioned VAE found the shortcut first: copying the portrait gave most of the loss
    within a few hundred steps, its decoder never came to read the latents (decoding another frame's latents changed
    no pixel) and so nothing taught the encoder the mouth. From a plain VAE the decoder reads the latents from the
    first step, and the portrait's paths are learnt on top."""
    own, theirs = vae.state_dict(), plain.state_dict()
    for key, value in theirs.items():
        if key == "encoder.conv_in.conv.weight":  # [out, frame patches + portrait patches, t, h, w]
            own[key].zero_()[:, :value.shape[1]] = value
        elif key.startswith("decoder.conv_out."):  # it painted whole frames; this one paints the difference
            own[key].zero_()
        else:
            own[key].copy_(value)
    for merge in [block.reference_merge for block in vae.decoder.up_blocks]:
        merge.proj.weight.zero_()
        merge.proj.bias.zero_()
    return vae


@torch.no_grad()
def with_code_heads(vae: CausalVAE, trained: CausalVAE) -> CausalVAE:
    """A coded VAE that starts from `trained`, the same VAE with less of the code (none, the mouth's without the
    pose's, or no mouth shape): every weight is copied; a new mouth head starts painting nothing, one that read the
    mouth alone reads the blink beside it from a zero weight, a new head mask starts from its own initialisation and
    a new mouth shape with an empty mask, drawing nothing. A stream whose head keeps still then decodes as it did
    with `trained`."""
    own = vae.state_dict()
    for key, value in trained.state_dict().items():
        if key == "decoder.mouth_head.modulation.weight" and own[key].shape != value.shape:  # [2 hidden, codes]
            own[key].zero_()[:, :value.shape[1]] = value
        else:
            own[key].copy_(value)
    new = [k for k in own if k not in trained.state_dict()]
    assert all(k.startswith(("decoder.mouth_head.", "decoder.head_mask.", "decoder.mouth_shape.")) for k in new), new
    return vae


def initial_vae(path: str) -> CausalVAE:
    """What `--init` names: a VAE part of an earlier stage, or published LTX-Video 0.9.0 weights (a diffusers folder
    or Lightricks' single file, as ComfyUI keeps it in models/vae)."""
    from ..ltx_import import load_ltx_vae

    if Path(path).is_file():
        try:
            with safe_open(path, framework="pt") as f:
                part = (f.metadata() or {}).get("format") == PART_FORMAT
        except SafetensorError:
            part = False  # the reader below says what is wrong with the file
        if part:
            return load_part(path, "vae")[0]
    return load_ltx_vae(path)


@torch.no_grad()
def latent_statistics(vae: CausalVAE, clips: ClipSet, count: int, frames: int) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of the posterior means over the first frames of up to `count` clips, each encoded
    as a stream is: its first frame the portrait; for a coded VAE with the code in it, as the training segments have
    it. [C], [C]"""
    device = next(vae.parameters()).device
    means = []
    for i in range(min(count, len(clips))):
        n = min(clips.clips[i]["frames"], frames)
        n = vae_length(n)
        video = to_video(clips.frames(i, 0, n)).to(device)
        code = None
        if vae.config.mouth_code:
            code = clips.face_truth(i).code(range(n), 0, video.shape[-2:], vae.config.pose_code).to(device)
        means.append(encode_stream(vae, video, code))  # the first frame is the portrait
    z = torch.cat([m.transpose(0, 1).flatten(1) for m in means], dim=1)  # [C, samples]
    return z.mean(dim=1), z.std(dim=1).clamp_min(1e-4)


def run(args, settings: Settings, config: RESTConfig) -> int:
    opts = stage_options(VAEOptions, settings.options, "vae")
    procs = start_processes(args.device)
    clips = ClipSet(args.data)
    if clips.index["resolution"] != config.resolution:
        raise ValueError(f"{args.data}: clips are {clips.index['resolution']} px but preset {config.name} is "
                         f"{config.resolution} px")
    frames = opts.frames
    if vae_length(frames) != frames:
        raise ValueError(f"[vae] frames={frames}: the VAE takes 1 + {VAE_TEMPORAL}k frames")
    crop = opts.crop
    if crop and (crop % VAE_SPATIAL or not 0 < crop <= config.resolution):
        raise ValueError(f"[vae] crop={crop}: choose a multiple of {VAE_SPATIAL} px up to the preset's "
                         f"{config.resolution} px (0: whole frames)")
    usable = [i for i, c in enumerate(clips.clips) if c["frames"] >= frames]
    if not usable:
        raise ValueError(f"{args.data}: no clip has the {frames} frames a VAE sample needs")
    mouth_code = config.vae.mouth_code
    for name in ("mouth_crops", "mouth_weight"):
        if getattr(opts, name) and any("mouth_box" not in clips.clips[i] for i in usable):
            raise ValueError(f"[vae] {name} = {getattr(opts, name)}: {args.data} has clips without a mouth box; "
                             f"prepare the clips again from videos with sidecars that give one, or turn {name} off")
    if mouth_code:
        clips.check_code(config.vae.pose_code, usable)
    torch.manual_seed(settings.seed)
    train_encoder = opts.train_encoder
    if args.init:
        vae = initial_vae(args.init)
        uncoded = dataclasses.replace(config.vae, mouth_code=False, pose_code=False, mouth_shape=False)
        plain = dataclasses.replace(uncoded, reference="none")
        if vae.config == plain and config.vae != plain:
            vae = conditioned_from_plain(CausalVAE(config.vae), vae)
        elif vae.config != config.vae and vae.config in (uncoded, dataclasses.replace(config.vae, mouth_shape=False),
                                                          dataclasses.replace(config.vae, pose_code=False,
                                                                              mouth_shape=False)):
            vae = with_code_heads(CausalVAE(config.vae), vae)
        elif vae.config != config.vae:
            raise ValueError(f"{args.init} is a VAE of another shape than preset {config.name}")
    elif not train_encoder:
        raise ValueError("[vae] train_encoder = false tunes the decoder of a trained VAE: pass it with --init")
    else:
        vae = CausalVAE(config.vae)
        with torch.no_grad():
            # the posterior starts nearly deterministic (std e^-3): with unit noise the decoder would first see
            # latents drowned in noise and learn only the mean colour; the KL term still widens it where that
            # costs nothing
            vae.encoder.conv_out.conv.bias[-1] = opts.log_var_init
    vae.encoder.requires_grad_(train_encoder)
    mouth_heads = [m for m in (vae.decoder.mouth_head, vae.decoder.mouth_shape) if m is not None]
    if not opts.train_decoder:
        if train_encoder or not mouth_heads:
            raise ValueError("[vae] train_decoder = false tunes the mouth's heads of a trained coded VAE alone: set "
                             "train_encoder = false too, with a mouth_code VAE passed with --init")
        # the latents, the decoder's features and the head's move stay exactly the VAE's: segments, DiTs and the
        # repository's copy of every other weight stay valid
        vae.requires_grad_(False)
        for m in mouth_heads:
            m.requires_grad_(True)
    if opts.compile:  # in place: the weights keep their names
        for part in (vae.encoder, vae.decoder, vae.reference_encoder):
            if part is not None:
                part.compile()

    image_steps, image_batch = opts.image_steps, opts.image_batch

    conditioned = config.vae.reference != "none"

    def sample(i: int, length: int, images: bool, g: torch.Generator) -> tuple:
        """A window of clip i (one frame of it for an image step) -> video [1, 3, T, h, w], its loss weights
        [1, 1, T, h, w], for a reference-conditioned VAE its portrait [1, 3, h, w] (a frame from another moment of
        the clip, cut from the same window or, a `reference_moved` share of the time, a moved one; else None), for a
        coded VAE the window's FaceCode (else None) and, where the head mask is taught, the portrait uncut and where
        its head is (else None)."""
        count = clips.clips[i]["frames"]
        mouth = None
        if opts.mouth_crops and torch.rand(1, generator=g).item() < opts.mouth_crops:
            mouth = clips.clips[i]["mouth_box"]
        start = torch.randint(count - length + 1, (1,), generator=g).item()
        window = clips.frames(i, start, length)  # [length, R, R, 3] uint8
        height, width = window.shape[1:3]
        truth = clips.face_truth(i) if mouth_code else None
        # a coded VAE's portrait shows the mouth at rest, as a portrait at inference is taken to: the code says how
        # far the mouth is from there (with portraits of any moment, the mouth head never learnt to paint it)
        at_rest = truth.mouth[:, 0] < MOUTH_AT_REST_BELOW if mouth_code else None
        moment = another_moment(count, start, length, g, at_rest) if conditioned else None
        uncut = clips.frames(i, moment, 1) if conditioned else None  # the portrait's whole frame
        portrait = uncut
        # the window the sample shows is cut first: the weights and colours are worked out on it alone
        augmentation = look = None
        if opts.augment:
            augmentation = Augmentation.draw(height, width, g, crop or None, mouth)
            window = augmentation.cut(window)
            flip = augmentation.flip
            view = view_matrix(augmentation.crop, augmentation.out, flip)
            look = augmentation
            if conditioned and torch.rand(1, generator=g).item() < opts.reference_moved:
                look = augmentation.moved(height, width, g)
            portrait_view = view_matrix(look.crop, look.out, look.flip)
        else:
            top, left, side_h, side_w = 0, 0, height, width
            if crop:
                top, left = (window_start(size, crop, None if mouth is None else mouth[axis::2],
                                          torch.rand(1, generator=g).item())
                             for size, axis in zip((height, width), (1, 0)))
                side_h = side_w = crop
            flip = torch.rand(1, generator=g).item() < 0.5
            window = window[:, top:top + side_h, left:left + side_w]
            view = portrait_view = view_matrix((top, left, side_h, side_w), (side_h, side_w), flip)
            portrait = None if portrait is None else portrait[:, top:top + side_h, left:left + side_w]
        video = to_video(window)  # [1, 3, length, h, w]
        weight = motion_weights(video, opts.motion_weight)
        if images:
            t = torch.randint(length, (1,), generator=g).item()
            video, weight, start, length = video[:, :, t:t + 1], weight[:, :, t:t + 1], start + t, 1
        if augmentation is not None:  # after the frame is picked: an image step augments one frame, not its window
            video, weight = augmentation(video), augmentation.geometry(weight)
            portrait = None if portrait is None else look(to_video(look.cut(portrait)))
        else:
            video, weight = (video.flip(-1), weight.flip(-1)) if flip else (video, weight)
            portrait = None if portrait is None else to_video(portrait)
            portrait = portrait.flip(-1) if portrait is not None and flip else portrait
        size = tuple(video.shape[-2:])
        code = whole = None
        if mouth_code:
            code = truth.code(range(start, start + length), moment, size, config.vae.pose_code, view, portrait_view)
        teach_head = code is not None and code.head_region is not None and opts.head_mask
        teach_mouth = code is not None and config.vae.mouth_shape and opts.mouth_mask
        if teach_head or teach_mouth:
            # the masks see the portrait uncut, as at inference: inside a window zoomed onto the face the head mask
            # learnt little (cross-entropy 0.67 -> 0.59 in 160 steps; uncut 0.69 -> 0.35 in 50)
            whole_frame = (0, 0, height, width)
            if augmentation is not None:
                full = dataclasses.replace(augmentation, crop=whole_frame, out=(height, width))(to_video(uncut))
            else:
                full = to_video(uncut).flip(-1) if flip else to_video(uncut)
            whole_view = view_matrix(whole_frame, (height, width), flip)
            whole = (full[:, :, 0],
                     truth.head_region(moment, (height, width), whole_view) if teach_head else None,
                     # the box the mouth stays in over the clip: the portrait's moment may have the head a few pixels
                     # off its rest, and the shape takes only the mask's middle and spread from it
                     box_mask(map_box(whole_view, truth.mouth_box), (height, width))[:, :, 0] if teach_mouth
                     else None)
        if opts.mouth_weight:
            in_mouth = box_mask(map_box(view, clips.clips[i]["mouth_box"]), size)
            weight = weight * (1 + opts.mouth_weight * in_mouth)
        return video, weight, None if portrait is None else portrait[:, :, 0], code, whole

    def batch(step: int, g: torch.Generator) -> tuple:
        images = step < image_steps
        length = min(frames, IMAGE_WINDOW) if images else frames
        samples = [sample(usable[torch.randint(len(usable), (1,), generator=g).item()], length, images, g)
                   for _ in range(image_batch if images else settings.batch)]
        videos, weights, portraits, codes, wholes = zip(*samples)
        portraits = torch.cat(portraits).to(procs.device) if conditioned else None
        code = FaceCode.cat(codes).to(procs.device) if mouth_code else None
        whole = None if wholes[0] is None else tuple(None if t[0] is None else torch.cat(t).to(procs.device)
                                                     for t in zip(*wholes))
        return (torch.cat(videos).to(procs.device), torch.cat(weights).to(procs.device), portraits, code, whole, g,
                step)

    def losses(module: CausalVAE, b) -> dict[str, Tensor]:
        video, weights, portraits, code, whole, g, step = b
        terms = opts
        if opts.kl_warmup:
            terms = dataclasses.replace(opts, kl=opts.kl * min(1.0, step / opts.kl_warmup))
        return reconstruction_losses(module, video, weights, terms, g, portraits, code, whole)

    def before_step(step: int, module: CausalVAE, ema: CausalVAE | None, optimizer: torch.optim.Optimizer):
        if step == image_steps > 0:
            video_path_from_images([module] + ([ema] if ema is not None else []), optimizer)

    def finish(module: CausalVAE):
        if train_encoder:
            mean, std = latent_statistics(module, clips, opts.stats_clips, 1 + VAE_TEMPORAL * 8)
            module.latents_mean.copy_(mean)
            module.latents_std.copy_(std)

    params = None
    if mouth_code:
        # in order: the saved optimizer state is by position
        heads = [p for m in mouth_heads + [vae.decoder.head_mask] if m is not None for p in m.parameters()
                 if p.requires_grad]
        params = [{"params": [p for p in vae.parameters() if p.requires_grad and all(p is not h for h in heads)]},
                  {"params": heads, "lr_scale": opts.code_heads_lr}]
    train(Stage("vae", "vae", vae, config, batch, losses, finish=finish, params=params, before_step=before_step),
          settings, args.out, procs)
    return 0
