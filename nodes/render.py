"""REST Render Video: the portrait talking, as an mp4 with the sound, written chunk by chunk as the stream makes it.

Memory stays flat whatever the length of the speech: each chunk is pasted back into the source image at the face
box and encoded as soon as it is decoded, then dropped; no node collects the whole video. The file is written to
ComfyUI's temp folder and leaves as a core VIDEO, which the node previews and Save Video keeps (copying the
streams, without encoding again). Graphs that post-process frames use REST Streaming Sampler -> REST Decode ->
REST Paste Back instead.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import folder_paths
from comfy_api.input_impl import VideoFromFile

from rest_core import SAMPLE_RATE, VideoWriter, paste_back

from .encode import RESTReference, RESTSpeech, audio_input
from .model import RESTModel
from .sampler import sampling_inputs, stream_chunks, stream_options

SUBFOLDER = "rest"


class RESTRenderVideo:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("REST_MODEL",), "reference": ("REST_REFERENCE",), "speech": ("REST_SPEECH",),
                **sampling_inputs(),
                "feather": ("INT", {"default": 16, "min": 0, "max": 256,
                                    "tooltip": "Blend width in source pixels at the face box's border."}),
                "live_player": ("BOOLEAN", {"default": True, "tooltip": "Send each chunk to the player on this "
                                                                        "node as it is made."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "The soundtrack (REST Speech Encoder's audio: the speech at its own "
                                               "rate, fitted to the video). Unconnected: the 16 kHz mono speech "
                                               "the model heard."}),
                "conditioning": ("CONDITIONING", {"tooltip": "Text tokens for models with text cross-attention "
                                                             "(rest-2b)."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("VIDEO",)
    RETURN_NAMES = ("video",)
    OUTPUT_TOOLTIPS = ("The mp4 (H.264 + AAC) at the source image's size (an odd side gains one repeated row or "
                       "column); connect Save Video to keep it.",)
    OUTPUT_NODE = True
    FUNCTION = "render"
    CATEGORY = "REST"
    DESCRIPTION = ("Streams the talking head and writes it straight into an mp4, pasted back into the portrait, "
                   "chunk by chunk: any length of speech in the same memory.")

    def render(self, model: RESTModel, reference: RESTReference, speech: RESTSpeech, feather: int, live_player: bool,
               audio: dict | None = None, conditioning=None, unique_id: str | None = None, **widgets):
        if audio is None:
            soundtrack, rate = speech.speech.audio_16k[None], SAMPLE_RATE  # [1, N]
        else:
            waveform, rate = audio_input(audio)
            soundtrack = waveform[0] if waveform.dim() == 3 else waveform  # [C, N]
        folder = os.path.join(folder_paths.get_temp_directory(), SUBFOLDER)
        os.makedirs(folder, exist_ok=True)
        name = f"rest_{uuid.uuid4().hex[:12]}.mp4"
        path = os.path.join(folder, name)
        options = stream_options(model, widgets)
        chunks = stream_chunks(model, reference, speech, options, conditioning, live_player, unique_id)
        writer = VideoWriter(path, model.pipe.config.fps, audio_rate=rate, audio_channels=soundtrack.shape[0])
        try:
            for chunk in chunks:
                for frame in chunk.frames.split(1):  # one source-sized frame at a time, whatever the source size
                    writer.write(paste_back(frame, reference.source, reference.crop, feather))
            writer.close(soundtrack)
        except BaseException:
            chunks.close()
            writer.close()
            Path(path).unlink(missing_ok=True)  # a cancelled or failed render leaves no half-written file
            raise
        shown = {"filename": name, "subfolder": SUBFOLDER, "type": "temp"}
        return {"ui": {"images": [shown], "animated": (True,)}, "result": (VideoFromFile(path),)}
