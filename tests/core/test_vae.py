import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rest_core.config import VAEConfig
from rest_core.vae import CausalConv3d, CausalVAE, channel_norm

from conftest import stream_decode

SMALL = VAEConfig(latent_channels=8, block_out_channels=(8, 16, 16, 16), layers_per_block=(1, 1, 1, 1, 1),
                  decoder_block_out_channels=(8, 16, 16, 16), decoder_layers_per_block=(1, 2, 1, 1, 1))


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    model = CausalVAE(SMALL).eval()
    model.latents_mean.normal_()
    model.latents_std.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("split", [[1] * 10, [1, 2, 2, 2, 2], [1, 3, 3, 2], [1, 4, 1, 3, 1], [2, 5, 3]])
def test_stream_decode_equals_whole_decode_for_any_chunking(vae, split):
    torch.manual_seed(1)
    z = torch.randn(1, 8, sum(split), 2, 2)
    with torch.no_grad():
        whole = vae.decode(z)
        outs = stream_decode(vae, z, split)
    assert whole.shape == (1, 3, 1 + 8 * (sum(split) - 1), 64, 64)
    # the first call gives 1 frame for the reference, then exactly 8 per latent frame
    assert [o.shape[2] for o in outs] == [1 + 8 * (split[0] - 1)] + [8 * n for n in split[1:]]
    torch.testing.assert_close(torch.cat(outs, dim=2), whole, atol=1e-5, rtol=1e-5)


def test_stream_state_stays_the_same_size_however_long_the_stream(vae):
    z = torch.randn(1, 8, 1, 2, 2)
    state = vae.decode_start()
    with torch.no_grad():
        sizes = []
        for _ in range(6):
            _, state = vae.decode_stream(z, state)
            sizes.append(sum(f.numel() for f in state.frames))
    assert len(set(sizes[1:])) == 1 and all(f.shape[2] == 2 for f in state.frames)


def test_image_encodes_to_one_latent_frame_that_equals_frame_zero_of_a_video(vae):
    torch.manual_seed(2)
    video = torch.rand(2, 3, 17, 64, 64) * 2 - 1
    with torch.no_grad():
        z_video = vae.encode_video(video)
        z_image = vae.encode_image(video[:, :, 0])
    assert z_video.shape == (2, 8, 3, 2, 2) and z_image.shape == (2, 8, 1, 2, 2)
    torch.testing.assert_close(z_image[:, :, 0], z_video[:, :, 0], atol=1e-5, rtol=1e-5)


def test_normalisation_round_trips(vae):
    z = torch.randn(1, 8, 3, 2, 2)
    torch.testing.assert_close(vae.normalize(vae.denormalize(z)), z)


def test_posterior_sampling_is_seeded(vae):
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        a = vae.encode_video(video, sample=True, generator=torch.Generator().manual_seed(3))
        b = vae.encode_video(video, sample=True, generator=torch.Generator().manual_seed(3))
        mean = vae.encode_video(video)
    assert torch.equal(a, b) and not torch.equal(a, mean)


@pytest.mark.parametrize("frames", [2, 8, 10, 16])
def test_clip_lengths_that_are_not_1_plus_8k_say_which_are_valid(vae, frames):
    with pytest.raises(ValueError, match=r"1 \+ 8k frames \(1, 9, 17, 25"):
        vae.encode_video(torch.zeros(1, 3, frames, 32, 32))


@pytest.mark.parametrize("shape, word", [
    ((1, 4, 9, 32, 32), r"video: expected shape \[B, RGB=3"),
    ((1, 1, 9, 32, 32), r"RGB=3"),
    ((3, 9, 32, 32), r"video: expected shape"),
    ((1, 3, 9, 40, 32), "multiples of 32"),
])
def test_non_rgb_or_misshaped_video_is_rejected(vae, shape, word):
    with pytest.raises(ValueError, match=word):
        vae.encode_video(torch.zeros(shape))


def test_image_must_be_rgb_and_finite(vae):
    with pytest.raises(ValueError, match=r"image: expected shape \[B, RGB=3, H, W\]"):
        vae.encode_image(torch.zeros(1, 4, 32, 32))
    bad = torch.zeros(1, 3, 32, 32)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        vae.encode_image(bad)


def test_decode_rejects_latents_with_the_wrong_channels(vae):
    with pytest.raises(ValueError, match=r"z: expected shape \[B, C=8"):
        vae.decode(torch.zeros(1, 4, 2, 2, 2))


def test_config_rejects_a_layout_without_32x32x8_compression():
    with pytest.raises(ValueError, match="32x32x8"):
        VAEConfig(spatio_temporal_scaling=(True, True, False, False))


@pytest.mark.parametrize("shape", [(1, 16, 5, 8, 8), (2, 16, 9, 20, 12)])  # torch picks im2col, then oneDNN
def test_causal_conv_gives_torchs_conv3d_values_gradients_and_flop_count(shape):
    torch.manual_seed(0)
    layer = CausalConv3d(16, 24)
    x = torch.randn(shape, requires_grad=True)
    with FlopCounterMode(display=False) as counted:
        out = layer.time_conv(x)
    with FlopCounterMode(display=False) as expected:
        reference = layer.conv(x)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-4)
    assert counted.get_total_flops() == expected.get_total_flops() > 0
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    (grad_reference,) = torch.autograd.grad(reference.square().sum(), x)
    torch.testing.assert_close(grad, grad_reference, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_channel_norm_holds_in_reduced_precision_where_the_squares_overflow_float16(dtype):
    torch.manual_seed(0)
    x = torch.randn(1, 32, 2, 4, 4) * 400  # the encoder's range: 400^2 is past float16's largest value
    reduced = channel_norm(x.to(dtype)).float()
    exact = channel_norm(x)
    assert torch.isfinite(reduced).all()
    assert (reduced - exact).abs().max() / exact.abs().max() < 1e-2
    assert torch.allclose(exact.square().mean(dim=1), torch.ones(1, 2, 4, 4), atol=1e-4)
