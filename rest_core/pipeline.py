"""RESTPipeline: a portrait and speech in, talking-head frames out, chunk by chunk (paper Algorithm 1 end to end).

    portrait -> crop/resize (reference.py) -> VAE encoder -> z_R (+ the square) --------\
    audio pieces -> SpeechLatentStream (Whisper -> SpeechAE) -> E, one chunk at a time -> VideoStream -> frames

The streams are in streams.py, the checkpoint file in checkpoint.py; this class holds the parts and wires them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from .checkpoint import (DELTA_PREFIX, Header, check_fits_in_memory, check_weights, checkpoint_config,
                         checkpoint_metadata, delta_shapes, load_tensors, meta_parts, prefixed, read_safetensors,
                         shapes, weight_deltas, with_deltas)
from .config import RESTConfig, StreamOptions
from .dit import A2VDiT
from .ltx_import import load_ltx_vae
from .reference import CropBox, Reference, mouth_in_square, prepare_reference
from .speech import SAMPLES_PER_LATENT, check_sample_rate, mono_clip
from .speech_ae import SpeechAE
from .streams import SpeechLatents, SpeechLatentStream, VideoChunk, VideoStream, decode_latents
from .vae import CausalVAE
from .whisper import SAMPLE_RATE, WhisperEncoder
from .whisper_import import (check_encoder_shapes, default_whisper_encoder, encoder_from_state_dict,
                             load_whisper_encoder)


def check_compile_works(device: torch.device):
    """torch.compile builds its kernels when they first run, so a machine that cannot build them would fail in the
    middle of a stream: build a one-line function now instead."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(4, device=device))
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        needs = "Triton" if device.type == "cuda" else "a working C++ compiler (g++ or clang++, MSVC on Windows)"
        raise ValueError(f"torch.compile cannot build kernels on this machine ({reason}); it needs {needs}. "
                         f"Run without compile (it only makes the stream faster)") from e


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

    def compile(self, mode: str = "default", device=None) -> "RESTPipeline":
        """Compile the DiT's blocks (torch.compile) in place. The first passes pay for it (15-30 s for rest-demo on a
        2-core CPU, once per process and shape); after that a rest-demo chunk took 0.81x its eager time in bfloat16
        and 0.87x in float32 there (both streamed in turn in one process). `device`: where the model will run
        (default: where the DiT is)."""
        check_compile_works(next(self.dit.parameters()).device if device is None else torch.device(device))
        self.dit.compile_blocks(mode)
        return self

    def parts(self, include_whisper: bool) -> dict[str, nn.Module]:
        parts = {"dit": self.dit, "vae": self.vae, "speech_ae": self.speech_ae}
        return parts | {"whisper": self.whisper} if include_whisper else parts

    def save_pretrained(self, path: str | Path, include_whisper: bool = False, dtype: torch.dtype | None = None,
                        fine_tuned_from: dict[str, nn.Module] | None = None):
        """One .safetensors file; `include_whisper` bundles the speech encoder, `dtype` casts floating tensors.
        `fine_tuned_from`: {part name: the module it was fine-tuned from}: that part is stored as those weights plus
        the change (checkpoint.weight_deltas), which loads as this pipeline's part."""
        tensors = {}
        for name, module in self.parts(include_whisper).items():
            state, deltas = module.state_dict(), {}
            if fine_tuned_from and name in fine_tuned_from:
                base = fine_tuned_from[name].state_dict()
                state, deltas = base, weight_deltas(base, state)
            stored = {f"{name}.{k}": v for k, v in state.items()} | {f"{DELTA_PREFIX}.{name}.{k}": v
                                                                     for k, v in deltas.items()}
            for key, value in stored.items():
                value = value.detach().cpu()
                cast = dtype is not None and value.is_floating_point()
                tensors[key] = (value.to(dtype) if cast else value).contiguous()
        save_file(tensors, str(path), metadata=checkpoint_metadata(self.config))

    @classmethod
    def from_pretrained(cls, path: str | Path, whisper: WhisperEncoder | str | Path | None = None, device="cpu",
                        dtype: torch.dtype = torch.float32, vae: str | Path | None = None) -> "RESTPipeline":
        """Load a checkpoint written by save_pretrained. A bundled speech encoder is used unless `whisper` is given.
        `vae`: published LTX-Video 0.9.0 VAE weights (a diffusers folder or Lightricks' single file) used instead of
        the checkpoint's VAE; its layout must be the checkpoint's (a plain VAE: `rest-2b`)."""
        def config_that_fits(metadata: dict[str, str]) -> RESTConfig:
            config = checkpoint_config(path, metadata)
            check_fits_in_memory(config)
            return config

        def header_that_matches(config: RESTConfig, header: Header):
            """Every tensor the config's parts need, of their shapes, and a bundled speech encoder of Whisper tiny's:
            a file that claims more is refused before any of it is read."""
            part_shapes = {name: shapes(part) for name, part in meta_parts(config).items()}
            expected = {f"{name}.{k}": v for name, found in part_shapes.items() for k, v in found.items()}
            for name, found in part_shapes.items():  # a fine-tuned part's stored change
                expected |= delta_shapes(header, name, found)
            bundled = {k[len("whisper."):]: shape for k, (_, shape) in header.items() if k.startswith("whisper.")}
            if bundled:
                check_encoder_shapes(bundled, f"{path}: its bundled speech encoder")
                expected |= {k: header[k][1] for k in header if k.startswith("whisper.")}
            check_weights(path, header, expected)

        tensors, config = read_safetensors(path, "REST checkpoint", config_that_fits, header_that_matches)
        bundled = prefixed(tensors, "whisper")
        if whisper is None and bundled:
            whisper = encoder_from_state_dict(bundled, where=f"{path}: its bundled speech encoder")
        pipe = cls._build(config, whisper)  # checked before the tensors were read
        for name, module in pipe.parts(include_whisper=False).items():
            state = with_deltas(prefixed(tensors, name), prefixed(tensors, f"{DELTA_PREFIX}.{name}"))
            load_tensors(module, name, state, path)
        if vae is not None:
            ltx = load_ltx_vae(vae)
            if ltx.config != config.vae:
                raise ValueError(f"{vae} is an LTX-Video VAE of another layout than {Path(path).name}'s "
                                 f"({'a reference-conditioned VAE' if config.vae.reference != 'none' else 'its VAE'}: "
                                 f"{config.vae}); an LTX-Video 0.9.0 VAE fits a rest-2b checkpoint")
            pipe.vae = ltx
        return pipe.to(device, dtype)

    # --- generation ------------------------------------------------------------------------------------------

    def encode_reference(self, image, box: CropBox | None = None, mouth=None) -> tuple[Reference, CropBox]:
        """A portrait -> (its Reference: z_R and the square, its crop box: `box`, or the largest centred square).
        `mouth`: where the portrait's mouth is, [x0, y0, x1, y1] in the image's pixels, for a model that draws the
        mouth's shape (else it finds the mouth itself, which on a photograph it can miss)."""
        pixels, box = prepare_reference(image, self.config.resolution, box)
        return self.encode_square(pixels, None if mouth is None else
                                  mouth_in_square(mouth, box, self.config.resolution)), box

    @torch.no_grad()
    def encode_square(self, pixels: Tensor, mouth: Tensor | None = None) -> Reference:
        """The portrait's square as `prepare_reference` gives it, [1, 3, R, R] in [-1, 1] -> its Reference (z_R
        [1, C, 1, h, w] and the square, on the model's device and in its dtype); `mouth`: [1, 4], where its mouth
        is in the square's pixels (`mouth_in_square`), checked here, before any stream starts"""
        p = next(self.vae.parameters())
        pixels = pixels.to(p.device, p.dtype)
        self.vae.check_mouth(mouth, pixels)
        return Reference(self.vae.encode_image(pixels), pixels, None if mouth is None else mouth.to(p.device))

    def options(self, **changes) -> StreamOptions:
        """This model's recommended sampling options (from its checkpoint), with `changes`."""
        return self.config.sampler.replace(**changes)

    def speech_stream(self, sample_rate: int, keep_audio: bool = False) -> SpeechLatentStream:
        return SpeechLatentStream(self.whisper, self.speech_ae, self.config, sample_rate, keep_audio)

    def encode_speech(self, waveform, sample_rate: int,
                      on_second: Callable[[int, int], None] | None = None) -> SpeechLatents:
        """A whole clip (any layout `as_mono` reads) -> its speech latents, computed as a live stream would (a
        second of audio at a time, as exact as all at once). `on_second(done, total)` is called after each second
        (progress bars; raising in it stops the encoding there)."""
        speech = self.speech_stream(sample_rate, keep_audio=True)
        mono = mono_clip(waveform)
        rate = check_sample_rate(sample_rate)
        total = -(-mono.shape[0] // rate)
        chunks = []
        for second in range(total):
            chunks += speech.push(mono[second * rate:(second + 1) * rate])
            if on_second is not None:
                on_second(second + 1, total)
        chunks += speech.finish()
        return SpeechLatents(torch.cat(chunks, dim=1), speech.video_frames, speech.heard.read(0, speech.heard.received))

    def video_stream(self, ref: Reference, options: StreamOptions | None = None, text: Tensor | None = None,
                     on_step: Callable[[int, int], None] | None = None) -> VideoStream:
        """A stream from a portrait's Reference; `options` default to the model's (`options()`); `on_step` as for
        `stream_latents`."""
        return VideoStream(self.dit, self.vae, ref, self.config.chunk_latents,
                           self.options() if options is None else options, text, on_step)

    def stream(self, image, waveform, sample_rate: int, box: CropBox | None = None,
               options: StreamOptions | None = None, mouth=None, **stream_args) -> Iterator[VideoChunk]:
        """A whole clip, streamed: chunks come out as they are made. `box`: the portrait's square (default: the
        largest centred one); `mouth` as for `encode_reference`; `options` and `stream_args` (text, on_step) as for
        `video_stream`."""
        mono = mono_clip(waveform)  # checked here, before any work starts
        step = SAMPLES_PER_LATENT * self.config.chunk_latents * check_sample_rate(sample_rate) // SAMPLE_RATE
        pieces = (mono[i:i + step] for i in range(0, mono.shape[0], step))
        return self.stream_live(image, pieces, sample_rate, box, options, mouth, **stream_args)

    def stream_live(self, image, pieces: Iterable, sample_rate: int, box: CropBox | None = None,
                    options: StreamOptions | None = None, mouth=None, **stream_args) -> Iterator[VideoChunk]:
        """Audio arriving in pieces (any layout `as_mono` reads, at `sample_rate`); the video ends with the audio.
        Each chunk is made as soon as its audio (and the speech lookahead) is in."""
        ref, _ = self.encode_reference(image, box, mouth)
        speech = self.speech_stream(sample_rate)
        video = self.video_stream(ref, options, **stream_args)
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

    def decode_latents(self, ref: Reference, latents: Tensor, video_frames: int | None = None) -> Tensor:
        """Latents of a stream [1, C, K * chunk_latents, h, w] -> its frames (`streams.decode_latents`)."""
        return decode_latents(self.vae, ref, latents, self.config.chunk_latents, video_frames)

    def generate(self, image, waveform, sample_rate: int, box: CropBox | None = None,
                 options: StreamOptions | None = None, **stream_args) -> Tensor:
        """All frames at once: [round(seconds * 25), H, W, 3] float in [0, 1]."""
        return torch.cat([chunk.frames for chunk in self.stream(image, waveform, sample_rate, box, options,
                                                                 **stream_args)])
