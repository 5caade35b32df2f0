"""The live player's feed: each decoded chunk goes to the browser over ComfyUI's websocket as it is made.

One `rest.chunk` event per chunk carries its frames as JPEG and its stretch of the 16 kHz audio as 16-bit PCM
(base64), so the player in `js/rest_player.js` can show the video growing with the sound in sync, and an API
client listening on the same websocket receives the stream too.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from server import PromptServer
from torch import Tensor

from rest_core import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, SampleBuffer, VideoChunk, to_uint8

EVENT = "rest.chunk"
JPEG_QUALITY = 85


def jpeg(frame: Tensor, quality: int = JPEG_QUALITY) -> bytes:
    """[H, W, 3] float in [0, 1] -> JPEG bytes"""
    pixels = to_uint8(frame).numpy()
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def preview_image(frames: Tensor) -> Image.Image:
    """The middle frame of a chunk, for ComfyUI's progress preview."""
    middle = frames[frames.shape[0] // 2]
    return Image.fromarray(to_uint8(middle).numpy())


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


@dataclass
class LivePlayer:
    """The player on one node, fed chunk by chunk: each event carries a chunk's frames and the 16 kHz audio under
    them, read from `audio` (silence past its end); what was sent is dropped from it."""

    node: str | None
    stream: str  # a new stream id resets the player
    audio: SampleBuffer  # the stream's 16 kHz audio from its first sample on
    fps: int
    total_frames: int | None = None  # the video's length, once known
    last_chunk: int | None = None  # the index of the stream's last chunk, once known

    def send(self, chunk: VideoChunk):
        start, stop = sample_span(chunk.first_frame, chunk.frames.shape[0])
        payload = chunk_event(self.node or "", self.stream, chunk.index, chunk.first_frame, chunk.frames,
                              self.audio.read(start, stop), self.fps, self.total_frames,
                              final=chunk.index == self.last_chunk)
        self.audio.drop_before(stop)
        server = PromptServer.instance
        server.send_sync(EVENT, payload, server.client_id)
