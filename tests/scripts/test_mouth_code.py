import sys

import numpy as np
import torch

from conftest import ROOT, TINY_MOUTH
from rest_core.data.heldout import HeldOutClip
from rest_core.eval.mouth_expert import load_expert
from rest_core.vae import CausalVAE

sys.path.insert(0, str(ROOT / "scripts"))
from mouth_code import check  # noqa: E402


def clip(frames: int = 41) -> HeldOutClip:
    g = torch.Generator().manual_seed(0)
    size = TINY_MOUTH.resolution
    opening = np.abs(np.sin(np.arange(frames) / 3))
    return HeldOutClip("c", torch.rand(frames, size, size, 3, generator=g), torch.zeros(1, 16000), 16000, opening,
                       [size * 0.3, size * 0.55, size * 0.7, size * 0.9])


def test_a_decoder_that_cannot_read_the_code_paints_nothing_with_it():
    torch.manual_seed(0)
    vae = CausalVAE(TINY_MOUTH.vae).eval()
    with torch.no_grad():
        vae.decoder.conv_in.conv.weight[:, :16] = 0  # the code reaches no conv, and a fresh mouth head paints nothing
    row = check(vae, clip(), load_expert(), latents=4)
    assert row["painted"] == 0.0  # the code alone changes no pixel
    assert np.isfinite(row["coded r"])


def test_a_decoder_that_reads_the_code_changes_the_mouth_with_it():
    torch.manual_seed(0)
    vae = CausalVAE(TINY_MOUTH.vae).eval()
    with torch.no_grad():
        vae.decoder.mouth_head.conv_out.weight.normal_(0, 0.1)  # a head that has learnt to paint
    row = check(vae, clip(), load_expert(), latents=4)
    assert row["painted"] != 0.0
