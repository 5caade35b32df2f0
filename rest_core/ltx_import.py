"""Import of published LTX-Video VAE weights (0.9.0 family), in either layout they come in.

(a) diffusers' `AutoencoderKLLTXVideo` folder: `config.json` and `diffusion_pytorch_model.safetensors`. Our
    `CausalVAE` uses the same parameter names, so the import maps the config and copies the tensors.
(b) Lightricks' own single file, the one ComfyUI users keep in `models/vae` (keys `encoder.down_blocks.N...`,
    `decoder.up_blocks.N.res_blocks.M...`, `per_channel_statistics.*`, maybe under `vae.`): there each encoder and
    decoder stage is one flat list of blocks (resnets, a strided conv, a widening resnet), which diffusers groups
    into down and up blocks. The layout is read off the file's own keys and shapes, mapped to ours and checked
    against it before any tensor is read. A file of a later LTX generation (0.9.1 and on: a timestep-conditioned
    decoder; LTX-2) or of another model is refused, naming what it is.

The stock LTX decoders are not causal (`decoder_causal=False`); ours always is, so imported decoder weights are
an initialisation to fine-tune causally, while the encoder (causal in LTX too) matches exactly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from .checkpoint import Header, check_weights, read_safetensors, shapes
from .config import VAEConfig
from .vae import CausalVAE

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

# diffusers options that change the architecture away from the 0.9.0 layout, with the value that layout uses
UNSUPPORTED = {
    "timestep_conditioning": False,
    "patch_size_t": 1,
    "downsample_type": ("conv",),
    "upsample_residual": (False,),
    "upsample_factor": (1,),
    "decoder_inject_noise": (False,),
    "down_block_types": ("LTXVideoDownBlock3D",),
    "in_channels": 3,
    "out_channels": 3,
}


def vae_config_from_diffusers(config: dict) -> VAEConfig:
    for key, plain in UNSUPPORTED.items():
        if key not in config:
            continue
        value = config[key]
        ok = all(v == plain[0] for v in value) if isinstance(plain, tuple) else value == plain
        if not ok:
            raise ValueError(f"LTX VAE config has {key}={value!r}; only the 0.9.0 layout ({key}={plain!r}) "
                             f"can be imported")
    names = ("latent_channels", "block_out_channels", "layers_per_block", "spatio_temporal_scaling",
             "decoder_block_out_channels", "decoder_layers_per_block", "decoder_spatio_temporal_scaling",
             "patch_size", "resnet_norm_eps")
    return VAEConfig(**{name: config[name] for name in names if name in config})


def load_diffusers_vae(folder: str | Path) -> CausalVAE:
    """A diffusers `AutoencoderKLLTXVideo` folder -> our CausalVAE with its weights (safetensors only)."""
    folder = Path(folder)
    config_path, weights_path = folder / "config.json", folder / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ValueError(f"{path} not found: expected a diffusers AutoencoderKLLTXVideo folder with config.json "
                             f"and {WEIGHTS_NAME}")
    vae = CausalVAE(vae_config_from_diffusers(json.loads(config_path.read_text())))
    state = load_file(str(weights_path))
    missing, unexpected = set(vae.state_dict()) - set(state), set(state) - set(vae.state_dict())
    if missing or unexpected:
        raise ValueError(f"{weights_path} does not match its config: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    for key, tensor in vae.state_dict().items():
        if state[key].shape != tensor.shape:
            raise ValueError(f"{weights_path}: {key} has shape {list(state[key].shape)}, the config implies "
                             f"{list(tensor.shape)}")
    vae.load_state_dict(state)
    return vae


# --- (b) Lightricks' single file --------------------------------------------------------------------------------

# keys only a later LTX VAE has: 0.9.1 and on condition the decoder on the timestep
TIMESTEP_KEYS = ("timestep_scale_multiplier", "last_time_embedder", "scale_shift_table")
STATISTICS = {"per_channel_statistics.mean-of-means": "latents_mean",
              "per_channel_statistics.std-of-means": "latents_std"}
IGNORED = ("per_channel_statistics.channel", "per_channel_statistics.mean-of-stds",  # not used by the VAE
           "per_channel_statistics.mean-of-stds_over_std-of-means")


def native_blocks(config: VAEConfig) -> dict[str, str]:
    """Where each of Lightricks' flat blocks lives in our (diffusers') grouping, for a config:
    {"encoder.down_blocks.1": "encoder.down_blocks.0.downsamplers.0", ...}."""
    names, n = {}, 0
    widths, scaling = config.block_out_channels, config.spatio_temporal_scaling
    for i, width in enumerate(widths):  # resnets, then the strided conv, then a widening resnet
        parts = [f"down_blocks.{i}"] + [f"down_blocks.{i}.downsamplers.0"] * scaling[i]
        parts += [f"down_blocks.{i}.conv_out"] * (width != widths[min(i + 1, len(widths) - 1)])
        for part in parts:
            names[f"encoder.down_blocks.{n}"], n = f"encoder.{part}", n + 1
    names[f"encoder.down_blocks.{n}"] = "encoder.mid_block"
    widths = tuple(reversed(config.decoder_block_out_channels))
    scaling = tuple(reversed(config.decoder_spatio_temporal_scaling))
    names["decoder.up_blocks.0"], n = "decoder.mid_block", 1
    for i, width in enumerate(widths):  # a widening resnet, then the upsampler, then resnets
        parts = [f"up_blocks.{i}.conv_in"] * (widths[max(i - 1, 0)] != width)
        parts += [f"up_blocks.{i}.upsamplers.0"] * scaling[i] + [f"up_blocks.{i}"]
        for part in parts:
            names[f"decoder.up_blocks.{n}"], n = f"decoder.{part}", n + 1
    return names


def native_name(key: str, blocks: dict[str, str]) -> str | None:
    """One of Lightricks' tensor names -> ours (None: a tensor our VAE has no use for)."""
    if key in IGNORED:
        return None
    if key in STATISTICS:
        return STATISTICS[key]
    match = re.match(r"(encoder\.down_blocks\.\d+|decoder\.up_blocks\.\d+)\.(.*)", key)
    if match:
        if match.group(1) not in blocks:
            raise ValueError(f"{key}: a block the file's layout does not have")
        key = f"{blocks[match.group(1)]}.{match.group(2)}"
    key = key.replace(".res_blocks.", ".resnets.").replace(".norm3.norm.", ".norm3.")
    return re.sub(r"\.conv_shortcut\.(weight|bias)$", r".conv_shortcut.conv.\1", key)


def native_config(header: dict[str, list[int]], where: str) -> VAEConfig:
    """The 0.9.0-family layout of a Lightricks VAE file, read off its keys and shapes."""
    def stage(prefix: str) -> list[tuple[str, int, int]]:
        """(kind, width, resnets) of each flat block: "res" (resnets), "conv" (a strided conv / upsampler) or
        "widen" (one resnet that changes the width)."""
        found = {}
        for key, shape in header.items():
            m = re.match(rf"{prefix}\.(\d+)\.(.*)", key)
            if m:
                found.setdefault(int(m.group(1)), {})[m.group(2)] = shape
        if sorted(found) != list(range(len(found))):
            raise ValueError(f"{where}: its {prefix} are not numbered 0, 1, 2, ...: not an LTX-Video VAE file")
        kinds = []
        for i in range(len(found)):
            block = found[i]
            resnets = {int(k.split(".")[1]) for k in block if k.startswith("res_blocks.")}
            if resnets:
                kinds.append(("res", block["res_blocks.0.conv1.conv.weight"][0], len(resnets)))
            elif "conv1.conv.weight" in block:
                kinds.append(("widen", block["conv1.conv.weight"][0], 1))
            elif "conv.weight" in block or "conv.conv.weight" in block:
                kinds.append(("conv", 0, 0))
            else:
                raise ValueError(f"{where}: {prefix}.{i} is a block this reader does not know ({sorted(block)[:3]})")
        return kinds

    encoder, decoder = stage("encoder.down_blocks"), stage("decoder.up_blocks")
    widths, layers, scaling = [], [], []
    for kind, width, count in encoder[:-1]:
        if kind == "res":
            widths.append(width), layers.append(count), scaling.append(False)
        elif kind == "conv" and scaling:
            scaling[-1] = True
        elif kind != "widen" or not widths:
            raise ValueError(f"{where}: its encoder's blocks are not in the 0.9.0 order")
    if encoder[-1][0] != "res":
        raise ValueError(f"{where}: its encoder does not end with a middle block of resnets")
    layers.append(encoder[-1][2])
    dec_widths, dec_layers, dec_scaling = [], [decoder[0][2]], []
    upsample = False
    for kind, width, count in decoder[1:]:
        if kind == "conv":
            upsample = True
        elif kind == "res":
            dec_widths.append(width), dec_layers.append(count), dec_scaling.append(upsample)
            upsample = False
    patch = round((header["encoder.conv_in.conv.weight"][1] / 3) ** 0.5)
    latent = header["encoder.conv_out.conv.weight"][0] - 1  # the uniform log-variance is one extra channel
    return VAEConfig(latent_channels=latent, block_out_channels=tuple(widths), layers_per_block=tuple(layers),
                     spatio_temporal_scaling=tuple(scaling),
                     decoder_block_out_channels=tuple(reversed(dec_widths)),
                     decoder_layers_per_block=tuple(reversed(dec_layers[1:])) + (dec_layers[0],),
                     decoder_spatio_temporal_scaling=tuple(reversed(dec_scaling)), patch_size=patch)


def load_native_vae(path: str | Path) -> CausalVAE:
    """A Lightricks LTX-Video 0.9.0-family VAE file (ComfyUI's `models/vae`) -> our CausalVAE with its weights and
    latent statistics. Everything is checked from the file's header first."""
    path = Path(path)
    found: dict = {}

    def check(metadata, header: Header):
        prefix = "vae." if any(k.startswith("vae.") for k in header) else ""
        keys = {k[len(prefix):]: v for k, v in header.items() if k.startswith(prefix)}
        if not any(k.startswith("decoder.up_blocks.") for k in keys) or not any(
                k.startswith("encoder.down_blocks.") for k in keys):
            raise ValueError(f"{path} is not an LTX-Video VAE (no encoder.down_blocks / decoder.up_blocks); give "
                             f"the LTX-Video 0.9.0 VAE file")
        later = next((k for k in keys if any(t in k for t in TIMESTEP_KEYS)), None)
        if later is not None or "timestep_conditioning\": true" in (metadata.get("config") or ""):
            raise ValueError(f"{path} is an LTX-Video 0.9.1-or-later VAE (its decoder is timestep-conditioned: "
                             f"{later or 'config'}); REST reads the 0.9.0 family's VAE")
        shaped = {k: shape for k, (_, shape) in keys.items()}
        config = native_config(shaped, str(path))
        blocks = native_blocks(config)
        with torch.device("meta"):
            expected = shapes(CausalVAE(config))
        ours = {}
        for key, (dtype, shape) in keys.items():
            name = native_name(key, blocks)
            if name is not None:
                ours[name] = (dtype, shape)
        check_weights(path, ours, expected)
        found.update(config=config, prefix=prefix, blocks=blocks)

    tensors, _ = read_safetensors(path, "LTX-Video VAE", dict, check)
    prefix = found["prefix"]
    state = {}
    for key, tensor in tensors.items():
        name = native_name(key[len(prefix):], found["blocks"]) if key.startswith(prefix) else None
        if name is not None:
            state[name] = tensor.float()
    vae = CausalVAE(found["config"])
    vae.load_state_dict(state)
    return vae


def load_ltx_vae(path: str | Path) -> CausalVAE:
    """An LTX-Video 0.9.0-family VAE in either layout: a diffusers folder, or Lightricks' single file."""
    path = Path(path)
    return load_diffusers_vae(path) if path.is_dir() else load_native_vae(path)
