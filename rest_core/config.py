"""Typed configuration and the named presets.

One `RESTConfig` describes a whole model: the video clock, the latent grid the VAE produces, the streaming chunk,
the A2V-DiT and the sampling options it recommends. It round-trips through JSON so a checkpoint can carry it in its
metadata.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field

VAE_SPATIAL = 32  # pixels per latent token along each image axis
VAE_TEMPORAL = 8  # video frames per latent frame
# A `VAEConfig.mouth_code` VAE's chunk latents: channels [0, 8) the mouth's opening in each of the latent frame's 8
# frames, [8, 16) its width, each 2 x - 1 and the same at every cell (vae_mouth.py)
MOUTH_CODE_CHANNELS = 2 * VAE_TEMPORAL
# A `VAEConfig.pose_code` VAE's chunk latents also carry, in the next POSE_CODE_CHANNELS channels, the head's move
# from the portrait (4 numbers) and the eyes' closure in each of the 8 frames (vae_pose.py)
POSE_CODE_CHANNELS = 5 * VAE_TEMPORAL


def vae_length(frames: int) -> int:
    """The most frames, at most `frames`, the causal VAE takes: 1 + VAE_TEMPORAL * k (the first frame alone)."""
    return 1 + VAE_TEMPORAL * ((frames - 1) // VAE_TEMPORAL)
FPS = 25
FEATURES_PER_LATENT = 16  # Whisper features (50 Hz) per latent frame (0.32 s)


@dataclass(frozen=True)
class DiTConfig:
    """The A2V-DiT (paper §3.2). Patch size is 1: one token per latent voxel."""

    in_channels: int = 128  # latent channels C of the VAE
    hidden: int = 2048
    depth: int = 28
    heads: int = 32
    ffn_mult: int = 4
    ffn_gelu: str = "tanh"  # the feed-forward's GELU: "tanh" (LTX-Video's approximation) or "none" (exact, erf)
    text_dim: int | None = 4096  # None (or 0, as TOML has no null): no text cross-attention
    speech_tokens: int = 8  # h_w: speech tokens per latent frame
    speech_dim: int = 512  # d_A: width of a speech token
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-6

    def __post_init__(self):
        if self.text_dim == 0:
            object.__setattr__(self, "text_dim", None)
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by heads={self.heads}")
        if self.ffn_gelu not in ("tanh", "none"):
            raise ValueError(f"ffn_gelu={self.ffn_gelu!r}: choose 'tanh' or 'none'")
        if (self.hidden // self.heads) % 2:
            raise ValueError(f"head dim {self.hidden // self.heads} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


REFERENCE_MODES = ("none", "decoder", "both")


@dataclass(frozen=True)
class VAEConfig:
    """The causal temporal VAE (paper §3.2), LTX-Video 0.9.0 layout; field names as diffusers'
    `AutoencoderKLLTXVideo` config so its config.json maps one to one."""

    latent_channels: int = 128
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)  # one per down block, then the mid block
    spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    decoder_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    decoder_layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)
    decoder_spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    patch_size: int = 4
    resnet_norm_eps: float = 1e-6
    # Where the stream's portrait conditions the VAE (vae_reference.py): "none" (the paper's plain VAE), "decoder"
    # (the decoder copies the look from it) or "both" (the encoder sees it too, so latents carry what it lacks)
    reference: str = "none"
    # The mouth is not the encoder's to code (vae_mouth.py): chunk latents carry the mouth's opening and width per
    # frame in their first MOUTH_CODE_CHANNELS channels, the same code for every face, and a head of the decoder
    # paints the mouth they say. Needs the portrait (reference != "none"): the head paints on it.
    mouth_code: bool = False
    # Nor are the head's motion and the blinks (vae_pose.py): the next POSE_CODE_CHANNELS channels say how the head
    # has moved from the portrait and how closed the eyes are in every frame; the decoder moves the portrait's head
    # by that and its mouth head paints the eyes too. Needs the mouth code (its head paints the blink).
    pose_code: bool = False
    # The open mouth's inside drawn by construction (vae_mouth.MouthShape): an ellipse where a mask predicted from the
    # portrait says its mouth is, sized by the mouth code, the portrait's colour there darkened, so that it opens on
    # faces unlike the training looks too. Needs the mouth code (it reads the opening and width).
    mouth_shape: bool = False

    def __post_init__(self):
        if self.reference not in REFERENCE_MODES:
            raise ValueError(f"vae reference={self.reference!r}: choose one of {', '.join(REFERENCE_MODES)}")
        if self.mouth_code and (self.reference == "none" or self.latent_channels <= MOUTH_CODE_CHANNELS):
            raise ValueError(f"vae mouth_code needs a reference-conditioned VAE (reference = \"decoder\" or \"both\") "
                             f"with more than {MOUTH_CODE_CHANNELS} latent channels")
        if self.pose_code and (not self.mouth_code or
                               self.latent_channels <= MOUTH_CODE_CHANNELS + POSE_CODE_CHANNELS):
            raise ValueError(f"vae pose_code needs the mouth code (mouth_code = true) and more than "
                             f"{MOUTH_CODE_CHANNELS + POSE_CODE_CHANNELS} latent channels")
        if self.mouth_shape and not self.mouth_code:
            raise ValueError("vae mouth_shape needs the mouth code (mouth_code = true): it draws what the code says")
        for name in ("block_out_channels", "layers_per_block", "spatio_temporal_scaling",
                     "decoder_block_out_channels", "decoder_layers_per_block", "decoder_spatio_temporal_scaling"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for prefix in ("", "decoder_"):
            widths = getattr(self, f"{prefix}block_out_channels")
            layers = getattr(self, f"{prefix}layers_per_block")
            scaling = getattr(self, f"{prefix}spatio_temporal_scaling")
            if len(layers) != len(widths) + 1 or len(scaling) != len(widths):
                raise ValueError(f"{prefix}layers_per_block needs {len(widths) + 1} entries and "
                                 f"{prefix}spatio_temporal_scaling {len(widths)}, one per block")
            if self.patch_size * 2 ** sum(scaling) != VAE_SPATIAL or 2 ** sum(scaling) != VAE_TEMPORAL:
                raise ValueError(f"{prefix}spatio_temporal_scaling must give {VAE_SPATIAL}x{VAE_SPATIAL}x"
                                 f"{VAE_TEMPORAL} compression with patch_size={self.patch_size}")


@dataclass(frozen=True)
class SpeechConfig:
    """The speech path (paper eq. 5-6): Whisper-tiny features, windowed per latent frame, and SpeechAE.

    A latent frame's window is its 16 Whisper features (0.32 s) plus `context_left` before and `context_right`
    after (20 ms each): H_w = 16 + left + right. The right context is lookahead a stream waits for. SpeechAE
    compresses a window to dit.speech_tokens (h_w) tokens of width dit.speech_dim (d_A)."""

    context_left: int = 8
    context_right: int = 8
    feature_dim: int = 384  # Whisper-tiny's width
    hidden: int = 512  # D_A: SpeechAE's transformer width
    depth: int = 2  # transformer blocks in each of the encoder and the decoder
    heads: int = 8

    def __post_init__(self):
        if self.context_left < 0 or self.context_right < 0:
            raise ValueError(f"context_left={self.context_left} and context_right={self.context_right} must be >= 0")
        if self.hidden % self.heads:
            raise ValueError(f"speech hidden={self.hidden} must be divisible by heads={self.heads}")

    @property
    def window(self) -> int:
        """H_w: Whisper features per latent frame's window."""
        return FEATURES_PER_LATENT + self.context_left + self.context_right


CONTEXT_REFRESH_MODES = ("clean", "last_step")


def option(default, help: str, **limits):
    """A StreamOptions field: its default, what it does (the CLI's help and the nodes' tooltip) and its limits
    (low, high, step, choices; node=False keeps it off the nodes' widgets)."""
    return field(default=default, metadata={"help": help, **limits})


@dataclass(frozen=True)
class StreamOptions:
    """How a stream is sampled (paper §3.4, Algorithm 1), as one value passed whole from the command line, the
    pipeline and the nodes down to the sampler; a live session compares it whole between pieces. A model's own
    recommendation travels in its checkpoint (`RESTConfig.sampler`); the defaults here are the shipped rest-demo's,
    but for `context_noise` (the paper's 0; rest-demo's checkpoint asks for 0.05, the level it was fine-tuned for).
    The CLI's flags and the nodes' widgets are built from these fields, so a new option is added here alone (at the
    end: saved UI workflows list the widgets' values in this order)."""

    steps: int = option(8, "Flow-matching steps per chunk.", low=1, high=1000)
    cfg: float = option(2.0, "Joint CFG scale over speech and text; 1 turns guidance off (half the work). 2 suits "
                             "the demo model; the paper's 2B model uses 6.", low=1.0, high=20.0, step=0.1)
    shift: float = option(3.0, "Timestep shift t' = s t / (1 + (s - 1) t): larger spends more of the steps at high "
                               "noise. The model's own.", low=1e-3, high=1000.0, step=0.1, node=False)
    seed: int = option(0, "Seed of every chunk's starting noise.", low=0, high=0xFFFFFFFFFFFFFFFF)
    id_sink: bool = option(True, "Every chunk attends to the reference (off: only the first one does - the paper's "
                                 "ablation).")
    context_cache: bool = option(True, "Every chunk attends to the previous one (off: chunks are made "
                                       "independently - ablation).")
    context_refresh: str = option("clean", "clean: commit each finished chunk to the context cache by one extra "
                                           "pass, at t = context_noise; last_step: reuse the last denoising step's "
                                           "keys and values (faster, noisier).", choices=CONTEXT_REFRESH_MODES)
    context_noise: float = option(0.0, "The noise level t a finished chunk is put back to before the clean pass "
                                       "commits it to the context cache (0: the chunk as made). A model "
                                       "fine-tuned on nearly clean contexts asks for its level in its checkpoint "
                                       "(rest-demo: 0.05; docs/TRAINING.md).", low=0.0, high=1.0, step=0.01,
                                  node=False)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, checked_option(f, getattr(self, f.name)))

    def replace(self, **changes) -> "StreamOptions":
        """These options with some changed; an unknown name is a ValueError that lists the known ones."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown sampling option {unknown[0]!r}; the options are "
                             f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)

    def differences(self, other: "StreamOptions") -> list[str]:
        """'name (this, now other)' for every field where the two differ."""
        return [f"{f.name} ({getattr(self, f.name)!r}, now {getattr(other, f.name)!r})"
                for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def checked_option(f: dataclasses.Field, value):
    """One StreamOptions value checked against its field's type and limits: a ValueError naming it otherwise."""
    meta, kind = f.metadata, type(f.default)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{f.name}: expected true or false, got {value!r}")
        return value
    if kind is str:
        if value not in meta["choices"]:
            raise ValueError(f"{f.name}: expected one of {meta['choices']}, got {value!r}")
        return value
    if kind is int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise ValueError(f"{f.name}: expected a whole number, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{f.name}: expected a finite number, got {value!r}")
    if not meta["low"] <= value <= meta["high"]:
        raise ValueError(f"{f.name}: expected a number from {meta['low']:g} to {meta['high']:g}, got {value!r}")
    return kind(value)


def finite_float(text: str) -> float:
    """An argparse type: a number that is not NaN or Inf (float() takes both)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_option_flags(parser: argparse.ArgumentParser):
    """One command-line flag per StreamOptions field, from its help and limits (the CLI's and the benchmarks'); left
    out, a flag keeps the model's own value."""
    for f in dataclasses.fields(StreamOptions):
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        kind = type(f.default)
        help_text = f"{meta['help']} (default: the model's)"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind is str:
            parser.add_argument(flag, choices=meta["choices"], default=None, help=help_text)
        else:
            parser.add_argument(flag, type=int if kind is int else finite_float, default=None, help=help_text)


def given_options(args) -> dict:
    """The StreamOptions fields given on the command line."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(StreamOptions)}
    return {name: value for name, value in given.items() if value is not None}


# The largest value each size may take: eight times rest-2b's and more, and still a model a machine can hold. A
# checkpoint's config is read before anything is allocated, so an absurd one is refused here, naming its field.
SIZE_LIMITS = {
    "resolution": 4096, "chunk_latents": 64,
    "dit.in_channels": 1024, "dit.hidden": 16384, "dit.depth": 256, "dit.heads": 256, "dit.ffn_mult": 16,
    "dit.text_dim": 16384, "dit.speech_tokens": 256, "dit.speech_dim": 8192,
    "vae.latent_channels": 1024, "vae.block_out_channels": 4096, "vae.layers_per_block": 64, "vae.patch_size": 32,
    "vae.decoder_block_out_channels": 4096, "vae.decoder_layers_per_block": 64,
    "speech.context_left": 1500, "speech.context_right": 1500, "speech.feature_dim": 4096, "speech.hidden": 8192,
    "speech.depth": 64, "speech.heads": 256,
}


def check_sizes(config: "RESTConfig"):
    """Every size of `config` a whole number within SIZE_LIMITS (text_dim may be None), else a ValueError naming it."""
    for name, high in SIZE_LIMITS.items():
        value = config
        for part in name.split("."):
            value = getattr(value, part)
        if value is None and name == "dit.text_dim":
            continue
        low = 0 if name.startswith("speech.context") else 1
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise ValueError(f"config {name}={value!r}: expected whole numbers from {low} to {high}: a model that "
                                 f"large could not be held in memory (is the checkpoint's config damaged?)")


@dataclass(frozen=True)
class RESTConfig:
    name: str = "custom"
    resolution: int = 512  # square video side in pixels
    fps: int = FPS  # fixed: the speech and VAE clocks are built on it
    chunk_latents: int = 3  # latent frames per streaming chunk (3 = 24 video frames = 0.96 s)
    dit: DiTConfig = field(default_factory=DiTConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    sampler: StreamOptions = field(default_factory=StreamOptions)  # the model's recommended options

    def __post_init__(self):
        check_sizes(self)
        if self.vae.latent_channels != self.dit.in_channels:
            raise ValueError(f"vae.latent_channels={self.vae.latent_channels} must equal "
                             f"dit.in_channels={self.dit.in_channels}")
        if self.resolution % VAE_SPATIAL:
            raise ValueError(f"resolution={self.resolution} must be a multiple of {VAE_SPATIAL}")
        if self.fps != FPS:
            raise ValueError(f"fps={self.fps}: REST runs at {FPS} fps (its audio and latent clocks are built on it)")
        if self.chunk_latents < 1:
            raise ValueError(f"chunk_latents={self.chunk_latents} must be >= 1")

    @property
    def latent_size(self) -> int:
        """Side of the latent grid: tokens per latent frame = latent_size ** 2."""
        return self.resolution // VAE_SPATIAL

    @property
    def frames_per_chunk(self) -> int:
        return self.chunk_latents * VAE_TEMPORAL

    # --- presets and serialisation ---------------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str) -> "RESTConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "RESTConfig":
        d = dict(d)
        dit = DiTConfig(**d.pop("dit", {}))
        vae = VAEConfig(**d.pop("vae", {}))
        speech = SpeechConfig(**d.pop("speech", {}))
        sampler = StreamOptions(**d.pop("sampler", {}))
        return cls(dit=dit, vae=vae, speech=speech, sampler=sampler, **d)

    @classmethod
    def from_json(cls, text: str) -> "RESTConfig":
        return cls.from_dict(json.loads(text))


PRESETS: dict[str, RESTConfig] = {
    # The paper's scale: LTX-Video-2B shaped DiT (28 x 2048, 32 heads), 128 latent channels, 512x512, T5-XXL text.
    "rest-2b": RESTConfig(
        name="rest-2b",
        resolution=512,
        dit=DiTConfig(in_channels=128, hidden=2048, depth=28, heads=32, text_dim=4096, speech_tokens=8, speech_dim=512),
        sampler=StreamOptions(steps=8, cfg=6.0),  # paper §3.4: 8 steps, Joint CFG alpha 6
    ),
    # Small enough to train on a 2-core CPU in hours and to stream faster than real time there; same code paths.
    # 256x256: an 8x8 latent grid is the smallest that holds eyes, glasses and a mouth apart (4x4 at 128x128 could
    # not); the slimmer decoder keeps the whole checkpoint under 40 MB in float16. The exact GELU because the CPU's
    # tanh approximation costs five times as much: a tenth of a bfloat16 chunk. The VAE copies the look from the
    # portrait (vae_reference.py): a small model cannot learn every look there is; the mouth is a code the DiT learns
    # from the speech, the same for every face (vae_mouth.py), and so are the head's motion and the blinks
    # (vae_pose.py).
    "rest-demo": RESTConfig(
        name="rest-demo",
        resolution=256,
        dit=DiTConfig(in_channels=128, hidden=256, depth=6, heads=4, text_dim=None, speech_tokens=4, speech_dim=64,
                      ffn_gelu="none"),
        vae=VAEConfig(latent_channels=128, block_out_channels=(32, 64, 128, 128), layers_per_block=(1, 1, 1, 1, 1),
                      decoder_block_out_channels=(32, 64, 96, 128), decoder_layers_per_block=(1, 1, 1, 1, 1),
                      reference="both", mouth_code=True, pose_code=True, mouth_shape=True),
        speech=SpeechConfig(hidden=128, depth=2, heads=4),
    ),
}
