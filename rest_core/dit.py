"""The A2V-DiT (paper §3.2): a latent video diffusion transformer conditioned on a reference frame and speech.

Patch size 1, so every latent voxel is a token; tokens are ordered (f h w). Each block:
  1. self-attention over [ID sink || context || current chunk] with RoPE over (t, h, w)   (eq. 10-12)
  2. text cross-attention (optional; LTX-Video style, no norm before it)
  3. frame-level speech cross-attention: tokens of latent frame j see only the speech tokens e_j   (eq. 13)
  4. feed-forward
with AdaLN-single modulation from per-token timesteps (the reference is always at t = 0).

The blocks do not know how they are run. Self-attention hands its queries/keys/values to an `attend` object:
`SinkFill` / `ChunkStep` (cache.py) for streaming, `SequenceAttention` (below) for the whole sequence
`[z_R || chunk_1 .. chunk_K]` under the streaming block mask or global attention (the non-streaming teacher).

Joint CFG batches the conditional and the null branch: the first `n_cond` rows are conditioned, the rest get no
text and no speech. The reference tokens never take text or speech, so the ID sink is the same in both branches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .cache import ChunkStep, IDContextCache, SinkFill
from .checks import expect_shape
from .config import DiTConfig
from .rope import apply_rope, chunk_times, grid_positions, rotary_table, sink_time

TIMESTEP_FREQ_DIM = 256
TIMESTEP_SCALE = 1000.0  # flow time t in [0, 1] is embedded as t * 1000, like PixArt / LTX-Video


def timestep_sinusoid(t: Tensor, dim: int = TIMESTEP_FREQ_DIM) -> Tensor:
    """[...] -> [..., dim], cos first."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angle = (t.float() * TIMESTEP_SCALE)[..., None] * freqs
    return torch.cat([angle.cos(), angle.sin()], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.linear_1 = nn.Linear(TIMESTEP_FREQ_DIM, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, t: Tensor) -> Tensor:
        x = timestep_sinusoid(t).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(x)))


class AdaLNSingle(nn.Module):
    """One timestep MLP for the whole network (PixArt-alpha); each block adds its own learned table."""

    def __init__(self, hidden: int):
        super().__init__()
        self.emb = TimestepEmbedder(hidden)
        self.linear = nn.Linear(hidden, 6 * hidden)

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """t: [B, N] -> modulation [B, N, 6, D] and the embedded timestep [B, N, D] for the output head."""
        emb = self.emb(t)
        mod = self.linear(F.silu(emb))
        return rearrange(mod, "b n (six d) -> b n six d", six=6), emb


class Attention(nn.Module):
    """Multi-head attention projections with RMS q/k norm over the whole inner dim (LTX-Video)."""

    def __init__(self, hidden: int, heads: int, kv_dim: int, eps: float):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(hidden, hidden)
        self.to_k = nn.Linear(kv_dim, hidden)
        self.to_v = nn.Linear(kv_dim, hidden)
        self.q_norm = nn.RMSNorm(hidden, eps=eps)
        self.k_norm = nn.RMSNorm(hidden, eps=eps)
        self.to_out = nn.Linear(hidden, hidden)

    def split(self, x: Tensor) -> Tensor:
        return rearrange(x, "b n (h d) -> b h n d", h=self.heads)

    def query(self, x: Tensor) -> Tensor:
        return self.split(self.q_norm(self.to_q(x)))

    def keys_values(self, c: Tensor) -> tuple[Tensor, Tensor]:
        return self.split(self.k_norm(self.to_k(c))), self.split(self.to_v(c))

    def out(self, o: Tensor) -> Tensor:
        return self.to_out(rearrange(o, "b h n d -> b n (h d)"))


class FeedForward(nn.Module):
    def __init__(self, hidden: int, mult: int, gelu: str):
        super().__init__()
        self.fc1 = nn.Linear(hidden, mult * hidden)
        self.fc2 = nn.Linear(mult * hidden, hidden)
        self.gelu = gelu

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.gelu))


class Block(nn.Module):
    def __init__(self, cfg: DiTConfig, index: int):
        super().__init__()
        self.index = index
        d = cfg.hidden
        self.norm1 = nn.RMSNorm(d, eps=cfg.norm_eps, elementwise_affine=False)
        self.attn1 = Attention(d, cfg.heads, d, cfg.norm_eps)
        self.attn2 = Attention(d, cfg.heads, d, cfg.norm_eps) if cfg.text_dim else None
        self.speech_norm = nn.RMSNorm(d, eps=cfg.norm_eps, elementwise_affine=False)
        self.speech_attn = Attention(d, cfg.heads, cfg.speech_dim, cfg.norm_eps)
        self.norm2 = nn.RMSNorm(d, eps=cfg.norm_eps, elementwise_affine=False)
        self.ff = FeedForward(d, cfg.ffn_mult, cfg.ffn_gelu)
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) / d**0.5)

    def forward(self, x, mod, attend, text_kv, speech, n_ref, frame_tokens):
        """x: [B, N, D]; mod: [B, N|1, 6, D]; speech: [Bc, F, h_w, d_A] for the first Bc rows (or None);
        the first `n_ref` tokens are the reference frame, which takes no text or speech."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (self.scale_shift_table + mod).unbind(2)

        h = self.norm1(x) * (1 + scale_msa) + shift_msa
        q, (k, v) = self.attn1.query(h), self.attn1.keys_values(h)
        x = x + gate_msa * self.attn1.out(attend(self.index, q, k, v))

        if speech is not None and n_ref < x.shape[1]:
            x = self.cross(x, text_kv, speech, n_ref, frame_tokens)

        h = self.norm2(x) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * self.ff(h)

    def cross(self, x, text_kv, speech, n_ref, frame_tokens):
        n_cond = speech.shape[0]
        c = x[:n_cond, n_ref:]  # [Bc, F*S, D]
        if text_kv is not None:
            k, v = text_kv
            q = self.attn2.query(c)
            c = c + self.attn2.out(F.scaled_dot_product_attention(q, k[:n_cond], v[:n_cond]))
        # eq. 13: fold latent frames into the batch so frame j attends only to its own speech tokens e_j
        frames = speech.shape[1]
        q = self.speech_attn.query(rearrange(self.speech_norm(c), "b (f s) d -> (b f) s d", f=frames, s=frame_tokens))
        k, v = self.speech_attn.keys_values(rearrange(speech, "b f n a -> (b f) n a"))
        o = self.speech_attn.out(F.scaled_dot_product_attention(q, k, v))  # [(B F), S, D]
        c = c + rearrange(o, "(b f) s d -> b (f s) d", f=frames)
        conditioned = torch.cat([x[:n_cond, :n_ref], c], dim=1)
        return torch.cat([conditioned, x[n_cond:]], dim=0)


class SequenceAttention:
    """Self-attention over the whole sequence [z_R || chunk_0 .. chunk_{K-1}] that reproduces streaming.

    Keys are laid out as [K copies of the sink || all chunk tokens]: copy k carries the sink's RoPE for chunk k's
    window, so chunk k sees the reference exactly where streaming puts it. The reference queries see copy 0.
    `global_attention` gives the non-streaming teacher: each chunk sees its sink copy and every chunk.
    """

    def __init__(self, cfg: DiTConfig, *, chunks, chunk_latents, latent_size, device, dtype,
                 global_attention=False, id_sink=True, context_cache=True):
        S = latent_size * latent_size
        L = chunk_latents * S
        self.chunks, self.sink_tokens = chunks, S

        def table(times):
            return rotary_table(grid_positions(times, latent_size), cfg.head_dim, cfg.rope_theta, dtype, device)

        token_times = torch.cat([chunk_times(k, chunk_latents) for k in range(chunks)])
        sink_times = torch.tensor([sink_time(k, chunk_latents) for k in range(chunks)])
        self.rope_tokens = table(token_times)  # [K*L, .]
        self.rope_sinks = table(sink_times)  # [K*S, .]
        self.rope_queries = table(torch.cat([sink_times[:1], token_times]))  # [S + K*L, .]

        mask = torch.zeros(S + chunks * L, chunks * S + chunks * L, dtype=torch.bool)
        first = chunks * S  # key column where the chunk tokens start
        mask[:S, :S] = True  # the reference sees itself
        for k in range(chunks):
            rows = slice(S + k * L, S + (k + 1) * L)
            if global_attention or id_sink or k == 0:
                mask[rows, k * S : (k + 1) * S] = True
            if global_attention:
                mask[rows, first:] = True
            elif context_cache and k > 0:
                mask[rows, first + (k - 1) * L : first + k * L] = True
            mask[rows, first + k * L : first + (k + 1) * L] = True
        self.mask = mask.to(device)

    def __call__(self, block: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        S, K = self.sink_tokens, self.chunks
        q = apply_rope(q, self.rope_queries)
        keys = torch.cat([apply_rope(k[:, :, :S].repeat(1, 1, K, 1), self.rope_sinks),
                          apply_rope(k[:, :, S:], self.rope_tokens)], dim=2)
        values = torch.cat([v[:, :, :S].repeat(1, 1, K, 1), v[:, :, S:]], dim=2)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=self.mask)


def sequence_timesteps(chunk_t: Tensor, chunk_latents: int, latent_size: int) -> Tensor:
    """One t per chunk (eq. 15) -> one t per token of [z_R || chunks], the reference at 0.  [B, K] -> [B, N]"""
    per_chunk = chunk_latents * latent_size * latent_size
    ref = torch.zeros(chunk_t.shape[0], latent_size * latent_size, device=chunk_t.device, dtype=chunk_t.dtype)
    return torch.cat([ref, chunk_t.repeat_interleave(per_chunk, dim=1)], dim=1)


class A2VDiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden
        self.patchify_proj = nn.Linear(cfg.in_channels, d)
        self.adaln_single = AdaLNSingle(d)
        self.caption_projection = None
        if cfg.text_dim:
            self.caption_projection = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"),
                                                    nn.Linear(d, d))
        self.transformer_blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.depth))
        self.norm_out = nn.LayerNorm(d, eps=cfg.norm_eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(2, d) / d**0.5)
        self.proj_out = nn.Linear(d, cfg.in_channels)

    # --- shared pieces --------------------------------------------------------------------------------------

    def text_kv(self, text: Tensor | None) -> list[tuple[Tensor, Tensor] | None]:
        """Per-block text keys/values.  text: [B, Lt, text_dim]"""
        if text is None or self.caption_projection is None:
            return [None] * self.cfg.depth
        c = self.caption_projection(text)
        return [blk.attn2.keys_values(c) for blk in self.transformer_blocks]

    def run_blocks(self, latents, t, attend, text_kv, speech, n_ref=0):
        """latents: [B, C, F, h, w]; t: [B] or [B, N]  ->  hidden states [B, N, D] and the timestep embedding."""
        frame_tokens = latents.shape[-1] * latents.shape[-2]
        x = self.patchify_proj(rearrange(latents, "b c f h w -> b (f h w) c"))
        mod, t_emb = self.adaln_single(t if t.dim() == 2 else t[:, None])
        for blk, kv in zip(self.transformer_blocks, text_kv):
            x = blk(x, mod, attend, kv, speech, n_ref, frame_tokens)
        return x, t_emb

    def head(self, x: Tensor, t_emb: Tensor, h: int, w: int) -> Tensor:
        """Hidden states [B, F*h*w, D] -> velocity latents [B, C, F, h, w]."""
        shift, scale = (self.scale_shift_table + t_emb[:, :, None]).unbind(2)
        v = self.proj_out(self.norm_out(x) * (1 + scale) + shift)
        return rearrange(v, "b (f h w) c -> b c f h w", h=h, w=w)

    def check_timesteps(self, t: Tensor, rows: int, tokens: int):
        if t.dim() == 1:
            expect_shape("t", t, [("B", rows)])
        else:
            expect_shape("t", t, [("B", rows), ("tokens", tokens)])

    def check_speech(self, speech: Tensor, rows: int, frames: int):
        expect_shape("speech", speech, [("B", None), ("frames", frames), ("h_w", self.cfg.speech_tokens),
                                        ("d_A", self.cfg.speech_dim)])
        if speech.shape[0] > rows:
            raise ValueError(f"speech: {speech.shape[0]} rows of speech for {rows} rows of latents")

    # --- streaming ------------------------------------------------------------------------------------------

    def prefill(self, cache: IDContextCache, ref_latent: Tensor, text: Tensor | None = None):
        """Write the ID sink (the reference at t = 0) and the text keys/values into a fresh cache.
        ref_latent: [B, C, 1, h, w]; text: [B, Lt, text_dim]"""
        if cache.text_k is not None:
            for i, (k, v) in enumerate(self.text_kv(text)):
                cache.fill_text(i, k, v)
        t = torch.zeros(ref_latent.shape[0], device=ref_latent.device)
        self.run_blocks(ref_latent, t, SinkFill(cache), [None] * self.cfg.depth, speech=None)

    def forward_chunk(self, x: Tensor, t: Tensor, speech: Tensor, cache: IDContextCache, chunk_index: int,
                      commit: bool = False) -> Tensor:
        """Velocity of one chunk through the ID-Context Cache.

        x: [rows, C, c, h, w] noisy chunk; t: [rows] or [rows, L]; speech: [Bc, c, h_w, d_A] for the first Bc rows
        (rows beyond Bc are the Joint-CFG null branch). `chunk_index` only decides which cache slots are visible.
        """
        c, size = cache.chunk_latents, cache.latent_size
        rows = expect_shape("x", x, [("rows", None), ("C", self.cfg.in_channels), ("chunk_latents", c),
                                     ("h", size), ("w", size)]).shape[0]
        if rows > cache.k.shape[1]:
            raise ValueError(f"x: {rows} rows but the cache holds {cache.k.shape[1]} (batch x CFG branches)")
        self.check_timesteps(t, rows, cache.chunk_tokens)
        self.check_speech(speech, rows, c)
        text_kv = [cache.text_kv(i, rows) for i in range(self.cfg.depth)]
        hidden, t_emb = self.run_blocks(x, t, ChunkStep(cache, chunk_index, commit), text_kv, speech)
        return self.head(hidden, t_emb, size, size)

    # --- whole sequence -------------------------------------------------------------------------------------

    def forward_sequence(self, latents: Tensor, t: Tensor, speech: Tensor, text: Tensor | None = None, *,
                         chunk_latents: int, global_attention: bool = False, id_sink: bool = True,
                         context_cache: bool = True) -> Tensor:
        """Velocity of every chunk of [z_R || chunk_0 .. chunk_{K-1}] in one pass.

        latents: [B, C, 1 + K*c, h, w] with the reference first; t: [B, N] per token, reference tokens at 0
        (`sequence_timesteps`); speech: [Bc, K*c, h_w, d_A]. Returns the chunks' velocity [B, C, K*c, h, w].
        """
        expect_shape("latents", latents, [("B", None), ("C", self.cfg.in_channels), ("1+K*chunk_latents", None),
                                          ("h", None), ("w", None)])
        b, _, f, h, w = latents.shape
        if f < 1 + chunk_latents or (f - 1) % chunk_latents:
            raise ValueError(f"latents: expected 1 + K*{chunk_latents} latent frames (the reference, then whole "
                             f"chunks of chunk_latents={chunk_latents}), got {f}")
        if h != w:
            raise ValueError(f"latents: expected a square latent grid, got h={h}, w={w}")
        chunks = (f - 1) // chunk_latents
        expect_shape("t (one per token; build it with sequence_timesteps)", t, [("B", b), ("tokens", h * w * f)])
        self.check_speech(speech, b, f - 1)
        attend = SequenceAttention(self.cfg, chunks=chunks, chunk_latents=chunk_latents, latent_size=h,
                                   device=latents.device, dtype=latents.dtype, global_attention=global_attention,
                                   id_sink=id_sink, context_cache=context_cache)
        text_kv = self.text_kv(text)
        x, t_emb = self.run_blocks(latents, t, attend, text_kv, speech, n_ref=h * w)
        return self.head(x[:, h * w :], t_emb[:, h * w :], h, w)
