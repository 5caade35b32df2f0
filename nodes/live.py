"""REST Live Sampler: one stream fed across many queued prompts. An API client queues the live graph once per
piece of audio with the same `session_id` (and its own client_id: a session is its client's alone); each run pushes
its piece and returns (and sends to the player) the chunks that piece completed. The last piece sets
`end_of_stream`, which finishes the video and closes the session.

The session holds the speech stream, the ID-Context Cache, the decoder state and its own model between prompts
(sessions.py): other prompts may load, reload or fail to load models in between without touching it. What closes
a session, and what its id then answers, is in sessions.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import comfy.model_management
import torch
from comfy_execution.graph_utils import ExecutionBlocker
from server import PromptServer
from torch import Tensor

from rest_core import SpeechLatentStream, StreamOptions, VideoChunk, VideoStream, as_mono

from .encode import RESTReference, audio_input
from .model import RESTModel
from .player import LivePlayer
from .sampler import ChunkProgress, made_chunks, sampling_inputs, stream_options, text_condition
from .sessions import SessionKey, SessionRegistry


@dataclass
class LiveSession:
    model: RESTModel
    reference: RESTReference
    options: StreamOptions  # fixed for the whole stream, as is the sample rate
    sample_rate: int
    text: Tensor | None
    speech: SpeechLatentStream  # keeps the 16 kHz audio it heard until the player has sent it
    video: VideoStream
    stream: str = field(default_factory=lambda: uuid.uuid4().hex)
    progress: ChunkProgress | None = None  # the current prompt's progress bar
    chunks_made: int = 0

    @classmethod
    def start(cls, model: RESTModel, reference: RESTReference, options: StreamOptions, sample_rate: int,
              text: Tensor | None) -> "LiveSession":
        pipe, device = model.pipe, model.device
        session = cls(model, reference, options, sample_rate, text, pipe.speech_stream(sample_rate, keep_audio=True),
                      None)
        session.video = pipe.video_stream(reference.ref.to(device), options,
                                          None if text is None else text.to(device), on_step=session.on_step)
        return session

    def on_step(self, chunk: int, step: int):
        if self.progress is not None:
            self.progress.step(chunk, step)

    def check(self, model: RESTModel, reference: RESTReference, options: StreamOptions, sample_rate: int,
              text: Tensor | None, key: SessionKey):
        """A later prompt of the session must continue the same stream."""
        def refuse(what: str):
            raise ValueError(f"live session {key.name!r} was started with another {what}; keep it for the whole "
                             f"stream (this session is now closed: start the next one with restart or a new "
                             f"session_id)")
        if model.identity != self.model.identity:
            refuse(f"model ({self.model.name}, now {model.name}, or the same file changed, or another dtype, "
                   f"device, speech encoder or compile choice)")
        if reference is not self.reference and not reference.ref.same_as(self.reference.ref):
            refuse("portrait")
        if options != self.options:
            refuse(", ".join(self.options.differences(options)))
        if sample_rate != self.sample_rate:
            refuse(f"sample_rate ({self.sample_rate!r}, now {sample_rate!r})")
        if (text is None) != (self.text is None) or (text is not None and not torch.equal(text, self.text)):
            refuse("conditioning")


LIVE: SessionRegistry[LiveSession] = SessionRegistry()
MAX_SESSION_ID = 200  # characters


def session_id_problem(session_id: str) -> str | None:
    """What is wrong with a session_id, without echoing a long one whole; None if nothing."""
    name = session_id.strip()
    if not name:
        return "session_id is empty: name the live stream (the same name on every piece)"
    if len(name) > MAX_SESSION_ID:
        return (f"session_id is {len(name)} characters long ({name[:40]!r}...); name the live stream in at most "
                f"{MAX_SESSION_ID}")
    return None


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
                "session_id": ("STRING", {"default": "live", "tooltip": "Names the stream among this client's: "
                                                                        "its prompts with the same id continue it. "
                                                                        "Other clients' sessions are out of reach."}),
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
    OUTPUT_TOOLTIPS = ("The frames this piece of audio completed. A piece that completes none (each chunk waits for "
                       "0.96 s of speech plus 0.16 s of lookahead) skips the nodes fed from here, so Preview and "
                       "Save see only real frames.", "25", "Frames of the stream made so far.")
    OUTPUT_NODE = True
    FUNCTION = "push"
    CATEGORY = "REST"
    DESCRIPTION = ("Live mode: feeds a piece of audio into a stream that persists across queued prompts and "
                   "returns the chunks it completed; they also play in the node's player as they are made.")

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # every piece must reach the stream, even one identical to the last

    @classmethod
    def VALIDATE_INPUTS(cls, session_id=None):
        """A typed session_id is checked when the prompt is queued: refused there, it never reaches the history,
        where ComfyUI keeps a failed node's inputs whole (a linked one comes as None and is checked in `push`)."""
        return True if session_id is None else session_id_problem(session_id) or True

    def push(self, model: RESTModel, reference: RESTReference, audio: dict, session_id: str, end_of_stream: bool,
             conditioning=None, restart: bool = False, unique_id: str | None = None, **widgets):
        problem = session_id_problem(session_id)
        if problem:  # a long one would be echoed in errors and in every history entry of the stream
            raise ValueError(problem)
        key = SessionKey(self.client(), session_id.strip())
        session = self.open_session(key, restart)
        try:
            waveform, rate = audio_input(audio)
            mono = as_mono(waveform)
            text = text_condition(conditioning, model)
            options = stream_options(model, widgets)
            if session is None:
                session = LIVE.open(key, LiveSession.start(model, reference, options, rate, text))
            else:
                session.check(model, reference, options, rate, text, key)
            made = self.advance(session, mono, end_of_stream, unique_id)
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
    def client() -> str:
        """The client_id the running prompt was queued with (ComfyUI's frontend always sends one): the owner of the
        sessions its pieces open."""
        client = PromptServer.instance.client_id
        if not client:
            raise ValueError("live mode needs the client_id your prompts are queued with (POST /prompt with "
                             "\"client_id\", the id your websocket connected with): a live session belongs to the "
                             "client that opened it")
        return client

    @staticmethod
    def open_session(key: SessionKey, restart: bool) -> LiveSession | None:
        """The open session this piece continues, or None when it starts one; a closed id or a full server is
        refused here, before any work."""
        LIVE.expire()
        if restart:
            LIVE.forget(key)
        session = LIVE.get(key)
        if session is None:
            LIVE.check_can_open(key)
        return session

    @staticmethod
    def advance(session: LiveSession, mono: Tensor, end_of_stream: bool, unique_id: str | None) -> list[VideoChunk]:
        """Push one piece into the session's stream (with its own model) and send the chunks it completed."""
        model, speech = session.model, session.speech
        model.load()
        ready = speech.push(mono)
        if end_of_stream:
            ready += speech.finish()
            session.video.end(speech.video_frames)
        for e in ready:
            session.video.add(e)
        first = session.chunks_made
        session.progress = ChunkProgress(unique_id, len(ready), session.options.steps, first_chunk=first)
        player = LivePlayer(unique_id, session.stream, speech.heard, model.pipe.config.fps, speech.video_frames,
                            last_chunk=first + len(ready) - 1 if end_of_stream else None)
        made = list(made_chunks(session.video, session.progress, player))
        session.chunks_made += len(made)
        session.progress = None
        return made

    @staticmethod
    def outputs(session: LiveSession, made: list[VideoChunk], key: SessionKey, finished: bool) -> dict:
        config = session.model.pipe.config
        so_far = session.video.made
        report = {"session": key.name, "stream": session.stream, "chunks": [c.index for c in made],
                  "first_frame": made[0].first_frame if made else so_far, "frames": sum(len(c.frames) for c in made),
                  "frames_so_far": so_far, "finished": finished}
        # no frames: the image output blocks what it feeds (silently), as an empty batch would break core's nodes
        frames = torch.cat([c.frames for c in made]) if made else ExecutionBlocker(None)
        return {"ui": {"rest_live": [report]}, "result": (frames, float(config.fps), so_far)}
