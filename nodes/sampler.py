"""REST Streaming Sampler: Algorithm 1 inside one node. It owns the ID-Context Cache for the whole clip, denoises
chunk after chunk, decodes each one as soon as it is made, shows it in the progress preview and sends it to the
live player on the node.

Cancel is checked after every denoising step (ComfyUI's progress hook raises there), so a cancelled job stops
within one chunk; nothing outlives the call but its outputs.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Iterator

import comfy.model_management
import comfy.utils
import torch
from torch import Tensor

from rest_core import SampleBuffer, StreamOptions, VideoChunk, VideoStream

from .encode import RESTReference, RESTSpeech, check_image_path_fits
from .model import RESTModel
from .player import LivePlayer, preview_image

PREVIEW_SIZE = 512
WIDGET_TYPES = {int: "INT", float: "FLOAT", bool: "BOOLEAN"}


def sampling_inputs() -> dict:
    """The widgets of the sampling options, shared by every sampler node: one per StreamOptions field (in its
    order, with its default, range and help), except those the model decides (the shift)."""
    inputs = {}
    for f in dataclasses.fields(StreamOptions):
        meta = f.metadata
        if meta.get("node", True) is False:
            continue
        if "choices" in meta:
            inputs[f.name] = (list(meta["choices"]), {"default": f.default, "tooltip": meta["help"]})
            continue
        spec = {"default": f.default, "tooltip": meta["help"]}
        if "low" in meta:
            spec |= {"min": meta["low"], "max": meta["high"]}
        if "step" in meta:
            spec["step"] = meta["step"]
        inputs[f.name] = (WIDGET_TYPES[type(f.default)], spec)
    return inputs


def stream_options(model: RESTModel, widgets: dict) -> StreamOptions:
    """The model's own options with the node's widget values (`sampling_inputs`) in place."""
    return model.pipe.options(**widgets)


def text_condition(conditioning, model: RESTModel) -> Tensor | None:
    """ComfyUI CONDITIONING -> text tokens [1, L, text_dim] for the DiT's cross-attention, or None."""
    if conditioning is None:
        return None
    text_dim = model.pipe.config.dit.text_dim
    if text_dim is None:
        raise ValueError(f"{model.name} has no text cross-attention; disconnect the conditioning input")
    try:
        tokens = conditioning[0][0]
    except (TypeError, IndexError, KeyError) as e:
        raise ValueError("conditioning: expected a ComfyUI CONDITIONING from a text encoder node") from e
    if not isinstance(tokens, Tensor) or tokens.dim() != 3 or tokens.shape[0] != 1 or tokens.shape[2] != text_dim:
        shape = list(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"conditioning: expected one prompt's tokens [1, L, {text_dim}] (a T5-XXL-sized text "
                         f"encoder), got {shape}")
    return tokens


class ChunkProgress:
    """One ProgressBar over chunks x steps. Its updates are also ComfyUI's cancel points."""

    def __init__(self, node_id: str | None, chunks: int, steps: int, first_chunk: int = 0):
        self.bar = comfy.utils.ProgressBar(chunks * steps, node_id=node_id)
        self.steps, self.first_chunk = steps, first_chunk

    def step(self, chunk: int, step: int):
        self.bar.update_absolute((chunk - self.first_chunk) * self.steps + step + 1)

    def chunk_done(self, chunk: VideoChunk):
        if chunk.frames.shape[0]:
            preview = ("JPEG", preview_image(chunk.frames), PREVIEW_SIZE)
            self.bar.update_absolute((chunk.index - self.first_chunk + 1) * self.steps, preview=preview)


def made_chunks(video: VideoStream, progress: ChunkProgress, player: LivePlayer | None) -> Iterator[VideoChunk]:
    """The chunks `video` can make now, each shown in the progress preview and sent to the node's player (when
    there is one) before it is handed on."""
    for chunk in video.pull():
        progress.chunk_done(chunk)
        if player is not None:
            player.send(chunk)
        yield chunk


def stream_latent(reference: RESTReference, video_frames: int, chunks: list[VideoChunk]) -> dict:
    """The sampler's LATENT: the latents, plus what decoding needs (the portrait's Reference, the frame count) and
    the frames the stream already decoded, tied to this very samples tensor so REST Decode reuses them only for it."""
    samples = torch.cat([c.latents for c in chunks], dim=2).float().cpu()  # [1, C, K * chunk_latents, h, w]
    return {"samples": samples, "rest_reference": reference.ref.to("cpu", torch.float32),
            "rest_video_frames": video_frames, "rest_frames": torch.cat([c.frames for c in chunks]),
            "rest_frames_of": samples}


class RESTStreamingSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"model": ("REST_MODEL",), "reference": ("REST_REFERENCE",), "speech": ("REST_SPEECH",),
                         **sampling_inputs(),
                         "live_player": ("BOOLEAN", {"default": True, "tooltip": "Send each chunk to the player on "
                                                                                 "this node as it is made."})},
            "optional": {"conditioning": ("CONDITIONING", {"tooltip": "Text tokens for models with text "
                                                                      "cross-attention (rest-2b)."})},
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "sample"
    CATEGORY = "REST"
    DESCRIPTION = ("Streams the talking head chunk by chunk (0.96 s each), keeping the ID-Context Cache across "
                   "chunks; each chunk is decoded and shown as soon as it is made.")

    def sample(self, model: RESTModel, reference: RESTReference, speech: RESTSpeech, live_player: bool,
               conditioning=None, unique_id: str | None = None, **widgets):
        options = stream_options(model, widgets)
        check_image_path_fits(speech.speech.video_frames, model)  # the frames this node and the next hold whole
        made = list(stream_chunks(model, reference, speech, options, conditioning, live_player, unique_id))
        return (stream_latent(reference, speech.speech.video_frames, made),)


def stream_chunks(model: RESTModel, reference: RESTReference, speech: RESTSpeech, options: StreamOptions,
                  conditioning, live_player: bool, unique_id: str | None) -> Iterator[VideoChunk]:
    """The clip's chunks as Algorithm 1 makes them, each shown in the progress preview (and, with live_player, sent
    to the node's player) before it is handed on."""
    text = text_condition(conditioning, model)
    pipe, latents = model.pipe, speech.speech
    parts = latents.latents.split(pipe.config.chunk_latents, dim=1)
    model.load()
    progress = ChunkProgress(unique_id, len(parts), options.steps)
    player = None
    if live_player:
        audio = SampleBuffer()
        audio.append(latents.audio_16k)
        player = LivePlayer(unique_id, uuid.uuid4().hex, audio, pipe.config.fps, latents.video_frames,
                            last_chunk=len(parts) - 1)
    try:
        video = pipe.video_stream(reference.ref.to(model.device), options,
                                  None if text is None else text.to(model.device), on_step=progress.step)
        for e in parts:
            video.add(e)
        video.end(latents.video_frames)
        yield from made_chunks(video, progress, player)
    finally:
        comfy.model_management.soft_empty_cache()
