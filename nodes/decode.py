"""REST Decode (LATENT -> IMAGE + fps) and REST Paste Back (frames -> the source image, at the crop)."""

from __future__ import annotations

from torch import Tensor

from rest_core import Reference, check_frames_fit, even_size, paste_back

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
        if not isinstance(latent.get("rest_reference"), Reference) or "rest_video_frames" not in latent:
            raise ValueError("latent: this LATENT was not made by REST Streaming Sampler (it has no reference "
                             "latent); connect the sampler's output")
        model.load()
        frames = model.pipe.decode_latents(latent["rest_reference"].to(model.device),
                                           latent["samples"].to(model.device), latent["rest_video_frames"])
        return (frames, fps)


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
    DESCRIPTION = ("Puts the generated square back into the full source image, frame by frame. An odd side gets its "
                   "last row or column repeated once, so the frames can go to a video encoder.")

    def paste(self, images: Tensor, reference: RESTReference, feather: int):
        height, width = reference.source.shape[:2]
        check_frames_fit("REST Paste Back", images.shape[0], height, width, 1,
                         "scale the portrait down, or use REST Render Video (the long_audio workflow), which pastes "
                         "each chunk back and writes it into the mp4 as it is made")
        return (even_size(paste_back(images, reference.source, reference.crop, feather)),)
