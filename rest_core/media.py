"""Files in and out: portraits (Pillow), audio (PyAV: any container and codec ffmpeg reads), and mp4 output with
the audio muxed (H.264 + AAC), written chunk by chunk as the frames are made.

The muxed audio is cut or silence-padded to the video's exact duration (frames / fps), so the two tracks end
together. H.264 in yuv420p needs even sides: an odd width or height gets its last column or row repeated once
(`even_size`), never cropped, so every source pixel stays in the video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def read_image(path: str | Path) -> Tensor:
    """An image file -> [H, W, 3] float in [0, 1] (EXIF orientation applied, alpha and palettes flattened)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} not found: give a portrait image (png, jpg, webp, ...)")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path} is not an image Pillow can read ({e})") from e


def read_audio(path: str | Path) -> tuple[Tensor, int]:
    """An audio (or video) file's first audio stream -> ([channels, samples] float32, sample rate)."""
    import av

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} not found: give a speech recording (wav, mp3, m4a, flac, ...)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError(f"{path} has no audio stream")
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format="fltp")  # planar float32, same layout and rate
            pieces = [frame.to_ndarray() for decoded in container.decode(stream)
                      for frame in to_float.resample(decoded)]
            rate = stream.codec_context.sample_rate
    except av.FFmpegError as e:
        raise ValueError(f"{path} could not be decoded as audio ({e})") from e
    if not pieces:
        raise ValueError(f"{path}: the audio stream is empty")
    return torch.from_numpy(np.concatenate(pieces, axis=1)), rate


def to_uint8(frames: Tensor) -> Tensor:
    """Float pixels in [0, 1] (any shape) -> uint8, rounded to nearest: the one conversion every writer of frames
    uses (video files, previews, contact sheets, prepared clips), so they agree bit for bit."""
    return frames.clamp(0, 1).mul_(255).round_().to(torch.uint8)  # one float copy, however large the frames


def even_size(frames: Tensor) -> Tensor:
    """[n, H, W, C] -> [n, H + H % 2, W + W % 2, C]: an odd side's last row or column repeated once."""
    h, w = frames.shape[1:3]
    if h % 2:
        frames = torch.cat([frames, frames[:, -1:]], dim=1)
    if w % 2:
        frames = torch.cat([frames, frames[:, :, -1:]], dim=2)
    return frames


class VideoWriter:
    """An mp4 written as frames arrive: `write([n, H, W, 3] float in [0, 1])` per chunk, then `close(audio)`.

    The audio track's rate and channel count (mono or stereo) are fixed up front, as the container header needs
    them before the first frame; its samples come at the end, fitted to the video's duration.

    The same frames make the same file. With x264's macroblock tree on (its default), they did not at many sizes
    (92 x 76, 160 x 160, 200 x 300; not at 256 x 256): of 5 or 6 writes of the same frames in one process, 2 to 5
    different files, whatever the thread count, so a job run again with the same seed gave other frames. With the
    tree off, 6 writes at each of 8 such sizes gave one file each; at crf 18 the file is larger (a 5 s clip at
    160 x 160: 64 KB against 43 KB) and a little closer to the frames (38.9 dB PSNR against 38.6)."""

    def __init__(self, path: str | Path, fps: int, audio_rate: int | None = None, audio_channels: int = 1,
                 crf: int = 18):
        import av

        self.path, self.fps, self.frames = Path(path), fps, 0
        self.container = av.open(str(self.path), "w")
        self.video = self.container.add_stream("libx264", rate=fps,
                                               options={"crf": str(crf), "x264-params": "mbtree=0"})
        self.video.pix_fmt = "yuv420p"
        self.audio = None
        if audio_rate is not None:
            self.audio = self.container.add_stream("aac", rate=audio_rate)
            self.audio.layout = "stereo" if audio_channels >= 2 else "mono"
        self.started = self.closed = False

    def write(self, frames: Tensor):
        import av

        frames = even_size(frames)
        if not self.started:
            self.video.height, self.video.width = frames.shape[1:3]
            self.started = True
        pixels = to_uint8(frames).numpy()
        for image in pixels:
            self.container.mux(self.video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        self.frames += pixels.shape[0]

    def close(self, audio: Tensor | None = None):
        """Finish the file, muxing `audio` ([channels, samples] at audio_rate) cut or padded to the video. Closing
        again does nothing."""
        import av

        if self.closed:
            return
        self.closed = True
        try:
            self.container.mux(self.video.encode(None))
            if self.audio is not None and audio is not None:
                rate, layout = self.audio.codec_context.sample_rate, self.audio.layout.name
                wanted = round(self.frames * rate / self.fps)
                for start in range(0, wanted, rate):  # a second at a time: no copy of the whole track
                    piece = audio[:, start:min(start + rate, wanted)].float()
                    piece = piece[:2] if layout == "stereo" else piece.mean(dim=0, keepdim=True)
                    block = torch.zeros(2 if layout == "stereo" else 1, min(rate, wanted - start))
                    block[:, :piece.shape[1]] = piece  # a mono track fills both stereo channels
                    frame = av.AudioFrame.from_ndarray(block.numpy(), format="fltp", layout=layout)
                    frame.sample_rate, frame.pts = rate, start
                    self.container.mux(self.audio.encode(frame))
                self.container.mux(self.audio.encode(None))
        finally:
            self.container.close()
