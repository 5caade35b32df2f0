"""Analytic FLOP count of streaming a chunk: the matmuls and attention products the DiT performs, 2 FLOPs per
multiply-add (norms, activations and RoPE are elementwise and left out). Used by the benchmarks for the fraction
of the compute floor, and checked against torch's FLOP counter in the tests."""

from __future__ import annotations

from .cache import chunk_visibility
from .config import DiTConfig
from .dit import TIMESTEP_FREQ_DIM


def chunk_forward_flops(config: DiTConfig, *, rows: int, cond_rows: int, latent_size: int, chunk_latents: int,
                        window: int, text_tokens: int = 0) -> int:
    """One `forward_chunk` pass: `rows` chunks (conditional + null branch), `window` keys in self-attention,
    one timestep per row."""
    d, S = config.hidden, latent_size * latent_size
    L = chunk_latents * S
    per_row = (
        2 * L * config.in_channels * d  # patchify_proj
        + 2 * (TIMESTEP_FREQ_DIM * d + d * d + d * 6 * d)  # AdaLN-single, once per row
        + 2 * L * d * config.in_channels  # proj_out
    )
    per_row_block = (
        4 * 2 * L * d * d  # q, k, v, out
        + 2 * 2 * L * window * d  # QK^T and AV
        + 2 * 2 * L * d * config.ffn_mult * d  # feed-forward
    )
    per_cond_row_block = (
        2 * 2 * L * d * d  # speech q, out
        + 2 * 2 * chunk_latents * config.speech_tokens * config.speech_dim * d  # speech k, v
        + 2 * 2 * L * config.speech_tokens * d  # frame-level speech attention
    )
    if config.text_dim and text_tokens:
        per_cond_row_block += 2 * 2 * L * d * d + 2 * 2 * L * text_tokens * d  # text q, out; attention (kv cached)
    return rows * per_row + config.depth * (rows * per_row_block + cond_rows * per_cond_row_block)


def stream_window(latent_size: int, chunk_latents: int, chunk_index: int, id_sink: bool = True,
                  context_cache: bool = True) -> int:
    """Keys a chunk attends over, as `IDContextCache.window` lays them out (masked slots still cost)."""
    S = latent_size * latent_size
    L = chunk_latents * S
    sink, context = chunk_visibility(chunk_index, id_sink, context_cache)
    if sink:
        return S + 2 * L
    return 2 * L if context else L


def chunk_flops(config: DiTConfig, *, batch: int = 1, latent_size: int, chunk_latents: int, steps: int,
                guided: bool = True, context_refresh: str = "clean", text_tokens: int = 0,
                id_sink: bool = True, context_cache: bool = True, chunk_index: int = 1) -> int:
    """All DiT FLOPs spent on one chunk in steady state: `steps` guided passes, plus the clean refresh pass."""
    window = stream_window(latent_size, chunk_latents, chunk_index, id_sink, context_cache)
    common = dict(latent_size=latent_size, chunk_latents=chunk_latents, window=window, text_tokens=text_tokens)
    step = chunk_forward_flops(config, rows=batch * (2 if guided else 1), cond_rows=batch, **common)
    total = steps * step
    if context_cache and context_refresh == "clean":
        total += chunk_forward_flops(config, rows=batch, cond_rows=batch, **common)
    return total
