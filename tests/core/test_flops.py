import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from rest_core import StreamOptions, stream_latents
from rest_core.flops import chunk_flops


@pytest.mark.parametrize("cfg, with_text, refresh", [(6.0, True, "clean"), (1.0, False, "clean"),
                                                     (6.0, False, "last_step")])
def test_analytic_chunk_flops_match_torchs_flop_counter(tiny_model, cfg, with_text, refresh):
    ref = torch.randn(1, 8, 1, 4, 4)
    speech = torch.randn(1, 9, 2, 12)
    text = torch.randn(1, 5, 16) if with_text else None
    stream = stream_latents(tiny_model, ref, speech, text,
                            options=StreamOptions(steps=2, cfg=cfg, context_refresh=refresh))
    next(stream)
    # the math backend spells attention as matmuls, which the counter sees
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        next(stream)  # chunk 1: the refresh of chunk 0, then its own steps
    expected = chunk_flops(tiny_model.config, latent_size=4, chunk_latents=3, steps=2, guided=cfg != 1.0,
                           context_refresh=refresh, text_tokens=5 if with_text else 0)
    assert counter.get_total_flops() == expected
