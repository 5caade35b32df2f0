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
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .attention import attention
from .cache import ChunkStep, IDContextCache, SinkFill, chunk_visibility
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

    def keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        return self.split(self.k_norm(self.to_k(context))), self.split(self.to_v(context))

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


@dataclass
class PassInputs:
    """What every block of one forward pass shares."""

    mod: Tensor  # [B, N|1, 6, D]: the AdaLN-single modulation
    attend: Callable[[int, Tensor, Tensor, Tensor], Tensor]  # SinkFill, ChunkStep (cache.py) or SequenceAttention
    speech: Tensor | None  # [Bc, F, h_w, d_A] for the first Bc rows (the conditional branch); None: no speech
    n_ref: int  # leading tokens of the reference frame, which take no text or speech
    frame_tokens: int  # S = h * w tokens per latent frame


class Block(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        d = config.hidden
        self.norm1 = nn.RMSNorm(d, eps=config.norm_eps, elementwise_affine=False)
        self.attn1 = Attention(d, config.heads, d, config.norm_eps)
        self.attn2 = Attention(d, config.heads, d, config.norm_eps) if config.text_dim else None
        self.speech_norm = nn.RMSNorm(d, eps=config.norm_eps, elementwise_affine=False)
        self.speech_attn = Attention(d, config.heads, config.speech_dim, config.norm_eps)
        self.norm2 = nn.RMSNorm(d, eps=config.norm_eps, elementwise_affine=False)
        self.ff = FeedForward(d, config.ffn_mult, config.ffn_gelu)
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) / d**0.5)

    def forward(self, x: Tensor, inputs: PassInputs, text_kv: tuple[Tensor, Tensor] | None, index: int) -> Tensor:
        """x: [B, N, D] -> [B, N, D]; text_kv: this block's text keys/values [B, H, Lt, hd] each, or None; index: its
        place in the stack, which picks its slots of the cache. An argument, not an attribute: torch.compile takes a
        module's int attributes as constants and would compile every block on its own."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (self.scale_shift_table + inputs.mod).unbind(2)

        h = self.norm1(x) * (1 + scale_msa) + shift_msa
        q, (k, v) = self.attn1.query(h), self.attn1.keys_values(h)
        x = x + gate_msa * self.attn1.out(inputs.attend(index, q, k, v))

        if inputs.speech is not None and inputs.n_ref < x.shape[1]:
            conditioned = x[: inputs.speech.shape[0], inputs.n_ref :]  # [Bc, F*S, D]: the conditional rows' frames
            conditioned = self.text_cross_attention(conditioned, text_kv)
            conditioned = self.speech_cross_attention(conditioned, inputs.speech, inputs.frame_tokens)
            x = with_conditioned_frames(x, conditioned, inputs.n_ref)

        h = self.norm2(x) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * self.ff(h)

    def text_cross_attention(self, x: Tensor, text_kv: tuple[Tensor, Tensor] | None) -> Tensor:
        """x: [Bc, N, D], the conditional rows; the text's keys/values hold every row, the first Bc are theirs."""
        if text_kv is None:
            return x
        k, v = text_kv
        rows = x.shape[0]
        return x + self.attn2.out(attention(self.attn2.query(x), k[:rows], v[:rows]))

    def speech_cross_attention(self, x: Tensor, speech: Tensor, frame_tokens: int) -> Tensor:
        """Eq. 13, frame-level: latent frames are folded into the batch, so the tokens of frame j attend only to
        their own speech tokens e_j.  x: [Bc, F*S, D]; speech: [Bc, F, h_w, d_A]"""
        frames = speech.shape[1]
        q = self.speech_attn.query(rearrange(self.speech_norm(x), "b (f s) d -> (b f) s d", f=frames, s=frame_tokens))
        k, v = self.speech_attn.keys_values(rearrange(speech, "b f n a -> (b f) n a"))
        o = self.speech_attn.out(attention(q, k, v))  # [(B F), S, D]
        return x + rearrange(o, "(b f) s d -> b (f s) d", f=frames)


def with_conditioned_frames(x: Tensor, conditioned: Tensor, n_ref: int) -> Tensor:
    """x [B, N, D] with the frame tokens (after the first n_ref) of its first Bc rows replaced by `conditioned`
    [Bc, N - n_ref, D]; the reference tokens and the null-branch rows stay as they are."""
    rows = conditioned.shape[0]
    return torch.cat([torch.cat([x[:rows, :n_ref], conditioned], dim=1), x[rows:]], dim=0)


class SequenceAttention:
    """Self-attention over the whole sequence [z_R || chunk_0 .. chunk_{K-1}] that reproduces streaming.

    Keys are laid out as [K copies of the sink || all chunk tokens]: copy k carries the sink's RoPE for chunk k's
    window, so chunk k sees the reference exactly where streaming puts it. The reference queries see copy 0.
    `global_attention` gives the non-streaming teacher: each chunk sees its sink copy and every chunk.
    """

    def __init__(self, config: DiTConfig, *, chunks, chunk_latents, latent_size, device, dtype,
                 global_attention=False, id_sink=True, context_cache=True):
        S = latent_size * latent_size
        L = chunk_latents * S
        self.chunks, self.sink_tokens = chunks, S

        def table(times):
            return rotary_table(grid_positions(times, latent_size), config.head_dim, config.rope_theta, dtype, device)

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
            sink, context = chunk_visibility(k, id_sink, context_cache)
            if global_attention or sink:
                mask[rows, k * S : (k + 1) * S] = True
            if global_attention:
                mask[rows, first:] = True
            elif context:
                mask[rows, first + (k - 1) * L : first + k * L] = True
            mask[rows, first + k * L : first + (k + 1) * L] = True
        self.mask = mask.to(device)

    def __call__(self, block: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        S, K = self.sink_tokens, self.chunks
        q = apply_rope(q, self.rope_queries)
        keys = torch.cat([apply_rope(k[:, :, :S].repeat(1, 1, K, 1), self.rope_sinks),
                          apply_rope(k[:, :, S:], self.rope_tokens)], dim=2)
        values = torch.cat([v[:, :, :S].repeat(1, 1, K, 1), v[:, :, S:]], dim=2)
        return attention(q, keys, values, self.mask)


def sequence_timesteps(chunk_t: Tensor, chunk_latents: int, latent_size: int) -> Tensor:
    """One t per chunk (eq. 15) -> one t per token of [z_R || chunks], the reference at 0.  [B, K] -> [B, N]"""
    per_chunk = chunk_latents * latent_size * latent_size
    ref = torch.zeros(chunk_t.shape[0], latent_size * latent_size, device=chunk_t.device, dtype=chunk_t.dtype)
    return torch.cat([ref, chunk_t.repeat_interleave(per_chunk, dim=1)], dim=1)


class A2VDiT(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        d = config.hidden
        self.patchify_proj = nn.Linear(config.in_channels, d)
        self.adaln_single = AdaLNSingle(d)
        self.caption_projection = None
        if config.text_dim:
            self.caption_projection = nn.Sequential(nn.Linear(config.text_dim, d), nn.GELU(approximate="tanh"),
                                                    nn.Linear(d, d))
        self.transformer_blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(d, eps=config.norm_eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(2, d) / d**0.5)
        self.proj_out = nn.Linear(d, config.in_channels)

    def compile_blocks(self, mode: str = "default") -> "A2VDiT":
        """torch.compile every block in place (the weights keep their names). The blocks share one compilation
        (`Block.forward` takes its index as an argument); the first passes pay for it."""
        for block in self.transformer_blocks:
            block.compile(mode=mode)
        return self

    def time_parameters(self) -> list[nn.Parameter]:
        """What turns each token's flow time into the blocks' modulation: the timestep MLP and the learned tables of
        the blocks and the output (what a fine-tune for a new range of context times trains; train/low_rank.py)."""
        tables = [block.scale_shift_table for block in self.transformer_blocks] + [self.scale_shift_table]
        return [*self.adaln_single.parameters(), *tables]

    # --- shared pieces --------------------------------------------------------------------------------------

    def text_kv(self, text: Tensor | None) -> list[tuple[Tensor, Tensor] | None]:
        """Per-block text keys/values.  text: [B, Lt, text_dim]"""
        if text is None or self.caption_projection is None:
            return [None] * self.config.depth
        tokens = self.caption_projection(text)  # [B, Lt, D]
        return [blk.attn2.keys_values(tokens) for blk in self.transformer_blocks]

    def run_blocks(self, latents: Tensor, t: Tensor, attend, text_kv: list, speech: Tensor | None,
                   n_ref: int = 0) -> tuple[Tensor, Tensor]:
        """latents: [B, C, F, h, w]; t: [B] or [B, N]  ->  hidden states [B, N, D] and the timestep embedding."""
        x = self.patchify_proj(rearrange(latents, "b c f h w -> b (f h w) c"))
        mod, t_emb = self.adaln_single(t if t.dim() == 2 else t[:, None])
        inputs = PassInputs(mod, attend, speech, n_ref, frame_tokens=latents.shape[-1] * latents.shape[-2])
        for index, (blk, kv) in enumerate(zip(self.transformer_blocks, text_kv)):
            x = blk(x, inputs, kv, index)
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
        expect_shape("speech", speech, [("B", None), ("frames", frames), ("h_w", self.config.speech_tokens),
                                        ("d_A", self.config.speech_dim)])
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
        self.run_blocks(ref_latent, t, SinkFill(cache), [None] * self.config.depth, speech=None)

    def forward_chunk(self, x: Tensor, t: Tensor, speech: Tensor, cache: IDContextCache, chunk_index: int,
                      commit: bool = False) -> Tensor:
        """Velocity of one chunk through the ID-Context Cache.

        x: [rows, C, c, h, w] noisy chunk; t: [rows] or [rows, L]; speech: [Bc, c, h_w, d_A] for the first Bc rows
        (rows beyond Bc are the Joint-CFG null branch). `chunk_index` only decides which cache slots are visible.
        """
        frames, size = cache.chunk_latents, cache.latent_size
        rows = expect_shape("x", x, [("rows", None), ("C", self.config.in_channels), ("chunk_latents", frames),
                                     ("h", size), ("w", size)]).shape[0]
        if rows > cache.k.shape[1]:
            raise ValueError(f"x: {rows} rows but the cache holds {cache.k.shape[1]} (batch x CFG branches)")
        self.check_timesteps(t, rows, cache.chunk_tokens)
        self.check_speech(speech, rows, frames)
        text_kv = [cache.text_kv(i, rows) for i in range(self.config.depth)]
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
        expect_shape("latents", latents, [("B", None), ("C", self.config.in_channels), ("1+K*chunk_latents", None),
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
        attend = SequenceAttention(self.config, chunks=chunks, chunk_latents=chunk_latents, latent_size=h,
                                   device=latents.device, dtype=latents.dtype, global_attention=global_attention,
                                   id_sink=id_sink, context_cache=context_cache)
        text_kv = self.text_kv(text)
        x, t_emb = self.run_blocks(latents, t, attend, text_kv, speech, n_ref=h * w)
        return self.head(x[:, h * w :], t_emb[:, h * w :], h, w)
