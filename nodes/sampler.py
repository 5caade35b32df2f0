"""REST Streaming Sampler: Algorithm 1 inside one node. It owns the ID-Context Cache for the whole clip, denoises
chunk after chunk, decodes each one as soon as it is made, shows it in the progress preview and sends it to the
live player on the node.

Cancel is checked after every denoising step (ComfyUI's progress hook raises there), so a cancelled job stops
within one chunk; nothing outlives the call but its outputs.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import comfy.model_management
import comfy.utils
import torch
from server import PromptServer
from torch import Tensor

from rest_core import VideoChunk

from .encode import RESTReference, RESTSpeech
from .model import RESTModel
from .player import EVENT, audio_span, chunk_event, preview_image

PREVIEW_SIZE = 512


def sampling_inputs() -> dict:
    """The sampling settings, shared by the streaming and the live sampler."""
    return {
        "steps": ("INT", {"default": 8, "min": 1, "max": 100, "tooltip": "Flow-matching steps per chunk."}),
        "cfg": ("FLOAT", {"default": 2.0, "min": 1.0, "max": 20.0, "step": 0.1,
                          "tooltip": "Joint CFG scale over speech and text; 1 turns guidance off (half the work). "
                                     "2 suits the demo model; the paper's 2B model uses 6."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
        "id_sink": ("BOOLEAN", {"default": True, "tooltip": "Every chunk attends to the reference (off: only the "
                                                            "first one does - the paper's ablation)."}),
        "context_cache": ("BOOLEAN", {"default": True, "tooltip": "Every chunk attends to the previous one (off: "
                                                                  "chunks are made independently - ablation)."}),
        "context_refresh": (["clean", "last_step"], {
            "tooltip": "clean: commit each finished chunk to the context cache by one extra pass at t = 0; "
                       "last_step: reuse the last denoising step's keys and values (faster, slightly noisier)."}),
    }


def sampling_options(steps: int, cfg: float, seed: int, id_sink: bool, context_cache: bool,
                     context_refresh: str) -> dict:
    """The values of `sampling_inputs` as `RESTPipeline.video_stream` takes them."""
    return {"steps": steps, "cfg": cfg, "seed": seed, "id_sink": id_sink, "context_cache": context_cache,
            "context_refresh": context_refresh}


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


def send_chunk(node_id: str | None, stream: str, chunk: VideoChunk, chunk_audio: Tensor, fps: int,
               total_frames: int | None, final: bool):
    """chunk_audio: the 16 kHz samples under the chunk's frames."""
    server = PromptServer.instance
    payload = chunk_event(node_id or "", stream, chunk.index, chunk.first_frame, chunk.frames, chunk_audio, fps,
                          total_frames, final)
    server.send_sync(EVENT, payload, server.client_id)


def stream_latent(reference: RESTReference, video_frames: int, chunks: list[VideoChunk]) -> dict:
    """The sampler's LATENT: the latents, plus what decoding needs (z_R, the frame count) and the frames the stream
    already decoded, tied to this very samples tensor so REST Decode reuses them only for it."""
    samples = torch.cat([c.latents for c in chunks], dim=2).float().cpu()  # [1, C, K * chunk_latents, h, w]
    return {"samples": samples, "rest_reference": reference.latent.float().cpu(), "rest_video_frames": video_frames,
            "rest_frames": torch.cat([c.frames for c in chunks]), "rest_frames_of": samples}


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

    def sample(self, model: RESTModel, reference: RESTReference, speech: RESTSpeech, steps: int, cfg: float,
               seed: int, id_sink: bool, context_cache: bool, context_refresh: str, live_player: bool,
               conditioning=None, unique_id: str | None = None):
        options = sampling_options(steps, cfg, seed, id_sink, context_cache, context_refresh)
        made = list(stream_chunks(model, reference, speech, options, conditioning, live_player, unique_id))
        return (stream_latent(reference, speech.speech.video_frames, made),)


def stream_chunks(model: RESTModel, reference: RESTReference, speech: RESTSpeech, options: dict, conditioning,
                  live_player: bool, unique_id: str | None) -> Iterator[VideoChunk]:
    """The clip's chunks as Algorithm 1 makes them, each shown in the progress preview (and, with live_player, sent
    to the node's player) before it is handed on. options: steps, cfg, seed, id_sink, context_cache,
    context_refresh."""
    text = text_condition(conditioning, model)
    pipe, chunk_latents = model.pipe, model.pipe.config.chunk_latents
    parts = speech.speech.latents.split(chunk_latents, dim=1)
    model.load()
    progress = ChunkProgress(unique_id, len(parts), options["steps"])
    stream = uuid.uuid4().hex
    try:
        video = pipe.video_stream(reference.latent.to(model.device), **options,
                                  text=None if text is None else text.to(model.device), on_step=progress.step)
        for e in parts:
            video.add(e)
        video.end(speech.speech.video_frames)
        for chunk in video.pull():
            progress.chunk_done(chunk)
            if live_player:
                chunk_audio = audio_span(speech.audio_16k, chunk.first_frame, chunk.frames.shape[0])
                send_chunk(unique_id, stream, chunk, chunk_audio, pipe.config.fps, speech.speech.video_frames,
                           final=chunk.index == len(parts) - 1)
            yield chunk
    finally:
        comfy.model_management.soft_empty_cache()
