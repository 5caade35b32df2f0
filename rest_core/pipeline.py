"""RESTPipeline: a portrait and speech in, talking-head frames out, chunk by chunk (paper Algorithm 1 end to end).

    portrait -> crop/resize (reference.py) -> VAE encoder -> z_R -----------------------\
    audio pieces -> SpeechLatentStream (Whisper -> SpeechAE) -> E, one chunk at a time -> VideoStream
                                                              (stream_latents -> VAE decode_stream) -> frames

Both streams are push-driven: audio goes in as it arrives and each chunk of video is made as soon as its speech is
in, so the first chunk needs only the first chunk of audio (plus the speech lookahead), and a live stream can wait
for more audio between calls. A stream of K chunks yields 24 K frames, minus the trim of the last chunk: the video
has exactly `video_frames` of the 16 kHz audio, round(seconds * 25), at least one. The last chunk's missing speech is silence.

Checkpoints are one `.safetensors` file: the parts' tensors under `dit.`, `vae.`, `speech_ae.` (and `whisper.` when
the speech encoder is bundled), the config as JSON in the metadata.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from .config import RESTConfig
from .dit import A2VDiT
from .reference import CropBox, prepare_reference
from .sampling import stream_latents
from .speech import SAMPLES_PER_LATENT, SpeechWindows, check_sample_rate, mono_clip, video_frames
from .speech_ae import SpeechAE
from .vae import CausalVAE
from .whisper import SAMPLE_RATE, WhisperEncoder
from .whisper_import import default_whisper_encoder, encoder_from_state_dict, load_whisper_encoder

CHECKPOINT_FORMAT = "rest"
CHECKPOINT_VERSION = "1"


@dataclass
class VideoChunk:
    index: int
    frames: Tensor  # [n, H, W, 3] float in [0, 1] on the CPU; n = 24 except for a trimmed last chunk
    latents: Tensor  # [1, C, chunk_latents, h, w]
    first_frame: int  # position of frames[0] in the whole video


def to_images(video: Tensor) -> Tensor:
    """VAE output [1, 3, T, H, W] in about [-1, 1] -> [T, H, W, 3] float in [0, 1] on the CPU."""
    return ((video[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).cpu()


@dataclass
class SpeechLatents:
    """A whole clip's speech latents and the length of the video they make."""

    latents: Tensor  # [1, K * chunk_latents, h_w, d_A]: whole chunks, the last one silence-padded
    video_frames: int  # round(seconds * 25), at least 1


class SpeechLatentStream:
    """Audio pieces pushed in -> speech latents E, one chunk of latent frames at a time.

    `push` returns the chunks its piece completed (each needs the speech lookahead past its end); `finish` pads the
    last chunk with silence and sets `video_frames`, the clip's frame count (None until then)."""

    def __init__(self, whisper: WhisperEncoder, speech_ae: SpeechAE, config: RESTConfig, sample_rate: int):
        self.windows = SpeechWindows(whisper, config.speech.context_left, config.speech.context_right, sample_rate)
        self.speech_ae, self.chunk = speech_ae, config.chunk_latents
        self.ready: list[Tensor] = []  # windows not yet grouped into a chunk
        self.video_frames: int | None = None

    def push(self, piece) -> list[Tensor]:
        """piece: any layout `as_mono` reads -> [[1, chunk_latents, h_w, d_A], ...]"""
        self.ready.extend(self.windows.push(piece))
        return self._whole_chunks()

    def finish(self) -> list[Tensor]:
        self.ready.extend(self.windows.finish(multiple=self.chunk))
        self.video_frames = video_frames(self.windows.received)
        return self._whole_chunks()

    def _whole_chunks(self) -> list[Tensor]:
        done = [self.encode(self.ready[i:i + self.chunk])
                for i in range(0, len(self.ready) - self.chunk + 1, self.chunk)]
        self.ready = self.ready[len(done) * self.chunk:]
        return done

    @torch.no_grad()
    def encode(self, windows: list[Tensor]) -> Tensor:
        p = next(self.speech_ae.parameters())
        return self.speech_ae.encode(torch.stack(windows).to(p.device, p.dtype))[None]


class VideoStream:
    """Algorithm 1 driven from outside: add one chunk of speech latents at a time, pull the video chunks they make.

    The ID-Context Cache (inside the sampler's generator) and the causal VAE decoder's state live here between
    pulls, so a live stream can wait for its audio across calls, or across queued ComfyUI prompts. `end` gives the
    clip's frame count; chunks pulled after it are trimmed to it.
    """

    def __init__(self, pipe: "RESTPipeline", ref: Tensor, text: Tensor | None = None, **sampling):
        self.waiting: deque[Tensor] = deque()  # speech latents added, not yet denoised
        self.latents = stream_latents(pipe.dit, ref, self._speech(), text, chunk_latents=pipe.config.chunk_latents,
                                      **sampling)
        self.vae, self.video_frames, self.made = pipe.vae, None, 0
        with torch.no_grad():
            self.vae_state = self.vae.decode_start()
            self.vae.decode_stream(ref, self.vae_state)  # primes the causal decoder; the reference is not shown

    def _speech(self) -> Iterator[Tensor]:
        while True:
            yield self.waiting.popleft()  # `pull` advances the sampler only while an entry waits

    def add(self, speech: Tensor):
        """speech: [1, chunk_latents, h_w, d_A] (checked when the sampler reaches it)"""
        self.waiting.append(speech)

    def end(self, video_frames: int):
        self.video_frames = video_frames

    @torch.no_grad()
    def pull(self) -> Iterator[VideoChunk]:
        """Yields one chunk per speech chunk added so far, each as soon as it is denoised and decoded."""
        while self.waiting:
            chunk = next(self.latents)
            frames, self.vae_state = decode_chunk(self.vae, chunk.latents, self.vae_state)
            if self.video_frames is not None:
                frames = frames[:max(0, self.video_frames - self.made)]
            yield VideoChunk(chunk.index, frames, chunk.latents, self.made)
            self.made += frames.shape[0]


@torch.no_grad()
def decode_latents(vae: CausalVAE, ref: Tensor, latents: Tensor, chunk_latents: int,
                   video_frames: int | None = None) -> Tensor:
    """Latents of a stream [1, C, K * chunk_latents, h, w] -> its frames [n, H, W, 3] in [0, 1], decoded chunk by
    chunk as the stream was (the causal decoder primed on z_R), cut to `video_frames` when given."""
    state = vae.decode_start()
    vae.decode_stream(ref.to(next(vae.parameters()).dtype), state)
    frames = []
    for chunk in latents.split(chunk_latents, dim=2):
        decoded, state = decode_chunk(vae, chunk, state)
        frames.append(decoded)
    return torch.cat(frames)[:video_frames]


def decode_chunk(vae: CausalVAE, latents: Tensor, state) -> tuple[Tensor, object]:
    """One chunk [1, C, c, h, w] through the causal decoder -> ([8 c, H, W, 3] in [0, 1] on the CPU, new state)"""
    frames, state = vae.decode_stream(latents.to(next(vae.parameters()).dtype), state)
    return to_images(frames), state


def checkpoint_config(path: Path, metadata: dict[str, str]) -> RESTConfig:
    """The REST config in a checkpoint's metadata, checked (sizes included) before anything is built from it."""
    if metadata.get("format") != CHECKPOINT_FORMAT or "config" not in metadata:
        raise ValueError(f"{path} is a safetensors file but not a REST checkpoint (no REST config in its metadata)")
    if metadata.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {metadata.get('format_version')}; this version of "
                         f"rest_core reads version {CHECKPOINT_VERSION}")
    try:
        return RESTConfig.from_dict(json.loads(metadata["config"]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: its config is not valid ({e})") from e


def available_memory() -> int | None:
    """Bytes of memory the system can still give (Linux's MemAvailable); None where that is not known."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits_in_memory(config: RESTConfig):
    """Refuse, before anything is allocated, a model whose float32 weights alone exceed the free memory (its parts
    are built in float32 and cast afterwards)."""
    with torch.device("meta"):
        parts = {"dit": A2VDiT(config.dit), "vae": CausalVAE(config.vae), "speech_ae": SpeechAE.from_config(config)}
    sizes = {name: 4 * sum(p.numel() for p in part.parameters()) for name, part in parts.items()}
    free = available_memory()
    if free is not None and sum(sizes.values()) > free:
        largest = max(sizes, key=sizes.get)
        raise ValueError(f"the {config.name} model needs {sum(sizes.values()) / 2**30:.1f} GiB for its weights "
                         f"({largest}: {sizes[largest] / 2**30:.1f} GiB) but this machine has {free / 2**30:.1f} GiB "
                         f"free; close other programs or use a smaller model")


class RESTPipeline:
    def __init__(self, config: RESTConfig, dit: A2VDiT, vae: CausalVAE, speech_ae: SpeechAE,
                 whisper: WhisperEncoder):
        if whisper.width != config.speech.feature_dim:
            raise ValueError(f"the Whisper encoder gives {whisper.width}-wide features; this model's SpeechAE reads "
                             f"{config.speech.feature_dim} (Whisper tiny)")
        self.config, self.dit, self.vae, self.speech_ae, self.whisper = config, dit, vae, speech_ae, whisper

    # --- construction and checkpoints ------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: RESTConfig, whisper: WhisperEncoder | str | Path | None = None,
                    device="cpu", dtype: torch.dtype = torch.float32) -> "RESTPipeline":
        """A pipeline with random weights (benchmarks, training starts). `whisper`: an encoder, a weights file, or
        None for the pinned default."""
        check_fits_in_memory(config)
        return cls._build(config, whisper).to(device, dtype)

    @classmethod
    def _build(cls, config: RESTConfig, whisper: WhisperEncoder | str | Path | None) -> "RESTPipeline":
        """Random float32 parts on the CPU, for a config `check_fits_in_memory` has passed."""
        if not isinstance(whisper, WhisperEncoder):
            whisper = default_whisper_encoder() if whisper is None else load_whisper_encoder(whisper)
        return cls(config, A2VDiT(config.dit), CausalVAE(config.vae), SpeechAE.from_config(config), whisper)

    def to(self, device="cpu", dtype: torch.dtype = torch.float32) -> "RESTPipeline":
        for module in (self.dit, self.vae, self.speech_ae):
            module.to(device=device, dtype=dtype).eval()
        self.whisper.to(device=device, dtype=torch.float32).eval()  # small; float32 keeps its features exact
        return self

    def parts(self, include_whisper: bool) -> dict[str, nn.Module]:
        parts = {"dit": self.dit, "vae": self.vae, "speech_ae": self.speech_ae}
        return parts | {"whisper": self.whisper} if include_whisper else parts

    def save_pretrained(self, path: str | Path, include_whisper: bool = False, dtype: torch.dtype | None = None):
        """One .safetensors file; `include_whisper` bundles the speech encoder, `dtype` casts floating tensors."""
        tensors = {}
        for name, module in self.parts(include_whisper).items():
            for key, value in module.state_dict().items():
                value = value.detach().cpu()
                tensors[f"{name}.{key}"] = (value.to(dtype) if dtype and value.is_floating_point() else value).contiguous()
        metadata = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "config": self.config.to_json()}
        save_file(tensors, str(path), metadata=metadata)

    @classmethod
    def from_pretrained(cls, path: str | Path, whisper: WhisperEncoder | str | Path | None = None, device="cpu",
                        dtype: torch.dtype = torch.float32) -> "RESTPipeline":
        """Load a checkpoint written by save_pretrained. A bundled speech encoder is used unless `whisper` is given."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path} not found: give a REST checkpoint (.safetensors)")
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: REST checkpoints are .safetensors files; other formats are never loaded")
        try:
            with safe_open(str(path), framework="pt") as f:
                config = checkpoint_config(path, f.metadata() or {})  # before any tensor is read
                check_fits_in_memory(config)
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{path} is not a readable safetensors file ({e}); download or export it again") from e

        bundled = {k[len("whisper."):]: v for k, v in tensors.items() if k.startswith("whisper.")}
        if whisper is None and bundled:
            whisper = encoder_from_state_dict(bundled)
        pipe = cls._build(config, whisper)  # checked above, before the tensors were read
        for name, module in pipe.parts(include_whisper=False).items():
            load_part(module, name, {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")},
                      path)
        return pipe.to(device, dtype)

    # --- generation ------------------------------------------------------------------------------------------

    def encode_reference(self, image, box: CropBox | None = None) -> tuple[Tensor, CropBox]:
        """A portrait -> (z_R [1, C, 1, h, w], its crop box: `box`, or the largest centred square)."""
        pixels, box = prepare_reference(image, self.config.resolution, box)
        return self.encode_square(pixels), box

    @torch.no_grad()
    def encode_square(self, pixels: Tensor) -> Tensor:
        """The portrait's square as `prepare_reference` gives it, [1, 3, R, R] in [-1, 1] -> z_R [1, C, 1, h, w]"""
        p = next(self.vae.parameters())
        return self.vae.encode_image(pixels.to(p.device, p.dtype))

    def speech_stream(self, sample_rate: int) -> SpeechLatentStream:
        return SpeechLatentStream(self.whisper, self.speech_ae, self.config, sample_rate)

    def encode_speech(self, waveform, sample_rate: int,
                      on_second: Callable[[int, int], None] | None = None) -> SpeechLatents:
        """A whole clip (any layout `as_mono` reads) -> its speech latents, computed as a live stream would (a
        second of audio at a time, as exact as all at once). `on_second(done, total)` is called after each second
        (progress bars; raising in it stops the encoding there)."""
        speech = self.speech_stream(sample_rate)
        mono = mono_clip(waveform)
        rate = check_sample_rate(sample_rate)
        total = -(-mono.shape[0] // rate)
        chunks = []
        for second in range(total):
            chunks += speech.push(mono[second * rate:(second + 1) * rate])
            if on_second is not None:
                on_second(second + 1, total)
        chunks += speech.finish()
        return SpeechLatents(torch.cat(chunks, dim=1), speech.video_frames)

    def video_stream(self, ref: Tensor, *, steps: int | None = None, cfg: float | None = None, seed: int = 0,
                     id_sink: bool = True, context_cache: bool = True, context_refresh: str = "clean",
                     text: Tensor | None = None, on_step: Callable[[int, int], None] | None = None) -> VideoStream:
        """The sampling options of `stream_latents`; steps and cfg default to the model's."""
        sampler = self.config.sampler
        return VideoStream(self, ref, text, steps=sampler.steps if steps is None else steps,
                           cfg=sampler.cfg if cfg is None else cfg, shift=sampler.shift, seed=seed, id_sink=id_sink,
                           context_cache=context_cache, context_refresh=context_refresh, on_step=on_step)

    def stream(self, image, waveform, sample_rate: int, box: CropBox | None = None,
               **options) -> Iterator[VideoChunk]:
        """A whole clip, streamed: chunks come out as they are made. `box`: the portrait's square (default: the
        largest centred one). Options as for `video_stream`."""
        mono = mono_clip(waveform)  # checked here, before any work starts
        step = SAMPLES_PER_LATENT * self.config.chunk_latents * check_sample_rate(sample_rate) // SAMPLE_RATE
        pieces = (mono[i:i + step] for i in range(0, mono.shape[0], step))
        return self.stream_live(image, pieces, sample_rate, box, **options)

    def stream_live(self, image, pieces: Iterable, sample_rate: int, box: CropBox | None = None,
                    **options) -> Iterator[VideoChunk]:
        """Audio arriving in pieces (any layout `as_mono` reads, at `sample_rate`); the video ends with the audio.
        Each chunk is made as soon as its audio (and the speech lookahead) is in."""
        ref, _ = self.encode_reference(image, box)
        speech = self.speech_stream(sample_rate)
        video = self.video_stream(ref, **options)
        return self._stream_live(pieces, speech, video)

    @staticmethod
    def _stream_live(pieces: Iterable, speech: SpeechLatentStream, video: VideoStream) -> Iterator[VideoChunk]:
        for piece in pieces:
            for e in speech.push(piece):
                video.add(e)
            yield from video.pull()
        for e in speech.finish():
            video.add(e)
        video.end(speech.video_frames)
        yield from video.pull()

    def decode_latents(self, ref: Tensor, latents: Tensor, video_frames: int | None = None) -> Tensor:
        """Latents of a stream [1, C, K * chunk_latents, h, w] -> its frames (`decode_latents`)."""
        return decode_latents(self.vae, ref, latents, self.config.chunk_latents, video_frames)

    def generate(self, image, waveform, sample_rate: int, box: CropBox | None = None, **options) -> Tensor:
        """All frames at once: [round(seconds * 25), H, W, 3] float in [0, 1]."""
        return torch.cat([chunk.frames for chunk in self.stream(image, waveform, sample_rate, box, **options)])


def load_part(module: nn.Module, name: str, state: dict[str, Tensor], path: Path):
    expected = module.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise ValueError(f"{path}: tensor {name}.{key} is missing; the checkpoint does not match its config")
        if state[key].shape != value.shape:
            raise ValueError(f"{path}: tensor {name}.{key} has shape {list(state[key].shape)}, its config needs "
                             f"{list(value.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ValueError(f"{path}: unexpected tensor {name}.{extra[0]}; the checkpoint does not match its config")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
