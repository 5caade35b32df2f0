"""REST Model Loader: a REST checkpoint from `models/rest/` and a Whisper speech encoder, as one REST_MODEL.

The plugin's own `models/` folder is searched after ComfyUI's `models/rest/`, so the shipped demo model is listed
without copying it anywhere (a file of the same name in `models/rest/` takes precedence).

The parts sit behind one ComfyUI ModelPatcher, so ComfyUI moves them to the GPU before a run and may offload them
to make room for other models, like any core model.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import comfy.model_management
import comfy.model_patcher
import folder_paths
import torch
from torch import nn

from rest_core import DTYPES, RESTPipeline, emulated_dtype_warning, fastest_cpu_dtype

PLUGIN_MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")
folder_paths.add_model_folder_path("rest", os.path.join(folder_paths.models_dir, "rest"), is_default=True)
folder_paths.add_model_folder_path("rest", PLUGIN_MODELS)

DEFAULT_WHISPER = "bundled in the checkpoint, else Whisper tiny.en (package)"
FROM_CHECKPOINT = "from the checkpoint"


@dataclass
class RESTModel:
    """What flows along a REST_MODEL link. `identity` says which model this is by what changes its output (the
    checkpoint's and the speech encoder's contents, the dtype, the device, compiled or not): two loads of the same
    files and choices are the same model, whatever other prompts loaded in between."""

    pipe: RESTPipeline
    patcher: comfy.model_patcher.ModelPatcher
    name: str
    identity: tuple

    def load(self):
        """Bring every part onto the load device (whole: the parts have no per-layer weight casting)."""
        comfy.model_management.load_models_gpu([self.patcher], force_full_load=True)

    @property
    def device(self) -> torch.device:
        return next(self.pipe.dit.parameters()).device


FINGERPRINT_BYTES = 1 << 20


def file_fingerprint(path: str) -> tuple:
    """What a live session knows a weights file by, at the same cost for 38 MB and 5 GB: its real path, size and
    modification time, and a hash of its first and last MiB (a safetensors file's header, which names every tensor's
    dtype, shape and place, and the ends of its weights). A file replaced, or rewritten in place, changes it."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    size, modified = stat.st_size, stat.st_mtime_ns
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        digest.update(f.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            f.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            digest.update(f.read(FINGERPRINT_BYTES))
    return real, size, modified, digest.hexdigest()


def checkpoint_names() -> list[str]:
    return [name for name in folder_paths.get_filename_list("rest") if name.endswith(".safetensors")]


def pick_dtype(choice: str, device: torch.device) -> torch.dtype:
    if choice != "auto":
        warning = emulated_dtype_warning(DTYPES[choice], device)
        if warning:
            logging.warning("REST Model Loader: %s", warning)
        return DTYPES[choice]
    if device.type == "cpu":
        return fastest_cpu_dtype()
    if comfy.model_management.should_use_bf16(device):
        return torch.bfloat16
    return torch.float16 if comfy.model_management.should_use_fp16(device) else torch.float32


class RESTModelLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "checkpoint": (checkpoint_names(), {"tooltip": "A REST .safetensors checkpoint in models/rest/."}),
            "speech_encoder": ([DEFAULT_WHISPER] + folder_paths.get_filename_list("audio_encoders"), {
                "tooltip": "Whisper tiny weights for the speech path: openai or Hugging Face .safetensors, or a "
                           "CTranslate2 model.bin, from models/audio_encoders/."}),
            "device": (["auto", "cpu"], {"tooltip": "auto: ComfyUI's device (the GPU when there is one)."}),
            "dtype": (["auto", *DTYPES], {"tooltip": "auto: bfloat16 or float16 where the GPU supports it; on the CPU "
                                                     "bfloat16 only where it has native bfloat16 matmuls that are "
                                                     "measured faster, else float32 (elsewhere bfloat16 is emulated "
                                                     "and far slower: picking it is warned of). The speech "
                                                     "encoder always runs in float32."}),
        }, "optional": {
            "vae": ([FROM_CHECKPOINT] + folder_paths.get_filename_list("vae"), {
                "tooltip": "The checkpoint's own VAE, or published LTX-Video 0.9.0 VAE weights from models/vae/ "
                           "(Lightricks' file) for a rest-2b checkpoint, whose VAE has that layout."}),
            "compile": ("BOOLEAN", {"default": False, "tooltip": "Compile the DiT (torch.compile): the first run "
                                                                 "in this ComfyUI process waits 15-30 s for it, "
                                                                 "later chunks run faster. Needs a C++ compiler "
                                                                 "on the CPU, Triton on a GPU."}),
        }}

    RETURN_TYPES = ("REST_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    CATEGORY = "REST"
    DESCRIPTION = "Loads a REST talking-head model (DiT, causal VAE, SpeechAE) and its Whisper speech encoder."

    def load(self, checkpoint: str, speech_encoder: str, device: str, dtype: str, compile: bool = False,
             vae: str = FROM_CHECKPOINT):
        path = folder_paths.get_full_path("rest", checkpoint)
        if path is None:
            raise ValueError(f"checkpoint {checkpoint!r} is not in models/rest/; put the .safetensors file there "
                             f"and refresh")
        whisper = None
        if speech_encoder != DEFAULT_WHISPER:
            whisper = folder_paths.get_full_path("audio_encoders", speech_encoder)
            if whisper is None:
                raise ValueError(f"speech encoder {speech_encoder!r} is not in models/audio_encoders/")
        vae_path = None
        if vae != FROM_CHECKPOINT:
            vae_path = folder_paths.get_full_path("vae", vae)
            if vae_path is None:
                raise ValueError(f"VAE {vae!r} is not in models/vae/")
        if device == "cpu":
            load_device = offload_device = torch.device("cpu")
        else:
            load_device = comfy.model_management.get_torch_device()
            offload_device = comfy.model_management.unet_offload_device()
        chosen = pick_dtype(dtype, load_device)
        # known before the weights are read: a file replaced while they load is then a different model
        identity = (file_fingerprint(path), whisper and file_fingerprint(whisper),
                    vae_path and file_fingerprint(vae_path), str(chosen), str(load_device), compile)
        pipe = RESTPipeline.from_pretrained(path, whisper=whisper, device=offload_device, dtype=chosen, vae=vae_path)
        if compile:
            pipe.compile(device=load_device)
        parts = nn.ModuleDict(pipe.parts(include_whisper=True))
        patcher = comfy.model_patcher.ModelPatcher(parts, load_device=load_device, offload_device=offload_device)
        return (RESTModel(pipe, patcher, checkpoint, identity),)

