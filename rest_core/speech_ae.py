"""SpeechAE (paper eq. 6): E = E_A(S), S_hat = D_A(E).

The encoder reads one latent frame's window of Whisper features S ([H_w, 384]: the frame's own 16 features and
its context) and compresses it to the frame's speech latent e_j, h_w tokens of width d_A. The decoder rebuilds
the frame's own 16 features from e_j alone. Training minimises the reconstruction error, so e_j must carry what
was said during the latent frame; the context only helps the encoder read it.

READ, which introduced SpeechAE, publishes no code or layer sizes; this is our design. Both halves are small
pre-norm transformers that run learned query tokens together with their input and keep the queries' outputs
(h_w speech tokens in the encoder, 16 feature slots in the decoder): the compression is learned attention, not a
fixed pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .attention import attention
from .checks import expect_finite, expect_shape
from .config import FEATURES_PER_LATENT, RESTConfig, SpeechConfig


class Block(nn.Module):
    """Pre-norm transformer block: self-attention over all tokens, then a GELU MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(self.attn_norm(x)), "b t (three h d) -> three b h t d", three=3, h=self.heads)
        x = x + self.proj(rearrange(attention(q, k, v), "b h t d -> b t (h d)"))
        return x + self.mlp(self.mlp_norm(x))


class QueryTransformer(nn.Module):
    """[B, n_in, d_in] -> [B, n_out, d_out]: n_out learned queries read the input tokens through shared blocks."""

    def __init__(self, n_in: int, d_in: int, n_out: int, d_out: int, config: SpeechConfig):
        super().__init__()
        self.n_out = n_out
        self.in_proj = nn.Linear(d_in, config.hidden)
        self.pos = nn.Parameter(torch.randn(n_in, config.hidden) * 0.02)
        self.queries = nn.Parameter(torch.randn(n_out, config.hidden) * 0.02)
        self.blocks = nn.ModuleList(Block(config.hidden, config.heads) for _ in range(config.depth))
        self.out_norm = nn.LayerNorm(config.hidden)
        self.out_proj = nn.Linear(config.hidden, d_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_proj(x) + self.pos  # [B, n_in, D]
        x = torch.cat([self.queries.expand(x.shape[0], -1, -1), x], dim=1)  # [B, n_out + n_in, D]
        for block in self.blocks:
            x = block(x)
        return self.out_proj(self.out_norm(x[:, :self.n_out]))


class SpeechAE(nn.Module):
    def __init__(self, config: SpeechConfig, tokens: int, dim: int):
        super().__init__()
        self.config, self.tokens, self.dim = config, tokens, dim
        self.encoder = QueryTransformer(config.window, config.feature_dim, tokens, dim, config)
        self.decoder = QueryTransformer(tokens, dim, FEATURES_PER_LATENT, config.feature_dim, config)

    @classmethod
    def from_config(cls, config: RESTConfig) -> "SpeechAE":
        return cls(config.speech, config.dit.speech_tokens, config.dit.speech_dim)

    def check_windows(self, windows: Tensor) -> Tensor:
        expect_shape("speech windows", windows, [("F", None), ("H_w", self.config.window),
                                                 ("feature_dim", self.config.feature_dim)])
        return expect_finite("speech windows", windows)

    def encode(self, windows: Tensor) -> Tensor:
        """Whisper feature windows [F, H_w, feature_dim] -> speech latents E [F, h_w, d_A], one group per frame."""
        return self.encoder(self.check_windows(windows))

    def decode(self, latents: Tensor) -> Tensor:
        """E [F, h_w, d_A] -> the frames' own Whisper features [F, 16, feature_dim]."""
        expect_shape("speech latents", latents, [("F", None), ("h_w", self.tokens), ("d_A", self.dim)])
        return self.decoder(latents)

    def centre(self, windows: Tensor) -> Tensor:
        """The latent frames' own features inside their windows. [F, 16, feature_dim]"""
        left = self.config.context_left
        return windows[:, left:left + FEATURES_PER_LATENT]

    def loss(self, windows: Tensor) -> Tensor:
        """Reconstruction loss: mean squared error of the rebuilt features of each latent frame."""
        return F.mse_loss(self.decode(self.encode(windows)), self.centre(windows))
