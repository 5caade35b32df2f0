"""Scaled dot-product attention, the one function every attention of the model calls (Whisper aside).

softmax(q k^T / sqrt(d)) v with a boolean mask (True: the key is visible), as `F.scaled_dot_product_attention`.
On the CPU in bfloat16 or float16, torch's fused kernel is no faster than in float32 at this model's sizes: it runs
each block of 64 queries as two small products of its own. Two batched matmuls and a softmax there are 1.7x
faster (0.78 against 1.34 ms at 192 queries over 448 keys, [2, 4, ., 64], on a 2-core AVX512-BF16 EPYC), and
the rest-demo stream 12% faster in bfloat16. The price is that the scores are rounded to the dtype before the
softmax (which works in float32 inside); `bench/precision_bench.py` measures the frames against float32's.
Everywhere else (float32, GPUs) the fused kernel runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """q: [B, H, Lq, d]; k, v: [B, H, Lk, d]; mask: bool, broadcasting to [B, H, Lq, Lk]  ->  [B, H, Lq, d]"""
    if q.device.type != "cpu" or q.dtype not in (torch.bfloat16, torch.float16):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # [B, H, Lq, Lk]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v
