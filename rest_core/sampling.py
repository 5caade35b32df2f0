"""Flow-matching sampling and the streaming reverse process (paper §3.4, Algorithm 1).

Flow matching: z_t = (1 - t) z_0 + t eps, the model predicts v = eps - z_0, and Euler steps walk t from 1 to 0
over a shifted schedule. Joint CFG (our definition; READ's exact form is not public):
    v = v(null) + alpha * (v(speech, text) - v(null))
where the null branch drops speech and text together while it keeps the ID sink and the context, so identity is
never guided away. Both branches run as one batch.

`stream_latents` is Algorithm 1 as a generator: an outer loop over chunks, an inner loop over steps, yielding each
chunk the moment it is denoised. The finished chunk is then committed to the context cache by one more pass, run
lazily when the next chunk's speech arrives, so a finished chunk is never held back by it. That pass sees the chunk
put back to the noise level `context_noise` (0, the chunk as made, unless asked): the student trained on contexts
at the asynchronous schedule's levels, which never reach t = 0, where it has only seen the reference; what the
level changes in the demo model's streams is in docs/TRAINING.md ("The context's noise").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor

from .cache import IDContextCache
from .checks import describe, expect_finite, expect_positive_int, expect_shape
from .config import RESTConfig, StreamOptions
from .dit import A2VDiT, sequence_timesteps

def shift_time(t: Tensor, shift: float) -> Tensor:
    """The timestep shift t' = s t / (1 + (s - 1) t) (SD3): s > 1 moves flow times towards high noise. The sampler's
    schedule and the training times share it."""
    return shift * t / (1 + (shift - 1) * t)


def flow_schedule(steps: int, shift: float) -> Tensor:
    """steps + 1 times from 1 to 0, shifted.  # [steps + 1]"""
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift).float()


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
    options: StreamOptions = StreamOptions(),
    on_step: Callable[[int, int], None] | None = None,
) -> Iterator[ChunkLatents]:
    """Generate latent chunks one after another. Arguments are checked here, at the call; the work starts on
    the first `next()`.

    ref_latent: [B, C, 1, h, w] (the VAE-encoded reference, z_R); speech: the SpeechAE latents E, either a tensor
    [B, K*chunk_latents, h_w, d_A] or an iterable yielding [B, chunk_latents, h_w, d_A] per chunk (live input: the
    stream ends when the iterable does); text: optional [B, Lt, text_dim] (None: no text, as in the null branch).
    `options`: steps, Joint CFG scale, shift, seed, the two ID-Context Cache switches and how the context is
    refreshed ("clean": a pass per finished chunk, at t = `context_noise`; "last_step": the last denoising step's
    keys/values).
    `on_step(chunk_index, step)` is called after every denoising step (progress bars; raising in it stops the
    stream between two steps).
    """
    config = model.config
    chunk_latents = expect_positive_int("chunk_latents", chunk_latents)
    if not isinstance(options, StreamOptions):
        raise ValueError(f"options: expected StreamOptions, got {type(options).__name__}")
    expect_shape("ref_latent", ref_latent, [("B", None), ("C", config.in_channels), ("frames", 1),
                                            ("h", None), ("w", None)])
    batch, _, _, h, w = ref_latent.shape
    if h != w:
        raise ValueError(f"ref_latent: expected a square latent grid [B, C, 1, h, h], got {list(ref_latent.shape)}")
    expect_finite("ref_latent", ref_latent)
    if text is not None:
        if config.text_dim is None:
            raise ValueError("text: this model has no text cross-attention (text_dim=None); pass text=None")
        expect_shape("text", text, [("B", batch), ("Lt", None), ("text_dim", config.text_dim)])
        expect_finite("text", text)
    chunks = _speech_chunks(speech, batch, chunk_latents, config.speech_tokens, config.speech_dim)
    return _reverse_process(model, ref_latent, chunks, text, chunk_latents, options, on_step)


def _reverse_process(model: A2VDiT, ref_latent: Tensor, chunks: Iterator[Tensor], text: Tensor | None,
                     chunk_latents: int, options: StreamOptions,
                     on_step: Callable[[int, int], None] | None) -> Iterator[ChunkLatents]:
    """Algorithm 1: outer loop over chunks, inner loop over flow-matching steps."""
    config = model.config
    batch, _, _, h, w = ref_latent.shape
    steps, alpha = options.steps, options.cfg
    refresh = options.context_refresh if options.context_cache else None  # how finished chunks become context
    guided = alpha != 1.0
    device, dtype = ref_latent.device, next(model.parameters()).dtype
    with torch.no_grad():
        cache = IDContextCache(config, batch=batch, latent_size=h, chunk_latents=chunk_latents,
                               branches=2 if guided else 1, text_tokens=0 if text is None else text.shape[1],
                               id_sink=options.id_sink, context_cache=options.context_cache, device=device,
                               dtype=dtype)
        model.prefill(cache, ref_latent.to(dtype), None if text is None else text.to(dtype))
    times = flow_schedule(steps, options.shift)
    noise = torch.Generator(device="cpu").manual_seed(options.seed)
    context_noise = torch.Generator(device="cpu").manual_seed((options.seed + 1) % 2**64)  # apart: chunks keep theirs
    shape = (batch, config.in_channels, chunk_latents, h, w)

    def velocity(z: Tensor, t: float, e: Tensor, index: int, commit: bool) -> Tensor:
        x = torch.cat([z, z]) if guided else z  # [rows, C, c, h, w]: conditional rows first, then the null branch
        tt = torch.full((x.shape[0],), t, device=device)
        v = model.forward_chunk(x.to(dtype), tt, e.to(dtype), cache, index, commit=commit).float()
        return joint_cfg(*v.chunk(2), alpha) if guided else v

    pending = None  # (latents, speech, index) of the last chunk, not yet committed to the context
    for index, e in enumerate(chunks):
        e = e.to(device)
        with torch.no_grad():
            if pending is not None and refresh == "clean":
                z0, e0, i0 = pending
                t_c = options.context_noise
                z_c = z0 if t_c == 0 else (1 - t_c) * z0 + t_c * torch.randn(shape, generator=context_noise).to(device)
                model.forward_chunk(z_c.to(dtype), torch.full((batch,), t_c, device=device), e0.to(dtype), cache,
                                    i0, commit=True)
            z = torch.randn(shape, generator=noise).to(device)
            for i in range(steps):
                commit = refresh == "last_step" and i == steps - 1
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
    options: StreamOptions = StreamOptions(),
    global_attention: bool = True,
) -> Tensor:
    """Every chunk denoised at once over the whole sequence (the non-streaming teacher, paper §3.3): all chunks
    share one t per step, the same schedule and Joint CFG as streaming. Noise is drawn chunk by chunk from the same
    generator as `stream_latents`, so both start from the same noise for the same seed. Without global attention
    the chunks see what `options`' ID-Context Cache switches let a stream see; `context_refresh` has no meaning here.

    ref_latent: [B, C, 1, h, w]; speech: [B, K*chunk_latents, h_w, d_A] -> latents [B, C, K*chunk_latents, h, w]
    """
    batch, channels, _, h, w = expect_shape("ref_latent", ref_latent, [("B", None), ("C", model.config.in_channels),
                                                                        ("frames", 1), ("h", None), ("w", None)]).shape
    if not isinstance(speech, Tensor):
        raise ValueError("speech: the non-streaming sampler needs the whole clip's speech latents as one tensor")
    _speech_chunks(speech, batch, chunk_latents, model.config.speech_tokens, model.config.speech_dim)  # the checks
    chunks = speech.shape[1] // chunk_latents
    device, dtype = ref_latent.device, next(model.parameters()).dtype
    alpha = options.cfg
    guided = alpha != 1.0
    noise = torch.Generator(device="cpu").manual_seed(options.seed)
    z = torch.cat([torch.randn((batch, channels, chunk_latents, h, w), generator=noise) for _ in range(chunks)],
                  dim=2).to(device)
    times = flow_schedule(options.steps, options.shift)
    ref = ref_latent.to(dtype)
    for i in range(options.steps):
        t, t_next = times[i].item(), times[i + 1].item()
        x = torch.cat([ref, z.to(dtype)], dim=2)
        x = torch.cat([x, x]) if guided else x  # conditional rows first, then the null branch
        tt = sequence_timesteps(torch.full((x.shape[0], chunks), t, device=device), chunk_latents, h)
        v = model.forward_sequence(x, tt.to(dtype), speech.to(device, dtype), chunk_latents=chunk_latents,
                                   global_attention=global_attention, id_sink=options.id_sink,
                                   context_cache=options.context_cache).float()
        v = joint_cfg(*v.chunk(2), alpha) if guided else v
        z = z + (t_next - t) * v
    return z
