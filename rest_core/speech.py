"""Speech on the latent clock (paper eq. 5): audio in; out, for every latent frame, the Whisper
features of its 0.32 s plus a fixed left and right context. Offline and streaming are one code path.

Clock. Generated latent frame j covers video frames 8j .. 8j+7, which is audio samples [5120 j, 5120 (j+1)), mel
frames [32 j, 32 j + 32) and Whisper features [16 j, 16 j + 16). Its window adds `context_left` features before
and `context_right` after: H_w = 16 + left + right features, computed from 2 H_w mel frames that go through the
Whisper encoder on their own. A window so depends only on a fixed span of audio, and it is computed from the
same samples by the same operations (mel in fixed blocks, one window per encoder call) whatever pieces the audio
came in: streaming output equals offline output bit for bit.

Rates. Audio at any other rate is resampled to 16 kHz as it arrives (resample.py), exactly as a whole clip is.

Length. Audio outside [0, N) is silence. A clip of N samples at 16 kHz gives round(N / 640) video frames, at
least 1, and ceil(frames / 8) latent frames; the last latent frame's window is padded with silence. So a clip
shorter than one latent frame, or even than one video frame, still gives one latent frame.

Front end. Mel frame m covers samples [160 m - 200, 160 m + 200), as in Whisper away from the clip edges.
Whisper floors the log-mel at the clip's maximum - 8, which a stream cannot know; here each frame is floored at
the running maximum so far - 8, the running maximum starting at RUNNING_MAX_START.

Lookahead. Window j can be computed once the audio reaches 5120 (j+1) + 320 R + 40 samples (R = context_right):
the right context plus half a mel window. With the presets' R = 8 that is 162.5 ms after the latent frame ends;
input at another rate waits up to about 10.5 ms more for the resampler's block.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from .checks import as_tensor, expect_positive_int, unbatch
from .config import FEATURES_PER_LATENT, FPS, VAE_TEMPORAL
from .resample import SampleBuffer, StreamingResampler
from .whisper import DYNAMIC_RANGE, HOP, N_FFT, SAMPLE_RATE, WhisperEncoder, log_mel_power

SAMPLES_PER_VIDEO_FRAME = SAMPLE_RATE // FPS  # 640
SAMPLES_PER_LATENT = SAMPLES_PER_VIDEO_FRAME * VAE_TEMPORAL  # 5120 = 0.32 s
MEL_PER_LATENT = SAMPLES_PER_LATENT // HOP  # 32 = 2 * FEATURES_PER_LATENT
# A clip normalised to a moderate level peaks near log10 mel power 0. Starting the running maximum there puts the
# leading silence of a stream on the floor Whisper would give such a clip, instead of on the -10 of log10(1e-10).
RUNNING_MAX_START = 0.0
MAX_CHANNELS = 32
EMPTY_AUDIO = "audio is empty: give at least one sample of speech (silence is fine)"


def as_mono(waveform) -> Tensor:
    """A clip or a piece of one -> mono float32 samples at its own rate. [N]

    waveform: [N], [C, N] or [1, C, N] (a ComfyUI AUDIO batch of one), float or integer PCM, any channel count
    (channels are averaged).
    """
    waveform = as_tensor("audio", waveform, "of samples [C, N]")
    x = unbatch("audio", waveform, 3, "give one clip at a time ([1, C, N] or [C, N])")
    if x.dim() == 1:
        x = x[None]
    if x.dim() != 2:
        raise ValueError(f"audio: expected shape [N], [C, N] or [1, C, N], got {list(waveform.shape)}")
    if x.shape[0] > MAX_CHANNELS:
        raise ValueError(f"audio: {x.shape[0]} channels of {x.shape[1]} samples; expected [channels, samples] - "
                         f"transpose a [samples, channels] array first")
    if x.shape[0] == 0:
        raise ValueError("audio has no channels")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"audio: expected real samples, got dtype {x.dtype}")
    if x.dtype == torch.uint8:
        x = (x.double() - 128) / 128  # 8-bit PCM is unsigned, centred on 128
    elif not x.is_floating_point():
        x = x.double() / (torch.iinfo(x.dtype).max + 1)  # integer PCM -> [-1, 1)
    x = x.detach().float().cpu()
    if not torch.isfinite(x).all():
        raise ValueError("audio contains NaN or Inf samples; re-export or re-record the clip")
    # channel by channel: torch's own reduction orders the sum by the tensor's length, so a piece would not
    # average exactly as the same samples inside the whole clip do
    mono = x[0].clone()
    for channel in x[1:]:
        mono += channel
    return mono / x.shape[0]


SPEECH_RATES = (4_000, 192_000)  # Hz: below, nothing of speech is left; above, no audio device records


def check_sample_rate(sample_rate) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral):
        raise ValueError(f"sample_rate: expected a whole number of Hz, got {sample_rate!r}")
    low, high = SPEECH_RATES
    if not low <= sample_rate <= high:
        raise ValueError(f"sample_rate: {sample_rate} Hz is not a rate speech is recorded at; give audio sampled at "
                         f"{low} to {high} Hz (e.g. 16000, 44100 or 48000) or resample it first")
    return int(sample_rate)


def mono_clip(waveform) -> Tensor:
    """`as_mono` of a whole clip, which must have at least one sample. [N]"""
    mono = as_mono(waveform)
    if mono.shape[0] == 0:
        raise ValueError(EMPTY_AUDIO)
    return mono


def prepare_audio(waveform, sample_rate: int) -> Tensor:
    """A whole clip at any rate and channel count -> mono float32 at 16 kHz, as SpeechWindows hears it.
    [ceil(N 16000 / sample_rate)]"""
    resampler = StreamingResampler(check_sample_rate(sample_rate), SAMPLE_RATE)
    mono = mono_clip(waveform)
    return torch.cat([resampler.push(mono), resampler.finish()])


def video_frames(num_samples: int) -> int:
    """Video frames for a clip of `num_samples` 16 kHz samples: the nearest whole frame, at least one."""
    return max(1, (num_samples + SAMPLES_PER_VIDEO_FRAME // 2) // SAMPLES_PER_VIDEO_FRAME)


def latent_frames(num_samples: int) -> int:
    return -(-video_frames(num_samples) // VAE_TEMPORAL)


class SpeechWindows:
    """Whisper features of every latent frame's window, from audio pushed in pieces of any size.

    push(piece) takes audio at `sample_rate` in any layout `as_mono` reads and returns the windows the audio so
    far completes; finish() returns the rest (silence-padded). Each is [F, H_w, width] for F latent frames, in
    order, exactly one per latent frame of the whole clip.

    `batch` windows go through Whisper per call when a piece completes several: one at a time (1) keeps a clip's
    features bit for bit independent of how its audio was cut into pieces; offline preparation batches them (within
    3e-4 of one at a time, below the float16 rounding the prepared clips store them in; Whisper about 12x faster on a
    CPU for a 5 s clip).
    """

    def __init__(self, encoder: WhisperEncoder, context_left: int, context_right: int, sample_rate: int = SAMPLE_RATE,
                 batch: int = 1, keep_audio: bool = False):
        for name, value in (("context_left", context_left), ("context_right", context_right)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected a number of Whisper frames >= 0, got {value!r}")
        self.batch = expect_positive_int("batch", batch)
        self.encoder = encoder
        self.resampler = StreamingResampler(check_sample_rate(sample_rate), SAMPLE_RATE)
        self.left, self.right = context_left, context_right
        self.window = FEATURES_PER_LATENT + context_left + context_right  # H_w
        # mel is computed in blocks that tile every window exactly, so no block is computed twice or needs
        # audio beyond the window
        self.block = 2 * math.gcd(FEATURES_PER_LATENT, context_left + context_right)
        self.blocks_per_latent = MEL_PER_LATENT // self.block
        self.blocks_per_window = 2 * self.window // self.block

        self.buffer = SampleBuffer()  # 16 kHz mono, as far as the windows still need it
        # with keep_audio, every 16 kHz sample heard, until the caller drops it: the audio a player plays under
        # the frames, resampled once
        self.heard = SampleBuffer() if keep_audio else None
        self.mel_blocks: list[Tensor] = []  # finished blocks [n_mels, block], from block index first_block on
        self.first_block = 0
        self.running_max = RUNNING_MAX_START
        self.next_latent = 0
        self.finished = False

    @property
    def lookahead_samples(self) -> int:
        """Audio needed after a latent frame's end before its window can be computed."""
        return self.block_span(self.blocks_per_window - 1)[1] - SAMPLES_PER_LATENT

    def window_end(self, latent: int) -> int:
        """The 16 kHz sample just past the audio that latent frame `latent`'s window reads."""
        return self.block_span(latent * self.blocks_per_latent + self.blocks_per_window - 1)[1]

    def block_span(self, b: int) -> tuple[int, int]:
        """Samples [start, stop) that mel block b reads; block 0 starts context_left features before sample 0."""
        first_mel = b * self.block - 2 * self.left
        return HOP * first_mel - N_FFT // 2, HOP * (first_mel + self.block - 1) + N_FFT // 2

    def push(self, piece) -> Tensor:
        if self.finished:
            raise ValueError("this speech stream is finished; start a new one for more audio")
        self.hear(self.resampler.push(as_mono(piece)))
        ready = []
        while self.window_end(self.next_latent) <= self.received:
            ready.append(self.next_mel())
        return self.encode(ready)

    def finish(self, multiple: int = 1) -> Tensor:
        """The remaining windows. `multiple` rounds the clip's latent frames up to a multiple of it (whole chunks),
        the extra frames seeing silence."""
        if self.finished:
            raise ValueError("this speech stream is already finished")
        self.finished = True
        self.hear(self.resampler.finish())
        if self.received == 0:
            raise ValueError(EMPTY_AUDIO)
        total = -(-latent_frames(self.received) // multiple) * multiple
        return self.encode([self.next_mel() for _ in range(self.next_latent, total)])

    def hear(self, samples: Tensor):
        self.buffer.append(samples)
        if self.heard is not None:
            self.heard.append(samples)

    @property
    def received(self) -> int:
        """16 kHz samples received so far."""
        return self.buffer.received

    @torch.no_grad()
    def encode(self, mels: list[Tensor]) -> Tensor:
        """Whisper features of mel windows, `batch` windows per encoder call. [F, H_w, width]"""
        p = next(self.encoder.parameters())
        if not mels:
            return torch.zeros(0, self.window, self.encoder.width, device=p.device, dtype=p.dtype)
        return torch.cat([self.encoder(torch.stack(mels[i:i + self.batch]).to(p.dtype))
                          for i in range(0, len(mels), self.batch)])

    def next_mel_block(self) -> Tensor:
        b = self.first_block + len(self.mel_blocks)
        device = next(self.encoder.parameters()).device
        raw = log_mel_power(self.buffer.read(*self.block_span(b)).to(device))  # [n_mels, block]
        running = torch.cummax(torch.cat([raw.new_tensor([self.running_max]), raw.amax(dim=0)]), dim=0).values[1:]
        self.running_max = running[-1].item()
        return (torch.maximum(raw, running - DYNAMIC_RANGE) + 4.0) / 4.0

    def next_mel(self) -> Tensor:
        """The log-mel window of latent frame `next_latent`; the stream moves past it. [n_mels, 2 H_w]"""
        first = self.next_latent * self.blocks_per_latent
        while self.first_block + len(self.mel_blocks) < first + self.blocks_per_window:
            self.mel_blocks.append(self.next_mel_block())
        offset = first - self.first_block
        mel = torch.cat(self.mel_blocks[offset:offset + self.blocks_per_window], dim=1)

        self.next_latent += 1
        keep_from = self.next_latent * self.blocks_per_latent
        del self.mel_blocks[:keep_from - self.first_block]
        self.first_block = keep_from
        self.buffer.drop_before(self.block_span(self.first_block + len(self.mel_blocks))[0])
        return mel


def speech_features(encoder: WhisperEncoder, waveform, sample_rate: int, context_left: int,
                    context_right: int, batch: int = 1) -> Tensor:
    """The windows of a whole clip at once: the same as streaming it (bit for bit with batch 1, see SpeechWindows).
    [latent_frames(16 kHz length), H_w, width]"""
    stream = SpeechWindows(encoder, context_left, context_right, sample_rate, batch)
    return torch.cat([stream.push(waveform), stream.finish()])
