"""The live player's feed: each decoded chunk goes to the browser over ComfyUI's websocket as it is made.

One `rest.chunk` event per chunk carries its frames as JPEG and its stretch of the 16 kHz audio as 16-bit PCM
(base64), so the player in `js/rest_player.js` can show the video growing with the sound in sync, and an API
client listening on the same websocket receives the stream too.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
import torch.nn.functional as F
from torch import Tensor

from rest_core.speech import SAMPLES_PER_VIDEO_FRAME
from rest_core.whisper import SAMPLE_RATE

EVENT = "rest.chunk"
JPEG_QUALITY = 85


def jpeg(frame: Tensor, quality: int = JPEG_QUALITY) -> bytes:
    """[H, W, 3] float in [0, 1] -> JPEG bytes"""
    pixels = (frame.clamp(0, 1) * 255).round().byte().numpy()
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def preview_image(frames: Tensor) -> Image.Image:
    """The middle frame of a chunk, for ComfyUI's progress preview."""
    middle = frames[frames.shape[0] // 2]
    return Image.fromarray((middle.clamp(0, 1) * 255).round().byte().numpy())


def pcm16(samples: Tensor) -> bytes:
    return (np.clip(samples.numpy(), -1, 1) * 32767).round().astype("<i2").tobytes()


def chunk_event(node: str, stream: str, index: int, first_frame: int, frames: Tensor, audio_16k: Tensor,
                fps: int, total_frames: int | None, final: bool) -> dict:
    """The payload of one `rest.chunk` event. `audio_16k`: the chunk's own samples, [n * 640]."""
    b64 = lambda data: base64.b64encode(data).decode("ascii")  # noqa: E731
    return {
        "node": node,  # the sampler node's id: the player on that node shows it
        "stream": stream,  # a new stream id resets the player
        "index": index,
        "first_frame": first_frame,
        "fps": fps,
        "width": int(frames.shape[2]),
        "height": int(frames.shape[1]),
        "frames": [b64(jpeg(f)) for f in frames],
        "audio": b64(pcm16(audio_16k)),
        "audio_rate": SAMPLE_RATE,
        "total_frames": total_frames,
        "final": final,
    }


def sample_span(first_frame: int, frames: int) -> tuple[int, int]:
    """The 16 kHz samples [start, stop) under video frames [first_frame, first_frame + frames)."""
    return first_frame * SAMPLES_PER_VIDEO_FRAME, (first_frame + frames) * SAMPLES_PER_VIDEO_FRAME


def audio_span(audio_16k: Tensor, first_frame: int, frames: int) -> Tensor:
    """The 16 kHz samples under video frames [first_frame, first_frame + frames), silence past the end."""
    start, stop = sample_span(first_frame, frames)
    out = audio_16k[start:stop]
    return F.pad(out, (0, stop - start - out.shape[0]))
