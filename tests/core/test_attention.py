import pytest
import torch
import torch.nn.functional as F

from rest_core.attention import attention


def qkv(dtype, queries=48, keys=80):
    """Unit RMS, as the DiT's RMS-normed queries and keys: scores of about unit spread."""
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 4, n, 64, generator=g).to(dtype) for n in (queries, keys, keys)]


@pytest.fixture
def mask():
    m = torch.ones(1, 1, 1, 80, dtype=torch.bool)
    m[..., 16:48] = False  # a hidden window in the middle, as the cache's sink-and-current one
    return m


def test_float32_runs_torchs_fused_kernel_exactly(mask):
    q, k, v = qkv(torch.float32)
    assert torch.equal(attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize("dtype, tolerance", [(torch.bfloat16, 0.02), (torch.float16, 0.002)])
@pytest.mark.parametrize("masked", [False, True])
def test_reduced_precision_on_the_cpu_agrees_with_float32_to_the_dtypes_rounding(dtype, tolerance, masked, mask):
    q, k, v = qkv(dtype)
    m = mask if masked else None
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=m)
    out = attention(q, k, v, m)
    assert out.dtype == dtype and out.shape == exact.shape
    assert (out.float() - exact).abs().max() < tolerance
    assert (out.float() - exact).abs().max() > 0  # the dtype's own route, not a float32 copy


def test_hidden_keys_do_not_reach_the_output_in_reduced_precision(mask):
    q, k, v = qkv(torch.bfloat16)
    k2, v2 = k.clone(), v.clone()
    k2[..., 16:48, :], v2[..., 16:48, :] = 100.0, -100.0
    assert torch.equal(attention(q, k, v, mask), attention(q, k2, v2, mask))
    assert not torch.equal(attention(q, k, v), attention(q, k2, v2))
