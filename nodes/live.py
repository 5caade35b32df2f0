"""REST Live Sampler: one stream fed across many queued prompts. An API client queues the live graph once per
piece of audio with the same `session_id`; each run pushes its piece and returns (and sends to the player) the
chunks that piece completed. The last piece sets `end_of_stream`, which finishes the video and closes the session.

The session holds the speech stream, the ID-Context Cache, the decoder state and its own model between prompts
(sessions.py): other prompts may load, reload or fail to load models in between without touching it. What closes
a session, and what its id then answers, is in sessions.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import comfy.model_management
import torch
from torch import Tensor

from rest_core import SpeechLatentStream, VideoChunk, VideoStream
from rest_core.resample import SampleBuffer, StreamingResampler
from rest_core.speech import as_mono
from rest_core.whisper import SAMPLE_RATE

from .encode import RESTReference, audio_input
from .model import RESTModel
from .player import sample_span
from .sampler import ChunkProgress, sampling_inputs, sampling_options, send_chunk, text_condition
from .sessions import SessionRegistry


@dataclass
class LiveSession:
    model: RESTModel
    reference: RESTReference
    settings: dict  # the sampling settings and the sample rate, fixed for the whole stream
    text: Tensor | None
    speech: SpeechLatentStream
    video: VideoStream
    heard: StreamingResampler  # the pieces at 16 kHz, for the player's audio
    heard_16k: SampleBuffer = field(default_factory=SampleBuffer)
    stream: str = field(default_factory=lambda: uuid.uuid4().hex)
    progress: ChunkProgress | None = None  # the current prompt's progress bar
    chunks_made: int = 0

    @classmethod
    def start(cls, model: RESTModel, reference: RESTReference, settings: dict, text: Tensor | None) -> "LiveSession":
        pipe, device = model.pipe, model.device
        rate = settings["sample_rate"]
        options = {k: v for k, v in settings.items() if k != "sample_rate"}
        session = cls(model, reference, settings, text, pipe.speech_stream(rate), None,
                      StreamingResampler(rate, SAMPLE_RATE))
        session.video = pipe.video_stream(reference.latent.to(device), **options,
                                          text=None if text is None else text.to(device), on_step=session.on_step)
        return session

    def on_step(self, chunk: int, step: int):
        if self.progress is not None:
            self.progress.step(chunk, step)

    def check(self, model: RESTModel, reference: RESTReference, settings: dict, text: Tensor | None, key: str):
        """A later prompt of the session must continue the same stream."""
        def refuse(what: str):
            raise ValueError(f"live session {key!r} was started with another {what}; keep it for the whole "
                             f"stream (this session is now closed: start the next one with restart or a new "
                             f"session_id)")
        if model.identity != self.model.identity:
            refuse(f"model ({self.model.name}, now {model.name}, or the same file changed, or another dtype, "
                   f"device or speech encoder)")
        if reference is not self.reference and not torch.equal(reference.latent, self.reference.latent):
            refuse("portrait")
        for name, value in settings.items():
            if value != self.settings[name]:
                refuse(f"{name} ({self.settings[name]!r}, now {value!r})")
        if (text is None) != (self.text is None) or (text is not None and not torch.equal(text, self.text)):
            refuse("conditioning")


LIVE: SessionRegistry[LiveSession] = SessionRegistry()


def closing_reason(error: BaseException) -> str:
    if isinstance(error, comfy.model_management.InterruptProcessingException):
        return "a piece was cancelled while it was being made"
    message = str(error).strip() or type(error).__name__
    return f"a piece failed ({message[:300]})"


class RESTLiveSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("REST_MODEL",), "reference": ("REST_REFERENCE",),
                "audio": ("AUDIO", {"tooltip": "The next piece of the speech (any length, rate and channels; the "
                                               "same rate for the whole session)."}),
                "session_id": ("STRING", {"default": "live", "tooltip": "Names the stream; prompts with the same "
                                                                        "id continue it. Pick a unique one."}),
                "end_of_stream": ("BOOLEAN", {"default": False, "tooltip": "This is the last piece: finish the "
                                                                           "video and close the session."}),
                **sampling_inputs(),
            },
            "optional": {
                "conditioning": ("CONDITIONING",),
                "restart": ("BOOLEAN", {"default": False, "tooltip": "Begin a new stream under this session_id, "
                                                                     "from frame 0, ending the one it names (open or "
                                                                     "closed). Set it on a first piece only."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("IMAGE", "FLOAT", "INT")
    RETURN_NAMES = ("new_frames", "fps", "frames_so_far")
    OUTPUT_TOOLTIPS = ("The frames this piece of audio completed (may be none yet: each chunk waits for 0.96 s of "
                       "speech plus 0.16 s of lookahead).", "25", "Frames of the stream made so far.")
    OUTPUT_NODE = True
    FUNCTION = "push"
    CATEGORY = "REST"
    DESCRIPTION = ("Live mode: feeds a piece of audio into a stream that persists across queued prompts and "
                   "returns the chunks it completed; they also play in the node's player as they are made.")

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # every piece must reach the stream, even one identical to the last

    def push(self, model: RESTModel, reference: RESTReference, audio: dict, session_id: str, end_of_stream: bool,
             steps: int, cfg: float, seed: int, id_sink: bool, context_cache: bool, context_refresh: str,
             conditioning=None, restart: bool = False, unique_id: str | None = None):
        key = session_id.strip()
        if not key:
            raise ValueError("session_id is empty: name the live stream (the same name on every piece)")
        LIVE.expire()
        if restart:
            LIVE.forget(key)
        session = LIVE.get(key)
        if session is None:
            LIVE.check_can_open(key)  # a closed id or a full server: refused before any work
        try:
            waveform, rate = audio_input(audio)
            mono = as_mono(waveform)
            text = text_condition(conditioning, model)
            settings = sampling_options(steps, cfg, seed, id_sink, context_cache, context_refresh) | {
                "sample_rate": rate}
            if session is None:
                session = LIVE.open(key, LiveSession.start(model, reference, settings, text))
            else:
                session.check(model, reference, settings, text, key)
            made = self.advance(session, mono, end_of_stream, steps, unique_id)
        except BaseException as e:
            if session is not None:  # a stream cut or refused mid-way cannot continue: nothing half-advanced is kept
                LIVE.close(key, closing_reason(e))
            raise
        finally:
            comfy.model_management.soft_empty_cache()
        if end_of_stream:
            LIVE.close(key, "its last piece (end_of_stream) ended it")
        LIVE.touch(key)
        return self.outputs(session, made, key, end_of_stream)

    @staticmethod
    def advance(session: LiveSession, mono: Tensor, end_of_stream: bool, steps: int,
                unique_id: str | None) -> list[VideoChunk]:
        """Push one piece into the session's stream (with its own model) and send the chunks it completed."""
        model = session.model
        model.load()
        ready = session.speech.push(mono)
        session.heard_16k.append(session.heard.push(mono))
        if end_of_stream:
            ready += session.speech.finish()
            session.heard_16k.append(session.heard.finish())
            session.video.end(session.speech.video_frames)
        for e in ready:
            session.video.add(e)
        session.progress = ChunkProgress(unique_id, len(ready), steps, first_chunk=session.chunks_made)
        made: list[VideoChunk] = []
        for chunk in session.video.pull():
            made.append(chunk)
            session.progress.chunk_done(chunk)
            start, stop = sample_span(chunk.first_frame, chunk.frames.shape[0])
            send_chunk(unique_id, session.stream, chunk, session.heard_16k.read(start, stop),
                       model.pipe.config.fps, session.speech.video_frames,
                       final=end_of_stream and len(made) == len(ready))
            session.heard_16k.drop_before(stop)
        session.chunks_made += len(made)
        session.progress = None
        return made

    @staticmethod
    def outputs(session: LiveSession, made: list[VideoChunk], key: str, finished: bool) -> dict:
        config = session.model.pipe.config
        size = config.resolution
        frames = torch.cat([c.frames for c in made]) if made else torch.zeros(0, size, size, 3)
        so_far = session.video.made
        report = {"session": key, "stream": session.stream, "chunks": [c.index for c in made],
                  "first_frame": made[0].first_frame if made else so_far, "frames": frames.shape[0],
                  "frames_so_far": so_far, "finished": finished}
        return {"ui": {"rest_live": [report]}, "result": (frames, float(config.fps), so_far)}
