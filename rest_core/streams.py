"""The two push-driven streams of a pipeline: audio pieces -> speech latents, and speech latents -> video chunks.

    audio pieces -> SpeechLatentStream (Whisper -> SpeechAE) -> E, one chunk at a time -> VideoStream
                                                              (stream_latents -> VAE decode_stream) -> frames

Audio goes in as it arrives and each chunk of video is made as soon as its speech is in, so the first chunk needs
only the first chunk of audio (plus the speech lookahead), and a live stream can wait for more audio between calls.
A stream of K chunks yields 24 K frames, minus the trim of the last chunk: the video has exactly `video_frames` of
the 16 kHz audio, round(seconds * 25), at least one. The last chunk's missing speech is silence.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from .config import RESTConfig, StreamOptions
from .dit import A2VDiT
from .reference import Reference
from .resample import SampleBuffer
from .sampling import stream_latents
from .speech import SpeechWindows, video_frames
from .speech_ae import SpeechAE
from .vae import CausalVAE
from .whisper import WhisperEncoder


@dataclass
class VideoChunk:
    index: int
    frames: Tensor  # [n, H, W, 3] float in [0, 1] on the CPU; n = 24 except for a trimmed last chunk
    latents: Tensor  # [1, C, chunk_latents, h, w]
    first_frame: int  # position of frames[0] in the whole video


@dataclass
class SpeechLatents:
    """A whole clip's speech latents, the length of the video they make and the audio the model heard."""

    latents: Tensor  # [1, K * chunk_latents, h_w, d_A]: whole chunks, the last one silence-padded
    video_frames: int  # round(seconds * 25), at least 1
    audio_16k: Tensor  # [N] mono at 16 kHz


class SpeechLatentStream:
    """Audio pieces pushed in -> speech latents E, one chunk of latent frames at a time.

    `push` returns the chunks its piece completed (each needs the speech lookahead past its end); `finish` pads the
    last chunk with silence and sets `video_frames`, the clip's frame count (None until then). With `keep_audio`,
    `heard` holds the 16 kHz audio the model heard until the caller drops it (a player plays it under the frames)."""

    def __init__(self, whisper: WhisperEncoder, speech_ae: SpeechAE, config: RESTConfig, sample_rate: int,
                 keep_audio: bool = False):
        self.windows = SpeechWindows(whisper, config.speech.context_left, config.speech.context_right, sample_rate,
                                     keep_audio=keep_audio)
        self.speech_ae, self.chunk = speech_ae, config.chunk_latents
        self.ready: list[Tensor] = []  # windows not yet grouped into a chunk
        self.video_frames: int | None = None

    @property
    def heard(self) -> SampleBuffer | None:
        return self.windows.heard

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

    def __init__(self, dit: A2VDiT, vae: CausalVAE, ref: Reference, chunk_latents: int, options: StreamOptions,
                 text: Tensor | None = None, on_step: Callable[[int, int], None] | None = None):
        self.waiting: deque[Tensor] = deque()  # speech latents added, not yet denoised
        self.latents = stream_latents(dit, ref.latent, self._speech(), text, chunk_latents=chunk_latents,
                                      options=options, on_step=on_step)
        self.vae, self.video_frames, self.made = vae, None, 0
        self.vae_state = primed_decoder(vae, ref)

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


def to_images(video: Tensor) -> Tensor:
    """VAE output [1, 3, T, H, W] in about [-1, 1] -> [T, H, W, 3] float in [0, 1] on the CPU."""
    return ((video[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).cpu()


@torch.no_grad()
def primed_decoder(vae: CausalVAE, ref: Reference):
    """A causal decoder state that has seen z_R [1, C, 1, h, w], as every stream's decoder starts: the reference
    primes it and is not shown (a reference-conditioned VAE also keeps the portrait's features in it)."""
    p = next(vae.parameters())
    ref = ref.to(p.device, p.dtype)
    state = vae.decode_start(ref.pixels, ref.mouth)
    vae.decode_stream(ref.latent, state)
    return state


def decode_chunk(vae: CausalVAE, latents: Tensor, state) -> tuple[Tensor, object]:
    """One chunk [1, C, c, h, w] through the causal decoder -> ([8 c, H, W, 3] in [0, 1] on the CPU, new state)"""
    frames, state = vae.decode_stream(latents.to(next(vae.parameters()).dtype), state)
    return to_images(frames), state


@torch.no_grad()
def decode_latents(vae: CausalVAE, ref: Reference, latents: Tensor, chunk_latents: int,
                   video_frames: int | None = None) -> Tensor:
    """Latents of a stream [1, C, K * chunk_latents, h, w] -> its frames [n, H, W, 3] in [0, 1], decoded chunk by
    chunk as the stream was, cut to `video_frames` when given."""
    state = primed_decoder(vae, ref)
    frames = []
    for chunk in latents.split(chunk_latents, dim=2):
        decoded, state = decode_chunk(vae, chunk, state)
        frames.append(decoded)
    return torch.cat(frames)[:video_frames]
