import sys

import pytest
import torch

from conftest import ROOT, TINY_MOUTH, TINY_REST
from rest_core.dit import A2VDiT

sys.path.insert(0, str(ROOT / "scripts"))
from speech_use import flow_matching_errors, mouth_cells  # noqa: E402


def errors(model, config=TINY_REST) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    c, size = config.chunk_latents, 4
    latents = torch.randn(2, config.dit.in_channels, 1 + 2 * c, size, size, generator=g)
    speech = torch.randn(2, 2 * c, config.dit.speech_tokens, config.dit.speech_dim, generator=g)
    cells = [mouth_cells([40.0, 60.0, 90.0, 100.0], size)] * 2
    return flow_matching_errors(model, c, 3.0, latents, speech, cells, g, config.vae.mouth_code)


@pytest.mark.parametrize("config", [TINY_REST, TINY_MOUTH], ids=["plain", "mouth_code"])
def test_a_dit_that_cannot_hear_scores_the_same_with_and_without_the_speech(config):
    torch.manual_seed(0)
    model = A2VDiT(config.dit).eval()
    heard = errors(model, config)
    scored = ["all", "mouth"] + (["code"] if config.vae.mouth_code else [])
    assert sorted(k.split()[0] for k in heard) == sorted(scored * 2)
    assert all(heard[f"{k} with"] != heard[f"{k} without"] for k in scored)
    for block in model.transformer_blocks:
        torch.nn.init.zeros_(block.speech_attn.to_out.weight)
        torch.nn.init.zeros_(block.speech_attn.to_out.bias)
    deaf = errors(model, config)
    assert all(deaf[f"{k} with"] == deaf[f"{k} without"] for k in scored)


def test_the_mouth_cells_are_the_3x3_around_the_boxs_centre_inside_the_grid():
    assert mouth_cells([100.0, 130.0, 140.0, 170.0], 8) == (slice(3, 6), slice(2, 5))  # centre cell (4, 3)
    assert mouth_cells([0.0, 0.0, 20.0, 20.0], 8) == (slice(0, 3), slice(0, 3))
    assert mouth_cells([230.0, 230.0, 256.0, 256.0], 8) == (slice(5, 8), slice(5, 8))
