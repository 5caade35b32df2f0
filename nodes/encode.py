"""REST Reference Encoder (IMAGE -> REST_REFERENCE) and REST Speech Encoder (AUDIO -> REST_SPEECH + AUDIO)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rest_core import CropBox, SpeechLatents
from rest_core.speech import check_sample_rate, mono_clip, prepare_audio

from .model import RESTModel


@dataclass
class RESTReference:
    """What flows along a REST_REFERENCE link: z_R and where it came from in the source image."""

    latent: Tensor  # [1, C, 1, h, w] on the model's device
    crop: CropBox
    source: Tensor  # [H, W, 3] float in [0, 1], the image before the crop (for paste-back)


@dataclass
class RESTSpeech:
    """What flows along a REST_SPEECH link."""

    speech: SpeechLatents
    audio_16k: Tensor  # [N] mono, what the model heard (the player plays it with the frames)


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


class RESTReferenceEncoder:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("REST_MODEL",),
            "image": ("IMAGE", {"tooltip": "The portrait. The largest centred square is used, resized to the "
                                           "model's resolution; the crop is kept for REST Paste Back."}),
        }}

    RETURN_TYPES = ("REST_REFERENCE",)
    RETURN_NAMES = ("reference",)
    FUNCTION = "encode"
    CATEGORY = "REST"
    DESCRIPTION = "Encodes the portrait with the causal VAE into the reference latent z_R (the ID sink)."

    def encode(self, model: RESTModel, image: Tensor):
        model.load()
        latent, crop = model.pipe.encode_reference(image)
        source = image[0] if image.dim() == 4 else image
        return (RESTReference(latent, crop, source[..., :3].float().cpu()),)


class RESTSpeechEncoder:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("REST_MODEL",),
            "audio": ("AUDIO", {"tooltip": "Speech at any sample rate and channel count (mixed to mono, "
                                           "resampled to 16 kHz)."}),
        }}

    RETURN_TYPES = ("REST_SPEECH", "AUDIO")
    RETURN_NAMES = ("speech", "audio")
    OUTPUT_TOOLTIPS = ("The speech latents E, one group per latent frame.",
                       "The input audio cut or padded to the video's exact length, for CreateVideo.")
    FUNCTION = "encode"
    CATEGORY = "REST"
    DESCRIPTION = ("Whisper features and the SpeechAE: speech -> one group of speech latents per 8 video frames. "
                   "The video will have round(seconds x 25) frames.")

    def encode(self, model: RESTModel, audio: dict):
        waveform, rate = audio_input(audio)
        mono = mono_clip(waveform)  # empty / NaN / wrong layout: a clear error before any work
        model.load()
        speech = model.pipe.encode_speech(mono, rate)
        fitted = fit_audio(waveform if waveform.dim() == 3 else waveform[None], rate, speech.video_frames,
                           model.pipe.config.fps)
        return (RESTSpeech(speech, prepare_audio(mono, rate)), {"waveform": fitted, "sample_rate": rate})

