"""The live sessions: streams that outlive one queued prompt, each keyed by the client that opened it (the prompt's
client_id) and the `session_id` it chose: a client can feed, close or restart only its own sessions, and two clients
that both call their session "live" get two sessions.

Sessions are isolated (each holds its own speech stream, ID-Context Cache, decoder state and model), bounded in
number (each holds a KV cache in device memory), and expire after sitting idle, so an abandoned client does not
hold memory for ever. A session is closed when its last piece ends it, when a piece fails or is cancelled (a stream
is never left half-advanced) and when it expires. Its id is remembered with the reason: a later piece under that id
is refused with it, never the silent start of a new stream from frame 0, unless the client asks for a restart.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import Callable, Generic, Hashable, NamedTuple, TypeVar

Session = TypeVar("Session")

MAX_SESSIONS = 4
IDLE_SECONDS = float(os.environ.get("REST_LIVE_IDLE_SECONDS", 600))  # a server setting; see the README
REMEMBERED_CLOSED = 4096  # ids of closed sessions kept, with why they closed (the oldest are forgotten first)


class SessionKey(NamedTuple):
    client: str  # the client_id of the prompts that feed the session
    name: str  # the session_id that client chose

    def __str__(self) -> str:  # messages name the session as its client knows it
        return self.name


class SessionClosed(ValueError):
    """A piece for a session id whose stream was closed."""


class SessionRegistry(Generic[Session]):
    def __init__(self, limit: int = MAX_SESSIONS, idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.idle_seconds, self.clock = limit, idle_seconds, clock
        self.sessions: dict[Hashable, Session] = {}
        self.last_used: dict[Hashable, float] = {}
        self.closed: OrderedDict[Hashable, str] = OrderedDict()  # key -> why it was closed

    @property
    def idle_text(self) -> str:
        seconds = self.idle_seconds
        return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"

    def __contains__(self, key: Hashable) -> bool:
        return key in self.sessions

    def __len__(self) -> int:
        return len(self.sessions)

    def expire(self) -> list[Hashable]:
        """Close the sessions idle for longer than `idle_seconds`; their keys."""
        now = self.clock()
        old = [k for k, t in self.last_used.items() if now - t > self.idle_seconds]
        for key in old:
            self.close(key, f"it sat idle for more than {self.idle_text}")
        return old

    def get(self, key: Hashable) -> Session | None:
        self.touch(key)
        return self.sessions.get(key)

    def touch(self, key: Hashable):
        """The session was just used: its idle time starts again (at a piece's start and at its end)."""
        if key in self.sessions:
            self.last_used[key] = self.clock()

    def check_can_open(self, key: Hashable):
        """Refuse, before any work, a new stream under a closed id or beyond the limit."""
        self.expire()
        if key in self.sessions:
            raise ValueError(f"live session {str(key)!r} is already open")
        if key in self.closed:
            raise SessionClosed(f"live session {str(key)!r} was closed: {self.closed[key]}. Its stream cannot go on; "
                                f"to begin a new stream under this id set restart on its first piece, or pick a new "
                                f"session_id")
        if len(self.sessions) >= self.limit:
            raise ValueError(f"{len(self.sessions)} live sessions are open, the most this server keeps; end one "
                             f"(end_of_stream on its last piece) or wait until one has been idle for "
                             f"{self.idle_text}")

    def open(self, key: Hashable, session: Session) -> Session:
        self.check_can_open(key)
        self.sessions[key], self.last_used[key] = session, self.clock()
        return session

    def close(self, key: Hashable, reason: str):
        """End the session `key` (if open) and remember why, for the pieces that may still come."""
        if self.sessions.pop(key, None) is not None:
            self.closed[key] = reason
            self.closed.move_to_end(key)
            while len(self.closed) > REMEMBERED_CLOSED:
                self.closed.popitem(last=False)
        self.last_used.pop(key, None)

    def forget(self, key: Hashable):
        """A restart: close `key` if it is open and forget that it was ever used."""
        self.sessions.pop(key, None)
        self.last_used.pop(key, None)
        self.closed.pop(key, None)
