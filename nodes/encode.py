"""REST Reference Encoder (IMAGE -> REST_REFERENCE + the crop it animates) and REST Speech Encoder (AUDIO ->
REST_SPEECH + AUDIO)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import comfy.utils
import folder_paths
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from rest_core import (SAMPLE_RATE, CropBox, Reference, SpeechLatents, check_frames_fit, check_sample_rate,
                       cut_square, mask_bounds, mono_clip, mouth_in_square, portrait_pixels, to_uint8, video_frames)

from .model import RESTModel


@dataclass
class RESTReference:
    """What flows along a REST_REFERENCE link: the model's Reference (z_R and the square) and where it came from in
    the source image."""

    ref: Reference  # on the model's device
    crop: CropBox
    source: Tensor  # [H, W, 3] float in [0, 1], the image before the crop (for paste-back)


@dataclass
class RESTSpeech:
    """What flows along a REST_SPEECH link."""

    speech: SpeechLatents  # with the 16 kHz audio the model heard, which the player plays with the frames


def audio_input(audio: dict) -> tuple[Tensor, int]:
    """A ComfyUI AUDIO dict -> (its waveform [1, C, N], its sample rate), with clear errors."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError("audio: expected a ComfyUI AUDIO (a dict with 'waveform' and 'sample_rate'); connect "
                         "LoadAudio or another audio node")
    return audio["waveform"], check_sample_rate(audio["sample_rate"])


def fit_audio(waveform: Tensor, sample_rate: int, frames: int, fps: int) -> Tensor:
    """Cut or silence-pad [B, C, N] to exactly `frames` video frames of audio."""
    n = round(frames * sample_rate / fps)
    if waveform.shape[-1] >= n:
        return waveform[..., :n]
    return torch.cat([waveform, waveform.new_zeros(*waveform.shape[:-1], n - waveform.shape[-1])], dim=-1)


PREVIEW_SIDE = 512  # the longer side of the crop preview shown on the node


def of_the_portrait(name: str, mask: Tensor, height: int, width: int) -> Tensor:
    """A mask input, refused unless it is the height x width portrait's size."""
    if tuple(mask.shape[-2:]) != (height, width):
        raise ValueError(f"{name} is {mask.shape[-1]}x{mask.shape[-2]} but the image is {width}x{height}; give a "
                         f"mask of the portrait itself")
    return mask


def face_box(x: int, y: int, size: int, mask: Tensor | None, height: int, width: int) -> CropBox | None:
    """The node's box inputs -> the square to animate inside a height x width portrait; None: the largest centred
    square."""
    if mask is not None:
        return CropBox.holding(of_the_portrait("face_mask", mask, height, width))
    return CropBox(top=y, left=x, size=size).check(height, width) if size > 0 else None


def mouth_box(mask: Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """The node's mouth mask -> the box (x0, y0, x1, y1) around its painted region, in source pixels."""
    return mask_bounds(of_the_portrait("mouth_mask", mask, height, width),
                       "paint over the mouth, or disconnect mouth_mask to let the model find it")


def crop_preview(source: Tensor, box: CropBox, mouth: tuple[int, int, int, int] | None = None) -> Image.Image:
    """The source [H, W, 3], scaled to at most PREVIEW_SIDE px, with everything outside the box darkened and the box
    outlined (yellow); `mouth` (x0, y0, x1, y1 in source pixels), where given, outlined too (cyan)."""
    height, width = source.shape[:2]
    scale = min(1.0, PREVIEW_SIDE / max(height, width))
    if scale < 1:  # scaled first: a huge portrait never gets a second full-size copy
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        source = F.interpolate(source.permute(2, 0, 1)[None], size=size, mode="bilinear", antialias=True,
                               align_corners=False)[0].permute(1, 2, 0)
    top, left, side = (round(v * scale) for v in (box.top, box.left, box.size))
    shown = source * 0.35
    inside = (slice(top, top + side), slice(left, left + side))
    shown[inside] = source[inside]
    outline(shown, top, left, top + side, left + side, (1.0, 0.8, 0.0))
    if mouth is not None:
        x0, y0, x1, y1 = (round(v * scale) for v in mouth)
        outline(shown, y0, x0, max(y1, y0 + 2), max(x1, x0 + 2), (0.0, 0.9, 1.0))
    return Image.fromarray(to_uint8(shown).numpy())


def outline(image: Tensor, top: int, left: int, bottom: int, right: int, colour: tuple[float, float, float]):
    """Draw a one-pixel rectangle's edge into image [H, W, 3] in place: rows top .. bottom - 1, columns left ..
    right - 1 (cut to the image)."""
    edges = torch.zeros(image.shape[:2], dtype=torch.bool)
    edges[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = True
    edges[max(top + 1, 0):max(bottom - 1, 0), max(left + 1, 0):max(right - 1, 0)] = False
    image[edges] = torch.tensor(colour)


def save_preview(image: Image.Image) -> dict:
    """A PNG in ComfyUI's temp folder, as a node's ui image entry."""
    name = f"rest_crop_{uuid.uuid4().hex[:12]}.png"
    image.save(os.path.join(folder_paths.get_temp_directory(), name))
    return {"filename": name, "subfolder": "", "type": "temp"}


class RESTReferenceEncoder:
    @classmethod
    def INPUT_TYPES(cls):
        box = {"min": 0, "max": 16384, "step": 1}
        return {
            "required": {
                "model": ("REST_MODEL",),
                "image": ("IMAGE", {"tooltip": "The portrait. The face box below (default: the largest centred "
                                               "square) is animated, resized to the model's resolution; REST Paste "
                                               "Back puts it back."}),
            },
            "optional": {
                "face_x": ("INT", {"default": 0, **box, "tooltip": "Left edge of the face box, in source pixels."}),
                "face_y": ("INT", {"default": 0, **box, "tooltip": "Top edge of the face box, in source pixels."}),
                "face_size": ("INT", {"default": 0, **box, "tooltip": "Side of the square face box in source "
                                                                      "pixels; 0: the largest centred square. Best "
                                                                      "when the head fills about half of it."}),
                "face_mask": ("MASK", {"tooltip": "Instead of the box: the smallest square holding this mask's "
                                                  "region (e.g. from a segmentation or a painted mask)."}),
                "mouth_mask": ("MASK", {"tooltip": "Where the mouth is: paint over the lips (the box around the "
                                                   "painted region is taken). Unconnected, the model finds the "
                                                   "mouth itself; on a photograph it can miss it and open the mouth "
                                                   "in the wrong place. For models that draw the mouth (rest-demo)."}),
            },
        }

    RETURN_TYPES = ("REST_REFERENCE", "IMAGE")
    RETURN_NAMES = ("reference", "crop")
    OUTPUT_TOOLTIPS = ("z_R and the square, the crop box and the source image (for REST Paste Back).",
                       "The square the model animates, at its resolution.")
    FUNCTION = "encode"
    CATEGORY = "REST"
    DESCRIPTION = ("Encodes the portrait's face box with the causal VAE into the reference latent z_R (the ID sink) "
                   "and keeps the square, whose look the decoder copies. The node shows the box (yellow) and a "
                   "given mouth (cyan) on the portrait.")

    def encode(self, model: RESTModel, image: Tensor, face_x: int = 0, face_y: int = 0, face_size: int = 0,
               face_mask: Tensor | None = None, mouth_mask: Tensor | None = None):
        # a bad portrait, box or mask is refused before the model loads
        source = portrait_pixels(image).cpu()
        box = face_box(face_x, face_y, face_size, face_mask, *source.shape[:2])
        painted = None if mouth_mask is None else mouth_box(mouth_mask, *source.shape[:2])
        pixels, crop = cut_square(source, model.pipe.config.resolution, box)  # [1, 3, R, R] in [-1, 1]
        mouth = None if painted is None else mouth_in_square(painted, crop, model.pipe.config.resolution)
        model.load()
        reference = RESTReference(model.pipe.encode_square(pixels, mouth), crop, source)
        return {"ui": {"images": [save_preview(crop_preview(source, crop, painted))]},
                "result": (reference, ((pixels + 1) / 2).permute(0, 2, 3, 1))}


# what REST Streaming Sampler's frames cost: its chunks, their concatenation, and the copy the next node (REST Decode,
# CreateVideo) makes, each a whole IMAGE batch at the model's resolution
IMAGE_PATH_COPIES = 3
LONG_SPEECH = ("for long speech use REST Render Video (the long_audio workflow): it writes each chunk into the mp4 "
               "as it is made, in flat memory")


def check_image_path_fits(frames: int, model: RESTModel):
    size = model.pipe.config.resolution
    check_frames_fit("REST Streaming Sampler", frames, size, size, IMAGE_PATH_COPIES, LONG_SPEECH)


def feeds_image_path(prompt: dict | None, node: str | None) -> bool:
    """Whether this node's speech output goes to a REST Streaming Sampler in the queued prompt, whose frames are
    held whole (the IMAGE path)."""
    if not prompt or node is None:
        return False
    return any(isinstance(n, dict) and n.get("class_type") == "RESTStreamingSampler"
               and n.get("inputs", {}).get("speech") == [str(node), 0] for n in prompt.values())


class RESTSpeechEncoder:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("REST_MODEL",),
            "audio": ("AUDIO", {"tooltip": "Speech at any sample rate and channel count (mixed to mono, "
                                           "resampled to 16 kHz)."}),
        }, "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT"}}

    RETURN_TYPES = ("REST_SPEECH", "AUDIO")
    RETURN_NAMES = ("speech", "audio")
    OUTPUT_TOOLTIPS = ("The speech latents E, one group per latent frame.",
                       "The input audio cut or padded to the video's exact length, for CreateVideo.")
    FUNCTION = "encode"
    CATEGORY = "REST"
    DESCRIPTION = ("Whisper features and the SpeechAE: speech -> one group of speech latents per 8 video frames. "
                   "The video will have round(seconds x 25) frames.")

    def encode(self, model: RESTModel, audio: dict, unique_id: str | None = None, prompt: dict | None = None):
        waveform, rate = audio_input(audio)
        mono = mono_clip(waveform)  # empty / NaN / wrong layout: a clear error before any work
        if feeds_image_path(prompt, unique_id):  # refused now, not after minutes of encoding
            check_image_path_fits(video_frames(round(mono.shape[0] * SAMPLE_RATE / rate)), model)
        model.load()
        bar = comfy.utils.ProgressBar(1, node_id=unique_id)  # its updates are ComfyUI's cancel points
        speech = model.pipe.encode_speech(mono, rate, on_second=lambda done, total: bar.update_absolute(done, total))
        fitted = fit_audio(waveform if waveform.dim() == 3 else waveform[None], rate, speech.video_frames,
                           model.pipe.config.fps)
        return (RESTSpeech(speech), {"waveform": fitted, "sample_rate": rate})

