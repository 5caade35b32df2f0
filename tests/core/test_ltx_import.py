import json

import diffusers
import pytest
import torch

from rest_core.ltx_import import load_diffusers_vae

CONFIG = dict(latent_channels=8, block_out_channels=(8, 16, 16, 16), decoder_block_out_channels=(8, 16, 16, 16),
              layers_per_block=(1, 2, 1, 1, 1), decoder_layers_per_block=(1, 1, 2, 1, 1), decoder_causal=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    reference = diffusers.AutoencoderKLLTXVideo(**CONFIG).eval()
    reference.latents_mean.normal_()
    reference.latents_std.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("ltx_vae")
    reference.save_pretrained(folder, safe_serialization=True)
    return reference, folder


def test_imported_encoder_matches_diffusers(saved):
    reference, folder = saved
    ours = load_diffusers_vae(folder).eval()
    video = torch.rand(1, 3, 17, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = reference.encode(video).latent_dist.mean
        got = ours.denormalize(ours.encode_video(video))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_imported_causal_decoder_matches_diffusers(saved):
    reference, folder = saved
    ours = load_diffusers_vae(folder).eval()
    z = torch.randn(1, 8, 3, 2, 2)
    with torch.no_grad():
        expected = reference.decode(z).sample
        got = ours.decode(ours.normalize(z))
    assert got.shape == expected.shape == (1, 3, 17, 64, 64)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_latent_statistics_come_along(saved):
    reference, folder = saved
    ours = load_diffusers_vae(folder)
    assert torch.equal(ours.latents_mean, reference.latents_mean)
    assert torch.equal(ours.latents_std, reference.latents_std)


def test_other_ltx_layouts_are_refused_with_the_reason(saved, tmp_path):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["timestep_conditioning"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(
        (folder / "diffusion_pytorch_model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="timestep_conditioning=True; only the 0.9.0 layout"):
        load_diffusers_vae(tmp_path)


def test_a_folder_without_safetensors_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors"):
        load_diffusers_vae(tmp_path)
