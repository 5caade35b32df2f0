"""Resampling of audio that arrives in pieces, with the same result as resampling the whole clip.

The filter is torchaudio's windowed-sinc kernel (`torchaudio.transforms.Resample`). In polyphase form the rates
reduce to o input and n output samples per period (48 kHz -> 16 kHz: o = 3, n = 1; 44.1 kHz: o = 441, n = 160),
and output period f reads the K = 2 w + o input samples starting at f o - w. Periods are computed in blocks of a
fixed size, each one conv1d over its own fixed slice of input, so the arithmetic never depends on how the audio
was split. Whole clips go through the same object.

Latency: a block waits for the input that its last period reads, at most about 10 ms of output plus the filter's
half-width w (0.4 ms at 48 kHz).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor

BLOCK_OUTPUT = 160  # output samples per block, at least: 10 ms at 16 kHz


def resampled_length(num_samples: int, orig_freq: int, new_freq: int) -> int:
    """Samples a clip of `num_samples` has after resampling: ceil(N new / orig), as torchaudio gives."""
    return -(-num_samples * new_freq // orig_freq)


class SampleBuffer:
    """The received part of a mono stream that is still needed, addressed by absolute sample index."""

    def __init__(self):
        self.audio = torch.zeros(0)  # samples from absolute index `start` on
        self.start = 0
        self.received = 0

    def append(self, samples: Tensor):
        self.audio = torch.cat([self.audio, samples])
        self.received += samples.shape[0]

    def read(self, start: int, stop: int) -> Tensor:
        """Samples [start, stop), silence outside what was received (before 0, after the end)."""
        out = torch.zeros(stop - start)
        lo, hi = max(start, self.start), min(stop, self.received)
        if hi > lo:
            out[lo - start:hi - start] = self.audio[lo - self.start:hi - self.start]
        return out

    def drop_before(self, index: int):
        """Forget samples before `index` (never beyond what was received)."""
        keep = min(index, self.received)
        if keep > self.start:
            self.audio = self.audio[keep - self.start:]
            self.start = keep


class StreamingResampler:
    """Mono float32 audio at `orig_freq` pushed in pieces -> the same audio at `new_freq`, in order."""

    def __init__(self, orig_freq: int, new_freq: int):
        self.gcd = math.gcd(orig_freq, new_freq)
        self.o, self.n = orig_freq // self.gcd, new_freq // self.gcd
        self.identity = orig_freq == new_freq
        if not self.identity:
            # the kernel of the functional form
            resample = torchaudio.transforms.Resample(orig_freq, new_freq, dtype=torch.float32)
            self.kernel, self.width = resample.kernel, resample.width  # [n, 1, 2 w + o]
        self.periods = -(-BLOCK_OUTPUT // self.n)  # per block
        self.buffer = SampleBuffer()
        self.next_block = 0
        self.emitted = 0  # output samples returned so far
        self.finished = False

    def block_input(self, b: int) -> tuple[int, int]:
        """Input samples [start, stop) that block b reads."""
        first = b * self.periods * self.o - self.width
        return first, first + (self.periods - 1) * self.o + self.kernel.shape[-1]

    def push(self, samples: Tensor) -> Tensor:
        if self.finished:
            raise ValueError("this resampler is finished; start a new one for more audio")
        if self.identity:
            self.buffer.received += samples.shape[0]  # counted only: nothing to keep
            return samples
        self.buffer.append(samples)
        blocks = []
        while self.block_input(self.next_block)[1] <= self.buffer.received:
            blocks.append(self.run_block())
        return self.emit(blocks, limit=None)

    def finish(self) -> Tensor:
        """The rest of the output: the input ends here, silence after it. Total ceil(N new / orig) samples."""
        if self.finished:
            raise ValueError("this resampler is already finished")
        self.finished = True
        total = resampled_length(self.buffer.received, self.o, self.n)
        if self.identity:
            return torch.zeros(0)
        blocks = []
        while self.next_block * self.periods * self.n < total:
            blocks.append(self.run_block())
        return self.emit(blocks, limit=total)

    def emit(self, blocks: list[Tensor], limit: int | None) -> Tensor:
        out = torch.cat(blocks) if blocks else torch.zeros(0)
        if limit is not None:
            out = out[:max(0, limit - self.emitted)]
        self.emitted += out.shape[0]
        return out

    def run_block(self) -> Tensor:
        piece = self.buffer.read(*self.block_input(self.next_block))
        out = F.conv1d(piece[None, None], self.kernel, stride=self.o)  # [1, n, periods]
        self.next_block += 1
        self.buffer.drop_before(self.block_input(self.next_block)[0])
        return out[0].T.reshape(-1)  # periods in order, n outputs each
