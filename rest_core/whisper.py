"""Whisper's log-mel front end and its audio encoder (paper eq. 5: S = E_Whisper(A)).

Both follow openai-whisper exactly, so published weights load as they are: the front end is Whisper's
`log_mel_spectrogram` (Hann window 400, hop 160, 80 Slaney mels, log10, floor at max - 8, (x + 4) / 4) and the
encoder is two convolutions (the second with stride 2: 100 mel frames/s -> 50 features/s) and pre-norm
transformer blocks. Parameter names are openai's `AudioEncoder` names.

Unlike Whisper we do not pad the input to 30 s: the positional table is sliced to the input's length, so a
0.64 s window costs 0.64 s of compute. The streaming front end (running instead of global max) is in speech.py.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
import torchaudio
from einops import rearrange
from torch import Tensor, nn

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms analysis window
HOP = 160  # 10 ms: 100 mel frames per second
N_MELS = 80
LOG_FLOOR = 1e-10  # mel power floor before log10
DYNAMIC_RANGE = 8.0  # log10 units kept below the loudest frame (80 dB)


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int = N_MELS) -> Tensor:
    """Slaney-scale, Slaney-normalised mel bank, the one Whisper ships (librosa's). [n_mels, N_FFT // 2 + 1]"""
    return torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE,
                                                 norm="slaney", mel_scale="slaney").T.contiguous()


def log_mel_power(frames_audio: Tensor, n_mels: int = N_MELS) -> Tensor:
    """log10 mel power of every full 400-sample window at hop 160, no padding. [..., N] -> [..., n_mels, frames]"""
    window = torch.hann_window(N_FFT, device=frames_audio.device)
    spec = torch.stft(frames_audio, N_FFT, HOP, window=window, center=False, return_complex=True)
    mel = mel_filters(n_mels).to(frames_audio.device) @ spec.abs() ** 2
    return torch.clamp(mel, min=LOG_FLOOR).log10()


def log_mel_spectrogram(audio: Tensor, n_mels: int = N_MELS) -> Tensor:
    """Whisper's front end on a whole clip: [..., N] 16 kHz -> [..., n_mels, N // 160], floored at the clip's max - 8.

    Frame m is centred on sample 160 m; the edges are reflect-padded and the last frame dropped, as Whisper does.
    """
    half = N_FFT // 2
    if audio.shape[-1] <= half:
        raise ValueError(f"audio: {audio.shape[-1]} samples is too short for Whisper's front end; give at least "
                         f"{half + 1} samples (12.6 ms at 16 kHz)")
    padded = F.pad(audio.reshape(-1, 1, audio.shape[-1]), (half, half), mode="reflect").reshape(*audio.shape[:-1], -1)
    log_spec = log_mel_power(padded, n_mels)[..., :-1]
    log_spec = torch.maximum(log_spec, log_spec.amax(dim=(-2, -1), keepdim=True) - DYNAMIC_RANGE)
    return (log_spec + 4.0) / 4.0


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> Tensor:
    """Whisper's fixed positional table: [sin | cos] halves over geometric timescales. [length, channels]"""
    scales = torch.exp(-torch.log(torch.tensor(max_timescale)) / (channels // 2 - 1) * torch.arange(channels // 2))
    angle = torch.arange(length)[:, None] * scales[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=1)


class MultiHeadAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)  # a key bias shifts every score of a query equally
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (rearrange(proj(x), "b t (h d) -> b h t d", h=self.heads)
                   for proj in (self.query, self.key, self.value))
        return self.out(rearrange(F.scaled_dot_product_attention(q, k, v), "b h t d -> b t (h d)"))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn_ln = nn.LayerNorm(width)
        self.attn = MultiHeadAttention(width, heads)
        self.mlp_ln = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder; tiny by default (4 blocks, width 384, 6 heads): 7.63 M parameters."""

    def __init__(self, n_mels: int = N_MELS, width: int = 384, heads: int = 6, layers: int = 4, n_ctx: int = 1500):
        super().__init__()
        self.n_mels, self.width, self.heads, self.n_ctx = n_mels, width, heads, n_ctx
        self.conv1 = nn.Conv1d(n_mels, width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(n_ctx, width))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.ln_post = nn.LayerNorm(width)

    def forward(self, mel: Tensor) -> Tensor:
        """mel: [B, n_mels, T] log-mel frames (100 Hz) -> [B, ceil(T / 2), width] features (50 Hz)."""
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"mel: expected shape [B, n_mels={self.n_mels}, T], got {list(mel.shape)}")
        positions = (mel.shape[2] + 1) // 2
        if positions > self.n_ctx:
            raise ValueError(f"mel: {mel.shape[2]} frames give {positions} positions; the encoder has "
                             f"{self.n_ctx} (30 s): split longer audio into windows")
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x))  # [B, width, T/2]
        x = rearrange(x, "b c t -> b t c") + self.positional_embedding[:positions]
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)
