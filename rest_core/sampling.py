"""Flow-matching sampling and the streaming reverse process (paper §3.4, Algorithm 1).

Flow matching: z_t = (1 - t) z_0 + t eps, the model predicts v = eps - z_0, and Euler steps walk t from 1 to 0
over a shifted schedule. Joint CFG (our definition; READ's exact form is not public):
    v = v(null) + alpha * (v(speech, text) - v(null))
where the null branch drops speech and text together while it keeps the ID sink and the context, so identity is
never guided away. Both branches run as one batch.

`stream_latents` is Algorithm 1 as a generator: an outer loop over chunks, an inner loop over steps, yielding each
chunk the moment it is denoised. The clean chunk is then committed to the context cache by one pass at t = 0,
run lazily when the next chunk's speech arrives, so a finished chunk is never held back by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor

from .cache import IDContextCache
from .checks import describe, expect_finite, expect_number, expect_positive_int, expect_shape
from .config import RESTConfig, SamplerConfig
from .dit import A2VDiT, sequence_timesteps

CONTEXT_REFRESH_MODES = ("clean", "last_step")


def flow_schedule(steps: int, shift: float) -> Tensor:
    """steps + 1 times from 1 to 0; shift > 1 spends more of the steps at high noise (SD3).  # [steps + 1]"""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


def joint_cfg(v_cond: Tensor, v_null: Tensor, alpha: float) -> Tensor:
    return v_null + alpha * (v_cond - v_null)


@dataclass
class ChunkLatents:
    index: int
    latents: Tensor  # [B, C, chunk_latents, h, w], float32


def _speech_chunks(speech, batch: int, chunk: int, tokens: int, dim: int) -> Iterator[Tensor]:
    """A tensor is checked whole, now; live pieces are checked as they arrive."""
    if isinstance(speech, Tensor):
        expect_shape("speech", speech, [("B", batch), ("K*chunk_latents", None), ("h_w", tokens), ("d_A", dim)])
        if speech.shape[1] == 0 or speech.shape[1] % chunk:
            raise ValueError(
                f"speech: expected shape [B={batch}, K*{chunk}, h_w={tokens}, d_A={dim}] (whole chunks of "
                f"chunk_latents={chunk} latent frames), got {list(speech.shape)}; pad the speech latents to a "
                f"multiple of {chunk} frames")
        expect_finite("speech", speech)
        return iter(speech.split(chunk, dim=1))
    return _live_speech_chunks(speech, [("B", batch), ("chunk_latents", chunk), ("h_w", tokens), ("d_A", dim)])


def _live_speech_chunks(pieces: Iterable[Tensor], per_chunk) -> Iterator[Tensor]:
    for i, e in enumerate(pieces):
        if e is None:
            raise ValueError(f"speech for chunk {i} is missing: expected shape {describe(per_chunk)}")
        expect_shape(f"speech for chunk {i}", e, per_chunk)
        yield expect_finite(f"speech for chunk {i}", e)


def stream_latents(
    model: A2VDiT,
    ref_latent: Tensor,
    speech: Tensor | Iterable[Tensor],
    text: Tensor | None = None,
    *,
    chunk_latents: int = RESTConfig.chunk_latents,
    steps: int = SamplerConfig.steps,
    cfg: float = SamplerConfig.cfg,
    shift: float = SamplerConfig.shift,
    seed: int = 0,
    id_sink: bool = True,
    context_cache: bool = True,
    context_refresh: str = "clean",
    on_step: Callable[[int, int], None] | None = None,
) -> Iterator[ChunkLatents]:
    """Generate latent chunks one after another. Arguments are checked here, at the call; the work starts on
    the first `next()`.

    ref_latent: [B, C, 1, h, w] (the VAE-encoded reference, z_R); speech: the SpeechAE latents E, either a tensor
    [B, K*chunk_latents, h_w, d_A] or an iterable yielding [B, chunk_latents, h_w, d_A] per chunk (live input: the
    stream ends when the iterable does); text: optional [B, Lt, text_dim] (None: no text, as in the null branch).
    `context_refresh`: "clean" commits the finished chunk by a pass at t = 0 (one extra forward per chunk);
    "last_step" commits the keys/values of the last denoising step instead (cheaper, slightly noisier context).
    `on_step(chunk_index, step)` is called after every denoising step (progress bars; raising in it stops the
    stream between two steps).
    """
    cfg_dit = model.cfg
    chunk_latents = expect_positive_int("chunk_latents", chunk_latents)
    steps = expect_positive_int("steps", steps)
    cfg, shift = expect_number("cfg", cfg, low=1.0), expect_number("shift", shift, low=1e-3)
    if context_refresh not in CONTEXT_REFRESH_MODES:
        raise ValueError(f"context_refresh: expected one of {CONTEXT_REFRESH_MODES}, got {context_refresh!r}")
    expect_shape("ref_latent", ref_latent, [("B", None), ("C", cfg_dit.in_channels), ("frames", 1),
                                            ("h", None), ("w", None)])
    batch, _, _, h, w = ref_latent.shape
    if h != w:
        raise ValueError(f"ref_latent: expected a square latent grid [B, C, 1, h, h], got {list(ref_latent.shape)}")
    expect_finite("ref_latent", ref_latent)
    if text is not None:
        if cfg_dit.text_dim is None:
            raise ValueError("text: this model has no text cross-attention (text_dim=None); pass text=None")
        expect_shape("text", text, [("B", batch), ("Lt", None), ("text_dim", cfg_dit.text_dim)])
        expect_finite("text", text)
    chunks = _speech_chunks(speech, batch, chunk_latents, cfg_dit.speech_tokens, cfg_dit.speech_dim)
    return _reverse_process(model, ref_latent, chunks, text, chunk_latents=chunk_latents, steps=steps, cfg=cfg,
                            shift=shift, seed=seed, id_sink=id_sink, context_cache=context_cache,
                            context_refresh=context_refresh, on_step=on_step)


def _reverse_process(model, ref_latent, chunks, text, *, chunk_latents, steps, cfg, shift, seed, id_sink,
                     context_cache, context_refresh, on_step) -> Iterator[ChunkLatents]:
    """Algorithm 1: outer loop over chunks, inner loop over flow-matching steps."""
    cfg_dit = model.cfg
    batch, _, _, h, w = ref_latent.shape
    guided = cfg != 1.0
    device, dtype = ref_latent.device, next(model.parameters()).dtype
    with torch.no_grad():
        cache = IDContextCache(cfg_dit, batch=batch, latent_size=h, chunk_latents=chunk_latents,
                               branches=2 if guided else 1, text_tokens=0 if text is None else text.shape[1],
                               id_sink=id_sink, context_cache=context_cache, device=device, dtype=dtype)
        model.prefill(cache, ref_latent.to(dtype), None if text is None else text.to(dtype))
    times = flow_schedule(steps, shift)
    noise = torch.Generator(device="cpu").manual_seed(seed)
    shape = (batch, cfg_dit.in_channels, chunk_latents, h, w)

    def velocity(z: Tensor, t: float, e: Tensor, index: int, commit: bool) -> Tensor:
        x = torch.cat([z, z]) if guided else z  # [rows, C, c, h, w]: conditional rows first, then the null branch
        tt = torch.full((x.shape[0],), t, device=device)
        v = model.forward_chunk(x.to(dtype), tt, e.to(dtype), cache, index, commit=commit).float()
        return joint_cfg(*v.chunk(2), cfg) if guided else v

    pending = None  # (latents, speech, index) of the last chunk, not yet committed to the context
    for index, e in enumerate(chunks):
        e = e.to(device)
        with torch.no_grad():
            if pending is not None and context_cache and context_refresh == "clean":
                z0, e0, i0 = pending
                zero = torch.zeros(batch, device=device)
                model.forward_chunk(z0.to(dtype), zero, e0.to(dtype), cache, i0, commit=True)
            z = torch.randn(shape, generator=noise).to(device)
            for i in range(steps):
                commit = context_cache and context_refresh == "last_step" and i == steps - 1
                t, t_next = times[i].item(), times[i + 1].item()
                z = z + (t_next - t) * velocity(z, t, e, index, commit)
                if on_step is not None:
                    on_step(index, i)
        pending = (z, e, index)
        yield ChunkLatents(index, z)


@torch.no_grad()
def sample_sequence(
    model: A2VDiT,
    ref_latent: Tensor,
    speech: Tensor,
    *,
    chunk_latents: int = RESTConfig.chunk_latents,
    steps: int = SamplerConfig.steps,
    cfg: float = SamplerConfig.cfg,
    shift: float = SamplerConfig.shift,
    seed: int = 0,
    global_attention: bool = True,
) -> Tensor:
    """Every chunk denoised at once over the whole sequence (the non-streaming teacher, paper §3.3): all chunks
    share one t per step, the same schedule and Joint CFG as streaming. Noise is drawn chunk by chunk from the same
    generator as `stream_latents`, so both start from the same noise for the same seed.

    ref_latent: [B, C, 1, h, w]; speech: [B, K*chunk_latents, h_w, d_A] -> latents [B, C, K*chunk_latents, h, w]
    """
    cfg, shift = expect_number("cfg", cfg, low=1.0), expect_number("shift", shift, low=1e-3)
    batch, channels, _, h, w = expect_shape("ref_latent", ref_latent, [("B", None), ("C", model.cfg.in_channels),
                                                                        ("frames", 1), ("h", None), ("w", None)]).shape
    if not isinstance(speech, Tensor):
        raise ValueError("speech: the non-streaming sampler needs the whole clip's speech latents as one tensor")
    _speech_chunks(speech, batch, chunk_latents, model.cfg.speech_tokens, model.cfg.speech_dim)  # checks the shape
    chunks = speech.shape[1] // chunk_latents
    device, dtype = ref_latent.device, next(model.parameters()).dtype
    guided = cfg != 1.0
    noise = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.cat([torch.randn((batch, channels, chunk_latents, h, w), generator=noise) for _ in range(chunks)],
                  dim=2).to(device)
    times = flow_schedule(steps, shift)
    ref = ref_latent.to(dtype)
    for i in range(steps):
        t, t_next = times[i].item(), times[i + 1].item()
        x = torch.cat([ref, z.to(dtype)], dim=2)
        x = torch.cat([x, x]) if guided else x  # conditional rows first, then the null branch
        tt = sequence_timesteps(torch.full((x.shape[0], chunks), t, device=device), chunk_latents, h)
        v = model.forward_sequence(x, tt.to(dtype), speech.to(device, dtype), chunk_latents=chunk_latents,
                                   global_attention=global_attention).float()
        v = joint_cfg(*v.chunk(2), cfg) if guided else v
        z = z + (t_next - t) * v
    return z
