"""The mouth code: chunk latents carry each frame's opening and width, the decoder's mouth head paints them, the
portrait's frame gets nothing from it, and streaming stays exact."""

import dataclasses

import pytest
import torch

from rest_core.config import MOUTH_CODE_CHANNELS, VAEConfig
from rest_core.data.face_code import FaceCode, with_code
from rest_core.vae import CausalVAE
from rest_core.vae_mouth import frame_codes

from conftest import assert_streams_as_whole, every_path_on

MOUTH = VAEConfig(latent_channels=24, block_out_channels=(8, 16, 16, 16), layers_per_block=(1, 1, 1, 1, 1),
                  decoder_block_out_channels=(8, 16, 16, 16), decoder_layers_per_block=(1, 1, 1, 1, 1),
                  reference="both", mouth_code=True)


def model(seed: int = 0) -> CausalVAE:
    return every_path_on(MOUTH, seed)


def with_mouth_code(z: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """z with the mouth's state per frame [1, frames, 2] written in"""
    return with_code(z, FaceCode(torch.zeros(1, 1, 1, 64, 64), state))


def portrait(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_each_frame_reads_its_own_code_from_the_cells_mean():
    state = torch.rand(1, 17, 2)
    coded = with_mouth_code(torch.randn(1, 24, 3, 2, 2), state)
    coded[:, :MOUTH_CODE_CHANNELS] += torch.tensor([[0.1, -0.1], [-0.1, 0.1]])  # noise that averages out
    torch.testing.assert_close(frame_codes(coded[:, :, 1:]), (state[:, 1:] * 2 - 1).transpose(1, 2))


def test_the_head_paints_the_mouth_the_code_says_and_nothing_on_the_portraits_frame():
    vae = model()
    z = torch.randn(1, 24, 3, 2, 2)
    shut, wide = (with_mouth_code(z, torch.full((1, 17, 2), value)) for value in (0.0, 1.0))
    with torch.no_grad():
        a, b = vae.decode(shut, portrait()), vae.decode(wide, portrait())
    assert torch.equal(a[:, :, 0], b[:, :, 0])  # frame 0 is the portrait's: its latent carries no code
    assert (a[:, :, 1:] - b[:, :, 1:]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-3  # every later frame follows it


def test_a_fresh_head_paints_nothing_and_the_code_reaches_it_with_a_gradient():
    torch.manual_seed(0)
    vae = CausalVAE(MOUTH)
    plain = CausalVAE(dataclasses.replace(MOUTH, mouth_code=False))
    plain.load_state_dict({k: v for k, v in vae.state_dict().items() if "mouth_head" not in k})
    z = torch.randn(1, 24, 2, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(z, portrait()), plain.decode(z, portrait()))
    vae.decode(z, portrait()).square().mean().backward()
    assert vae.decoder.mouth_head.conv_out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("split", [[1] * 4, [1, 3], [2, 2], [3, 1]])
def test_stream_decode_equals_whole_decode_with_the_mouth_code(split):
    vae = model()
    z = with_mouth_code(torch.randn(1, 24, 4, 2, 2), torch.rand(1, 25, 2))
    assert_streams_as_whole(vae, z, split, portrait())


def test_a_mouth_code_needs_the_portrait_and_room_in_the_latents():
    with pytest.raises(ValueError, match="reference-conditioned"):
        dataclasses.replace(MOUTH, reference="none")
    with pytest.raises(ValueError, match="more than 16 latent channels"):
        dataclasses.replace(MOUTH, latent_channels=16)
