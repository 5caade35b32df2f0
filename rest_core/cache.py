"""The ID-Context Cache (paper §3.2, eq. 10-12): per-stream keys/values of every DiT block.

Each block's self-attention sees `[K_sink || K_context || K_current]`. All three live in one preallocated buffer
per stream, slots laid out as

    [ sink: S tokens | context: L tokens | current: L tokens ]      S = tokens of one latent frame, L = of one chunk

- the sink holds the reference latent's keys/values, written once per stream (`SinkFill`);
- the current slot is overwritten by every forward pass of the chunk being denoised (`ChunkStep`);
- the context slot is overwritten when a finished chunk is committed (`ChunkStep(commit=True)`), after the
  block has attended to the old context, so the next chunk sees this one as its context.

Keys are stored with RoPE already applied at the fixed, chunk-relative positions of `rope.py`, so nothing in the
cache depends on how long the stream has run. With Joint CFG the conditional and the null branch share the sink
and the context: the buffer has `branches * batch` rows and the shared slots are written to every branch.

The two switches of the paper's Table 2 act on visibility only: without `id_sink` the reference is seen by the
first chunk alone (the stream starts from the identity, then only rolls on its context); without
`context_cache` no chunk sees its predecessor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .attention import attention
from .config import DiTConfig
from .rope import RotaryTable, apply_rope, chunk_times, grid_positions, rotary_table, sink_time


def chunk_visibility(chunk_index: int, id_sink: bool, context_cache: bool) -> tuple[bool, bool]:
    """What chunk `chunk_index` of a stream attends to besides itself: (the ID sink, its predecessor as context).
    The first chunk always sees the reference and has no predecessor. The cache's windows, the masked sequence pass
    (dit.py) and the FLOP count (flops.py) all follow this one rule."""
    return id_sink or chunk_index == 0, context_cache and chunk_index > 0


class IDContextCache:
    def __init__(
        self,
        config: DiTConfig,
        *,
        batch: int,
        latent_size: int,
        chunk_latents: int,
        branches: int = 1,
        text_tokens: int = 0,
        id_sink: bool = True,
        context_cache: bool = True,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.batch, self.branches = batch, branches
        self.latent_size, self.chunk_latents = latent_size, chunk_latents
        self.id_sink, self.context_cache = id_sink, context_cache
        self.sink_tokens = latent_size * latent_size  # S
        self.chunk_tokens = chunk_latents * self.sink_tokens  # L
        rows, heads, head_dim = branches * batch, config.heads, config.head_dim
        slots = self.sink_tokens + 2 * self.chunk_tokens

        self.k = torch.zeros(config.depth, rows, heads, slots, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.text_k = self.text_v = None
        if text_tokens:
            self.text_k = torch.zeros(config.depth, rows, heads, text_tokens, head_dim, device=device, dtype=dtype)
            self.text_v = torch.zeros_like(self.text_k)

        def table(times: Tensor) -> RotaryTable:
            return rotary_table(grid_positions(times, latent_size), head_dim, config.rope_theta, dtype, device)

        self.rope_sink = table(torch.tensor([sink_time(0, chunk_latents)]))
        self.rope_context = table(chunk_times(-1, chunk_latents))
        self.rope_current = table(chunk_times(0, chunk_latents))

        # The one window that is not a contiguous suffix of the slots: sink visible, context not.
        self._sink_and_current = torch.ones(1, 1, 1, slots, dtype=torch.bool, device=device)
        self._sink_and_current[..., self.sink_tokens : self.sink_tokens + self.chunk_tokens] = False

    @property
    def context_start(self) -> int:
        return self.sink_tokens

    @property
    def current_start(self) -> int:
        return self.sink_tokens + self.chunk_tokens

    def window(self, chunk_index: int) -> tuple[int, Tensor | None]:
        """First visible slot and, where the visible slots are not a suffix, a key mask.  mask: [1, 1, 1, slots]"""
        sink, context = chunk_visibility(chunk_index, self.id_sink, self.context_cache)
        if sink and not context:
            return 0, self._sink_and_current
        if sink:
            return 0, None
        return (self.context_start if context else self.current_start), None

    def _per_branch(self, buffer: Tensor, block: int) -> Tensor:
        """Rows of one block seen as [branches, batch, ...] so shared slots broadcast into every branch."""
        return buffer[block].view(self.branches, self.batch, *buffer.shape[2:])

    def write_shared(self, buffer: Tensor, block: int, start: int, x: Tensor):
        """Write the first `batch` rows of x into slots [start, start + N) of every branch.  x: [>=B, H, N, hd]"""
        self._per_branch(buffer, block)[:, :, :, start : start + x.shape[2]] = x[None, : self.batch]

    def fill_text(self, block: int, k: Tensor, v: Tensor):
        """Text keys/values, computed once per stream.  k, v: [B, H, Lt, hd]"""
        self._per_branch(self.text_k, block)[:] = k[None]
        self._per_branch(self.text_v, block)[:] = v[None]

    def text_kv(self, block: int, rows: int) -> tuple[Tensor, Tensor] | None:
        if self.text_k is None:
            return None
        return self.text_k[block, :rows], self.text_v[block, :rows]


class SinkFill:
    """Self-attention of the reference latent with itself; its keys/values become the ID sink."""

    def __init__(self, cache: IDContextCache):
        self.cache = cache

    @torch.compiler.disable  # see ChunkStep.__call__
    def __call__(self, block: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        c = self.cache
        q, k = apply_rope(q, c.rope_sink), apply_rope(k, c.rope_sink)
        c.write_shared(c.k, block, 0, k)
        c.write_shared(c.v, block, 0, v)
        return attention(q, k, v)


class ChunkStep:
    """One forward pass of the current chunk against the cache.

    With `commit`, the chunk's keys/values (re-roped to the context positions) replace the context once the block
    has attended, so the next chunk sees this one; the sampler commits the finished, clean chunk at t=0.
    """

    def __init__(self, cache: IDContextCache, chunk_index: int, commit: bool = False):
        self.cache, self.commit = cache, commit
        self.start, self.mask = cache.window(chunk_index)

    # Eager even where the blocks are compiled: indexing the buffers by block number in compiled code would
    # specialise each block on its number, one compilation per block; the attention is one kernel either way.
    @torch.compiler.disable
    def __call__(self, block: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        c, rows = self.cache, q.shape[0]  # q, k, v: [rows, H, L, hd], before RoPE
        q, k_now = apply_rope(q, c.rope_current), apply_rope(k, c.rope_current)
        c.k[block, :rows, :, c.current_start :] = k_now
        c.v[block, :rows, :, c.current_start :] = v
        keys = c.k[block, :rows, :, self.start :]  # [rows, H, window, hd]
        values = c.v[block, :rows, :, self.start :]
        mask = None if self.mask is None else self.mask[..., self.start :]
        out = attention(q, keys, values, mask)
        if self.commit:
            c.write_shared(c.k, block, c.context_start, apply_rope(k, c.rope_context))
            c.write_shared(c.v, block, c.context_start, v)
        return out
