"""Import of published LTX-Video VAE weights in diffusers' `AutoencoderKLLTXVideo` format (0.9.0 family).

A diffusers VAE folder holds `config.json` and `diffusion_pytorch_model.safetensors`; our `CausalVAE` uses the
same parameter names, so the import maps the config and copies the tensors. Checkpoints in the original LTX
naming (`vae.encoder.down_blocks.1.conv...`) can be converted to this layout with diffusers'
`scripts/convert_ltx_to_diffusers.py` first.

The stock LTX decoders are not causal (`decoder_causal=False`); ours always is, so imported decoder weights are
an initialisation to fine-tune causally, while the encoder (causal in LTX too) matches exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

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
