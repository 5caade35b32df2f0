"""REST Decode (LATENT -> IMAGE + fps) and REST Paste Back (frames -> the source image, at the crop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .encode import RESTReference
from .model import RESTModel


class RESTDecode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("REST_MODEL",),
                             "latent": ("LATENT", {"tooltip": "The latent of REST Streaming Sampler."})}}

    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("images", "fps")
    FUNCTION = "decode"
    CATEGORY = "REST"
    DESCRIPTION = ("The video frames of a REST stream (round(seconds x 25) of them) and its frame rate. Frames the "
                   "sampler already decoded for its preview are reused, not decoded twice.")

    def decode(self, model: RESTModel, latent: dict):
        fps = float(model.pipe.config.fps)
        if latent.get("rest_frames_of") is latent.get("samples") and latent.get("rest_frames") is not None:
            return (latent["rest_frames"], fps)
        if "rest_reference" not in latent or "rest_video_frames" not in latent:
            raise ValueError("latent: this LATENT was not made by REST Streaming Sampler (it has no reference "
                             "latent); connect the sampler's output")
        model.load()
        frames = model.pipe.decode_latents(latent["rest_reference"].to(model.device),
                                           latent["samples"].to(model.device), latent["rest_video_frames"])
        return (frames, fps)


def edge_mask(size: int, feather: int) -> Tensor:
    """[size, size] weights: 1 inside, falling linearly to 0 over `feather` pixels at the square's border."""
    if feather <= 0:
        return torch.ones(size, size)
    d = torch.arange(size, dtype=torch.float32)
    ramp = (torch.minimum(d, size - 1 - d) + 1).div(feather).clamp(max=1)
    return torch.minimum(ramp[:, None], ramp[None, :])


class RESTPasteBack:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Frames at the model's resolution (REST Decode)."}),
            "reference": ("REST_REFERENCE", {"tooltip": "Holds the source image and where the face was cropped."}),
            "feather": ("INT", {"default": 16, "min": 0, "max": 256,
                                "tooltip": "Blend width in source pixels at the crop's border."}),
        }}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "paste"
    CATEGORY = "REST"
    DESCRIPTION = "Puts the generated square back into the full source image, frame by frame."

    def paste(self, images: Tensor, reference: RESTReference, feather: int):
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"images: expected IMAGE frames [N, H, W, 3], got {list(images.shape)}")
        box, source = reference.crop, reference.source
        square = F.interpolate(images.permute(0, 3, 1, 2).float(), size=(box.size, box.size), mode="bilinear",
                               antialias=True, align_corners=False).permute(0, 2, 3, 1).clamp(0, 1)
        weight = edge_mask(box.size, min(feather, box.size // 2))[None, :, :, None]
        out = source[None].expand(images.shape[0], -1, -1, -1).clone()  # [N, H, W, 3]
        region = out[:, box.top:box.top + box.size, box.left:box.left + box.size]
        out[:, box.top:box.top + box.size, box.left:box.left + box.size] = weight * square + (1 - weight) * region
        return (out,)
