"""The live sessions: streams that outlive one queued prompt, each keyed by the `session_id` its client chose.

Sessions are isolated (each holds its own speech stream, ID-Context Cache and decoder state), bounded in number
(each holds a KV cache in device memory), and expire after sitting idle, so an abandoned client does not hold
memory for ever. A session that fails or is cancelled mid-prompt is closed, never left half-advanced.
"""

from __future__ import annotations

import time
from typing import Callable, Generic, TypeVar

Session = TypeVar("Session")

MAX_SESSIONS = 4
IDLE_SECONDS = 600.0


class SessionRegistry(Generic[Session]):
    def __init__(self, limit: int = MAX_SESSIONS, idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.idle_seconds, self.clock = limit, idle_seconds, clock
        self.sessions: dict[str, Session] = {}
        self.last_used: dict[str, float] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.sessions

    def __len__(self) -> int:
        return len(self.sessions)

    def expire(self) -> list[str]:
        """Close the sessions idle for longer than `idle_seconds`; their keys."""
        now = self.clock()
        old = [k for k, t in self.last_used.items() if now - t > self.idle_seconds]
        for key in old:
            self.close(key)
        return old

    def get(self, key: str) -> Session | None:
        if key in self.sessions:
            self.last_used[key] = self.clock()
        return self.sessions.get(key)

    def open(self, key: str, session: Session) -> Session:
        if key in self.sessions:
            raise ValueError(f"live session {key!r} is already open")
        self.expire()
        if len(self.sessions) >= self.limit:
            raise ValueError(f"{len(self.sessions)} live sessions are open, the most this server keeps; end one "
                             f"(end_of_stream on its last piece) or wait until one has been idle for "
                             f"{self.idle_seconds / 60:g} minutes")
        self.sessions[key], self.last_used[key] = session, self.clock()
        return session

    def close(self, key: str):
        self.sessions.pop(key, None)
        self.last_used.pop(key, None)
