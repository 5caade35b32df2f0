"""The reference-conditioned VAE: the decoder copies the portrait's look, streaming stays exact, the encoder sees the
portrait only when asked to."""

import dataclasses

import pytest
import torch

from rest_core.config import VAEConfig
from rest_core.vae import CausalVAE
from rest_core.vae_reference import ReferenceWarp, ReferenceEncoder2d, warp

from conftest import every_path_on, stream_decode

PLAIN = VAEConfig(latent_channels=8, block_out_channels=(8, 16, 16, 16), layers_per_block=(1, 1, 1, 1, 1),
                  decoder_block_out_channels=(8, 16, 16, 16), decoder_layers_per_block=(1, 2, 1, 1, 1))
BOTH = dataclasses.replace(PLAIN, reference="both")
DECODER = dataclasses.replace(PLAIN, reference="decoder")


def model(config: VAEConfig, seed: int = 0) -> CausalVAE:
    return every_path_on(config, seed)  # the flows start at zero and the gates half open: give them some


def images(*shape, seed: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("config", [BOTH, DECODER], ids=["both", "decoder"])
@pytest.mark.parametrize("split", [[1] * 6, [1, 2, 3], [1, 5], [2, 1, 3]])
def test_stream_decode_equals_whole_decode_with_the_portraits_look(config, split):
    vae = model(config)
    z, portrait = torch.randn(1, 8, sum(split), 2, 3), images(1, 3, 64, 96, seed=1)
    calls = []
    vae.reference_encoder.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        whole = vae.decode(z, portrait)
        outs = stream_decode(vae, z, split, portrait)
    assert len(calls) == 2  # once for the whole decode, once per stream: never per chunk
    # the output flow is in pixels (4x the grid's): it carries the convs' float rounding to a few 1e-5
    torch.testing.assert_close(torch.cat(outs, dim=2), whole, atol=5e-5, rtol=1e-5)


def test_the_decoder_copies_from_the_portrait_and_a_plain_one_ignores_it():
    z, a, b = torch.randn(1, 8, 2, 2, 2), images(1, 3, 64, 64, seed=2), images(1, 3, 64, 64, seed=3)
    with torch.no_grad():
        conditioned = model(BOTH)
        assert not torch.allclose(conditioned.decode(z, a), conditioned.decode(z, b))
        plain = model(PLAIN)
        assert torch.equal(plain.decode(z, a), plain.decode(z))
        assert plain.reference_encoder is None and not any("reference" in k for k in plain.state_dict())


def test_only_both_lets_the_encoder_see_the_portrait():
    video, a, b = images(1, 3, 9, 64, 64, seed=4), images(1, 3, 64, 64, seed=5), images(1, 3, 64, 64, seed=6)
    with torch.no_grad():
        both, decoder = model(BOTH), model(DECODER)
        assert not torch.allclose(both.encode_video(video, a), both.encode_video(video, b))
        assert torch.equal(decoder.encode_video(video, a), decoder.encode_video(video, b))


def test_z_r_is_the_portrait_encoded_with_itself_as_a_videos_first_latent_is():
    vae = model(BOTH)
    portrait, video = images(2, 3, 64, 64, seed=7), images(2, 3, 17, 64, 64, seed=8)
    video[:, :, 0] = portrait
    with torch.no_grad():
        z_r, z = vae.encode_image(portrait), vae.encode_video(video, portrait)
    assert z_r.shape == (2, 8, 1, 2, 2)
    torch.testing.assert_close(z_r, z[:, :, :1], atol=1e-5, rtol=1e-4)


def test_a_missing_or_misshaped_portrait_says_what_to_pass():
    vae, z = model(BOTH), torch.randn(1, 8, 2, 2, 2)
    with pytest.raises(ValueError, match="copies the look from the portrait.*pass the portrait as `reference`"):
        vae.decode(z)
    with pytest.raises(ValueError, match="copies the look"):
        vae.decode_start()
    with pytest.raises(ValueError, match=r"reference: expected shape \[B=1, RGB=3, H=64, W=64\], got \[1, 3, 32, 32\]"):
        vae.decode(z, images(1, 3, 32, 32, seed=9))
    with pytest.raises(ValueError, match="reference contains NaN"):
        vae.encode_video(images(1, 3, 9, 64, 64, seed=10), torch.full((1, 3, 64, 64), float("nan")))


def test_the_reference_mode_is_checked():
    with pytest.raises(ValueError, match="reference='encoder': choose one of none, decoder, both"):
        dataclasses.replace(PLAIN, reference="encoder")


def test_the_reference_features_match_each_up_block_in_scale_and_width():
    features = ReferenceEncoder2d(BOTH)(images(1, 3, 64, 96, seed=11))
    # the portrait itself (for the output blend), then 1/4, 1/8, 1/16, 1/32 of the side at the decoder's widths
    assert [tuple(f.shape[1:]) for f in features] == [(3, 64, 96), (8, 16, 24), (16, 8, 12), (16, 4, 6), (16, 2, 3)]


def test_warp_with_no_flow_is_the_identity_and_a_flow_moves_the_features():
    x = torch.randn(2, 4, 5, 7)
    torch.testing.assert_close(warp(x, torch.zeros(2, 2, 5, 7)), x, atol=1e-6, rtol=1e-6)
    right = torch.zeros(2, 2, 5, 7)
    right[:, 0] = 1.0  # every position takes the one to its right (x), the last keeps the border's
    moved = warp(x, right)
    torch.testing.assert_close(moved[..., :-1], x[..., 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(moved[..., -1], x[..., -1], atol=1e-5, rtol=1e-5)


def test_the_output_is_the_portrait_moved_by_the_predicted_flow_plus_the_painting():
    blend = ReferenceWarp(4, patch=4)
    with torch.no_grad():  # a flow of a quarter patch to the right everywhere: one pixel
        blend.predict[-1].bias.copy_(torch.tensor([0.25, 0.0]))
    painted, portrait = images(1, 3, 2, 16, 16, seed=12), images(1, 3, 16, 16, seed=13)
    out = blend(painted, portrait, images(1, 4, 2, 4, 4, seed=14), images(1, 4, 4, 4, seed=15))
    one_right = torch.zeros(1, 2, 16, 16)
    one_right[:, 0] = 1.0
    expected = warp(portrait, one_right)[:, :, None] + painted
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[..., :-1] - painted[..., :-1], portrait[:, :, None, :, 1:].expand(-1, -1, 2, -1, -1),
                               atol=1e-5, rtol=1e-5)
