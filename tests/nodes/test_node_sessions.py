import pytest

from nodes.sessions import SessionClosed, SessionRegistry


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_sessions_are_found_by_their_key_and_closed():
    registry = SessionRegistry(limit=2)
    registry.open("a", "stream a")
    assert registry.get("a") == "stream a" and registry.get("b") is None
    registry.close("a", "it ended")
    assert "a" not in registry and len(registry) == 0


def test_the_number_of_sessions_is_bounded():
    registry = SessionRegistry(limit=2)
    registry.open("a", 1)
    registry.open("b", 2)
    with pytest.raises(ValueError, match="2 live sessions are open"):
        registry.open("c", 3)
    registry.close("a", "it ended")
    registry.open("c", 3)


def test_idle_sessions_expire_and_use_keeps_them_alive():
    clock = Clock()
    registry = SessionRegistry(limit=2, idle_seconds=10, clock=clock)
    registry.open("a", 1)
    registry.open("b", 2)
    clock.now = 8
    registry.get("a")
    clock.now = 15
    assert registry.expire() == ["b"]
    assert "a" in registry and "b" not in registry


def test_a_full_registry_makes_room_from_expired_sessions_only():
    clock = Clock()
    registry = SessionRegistry(limit=1, idle_seconds=10, clock=clock)
    registry.open("a", 1)
    clock.now = 11
    registry.open("b", 2)
    assert "a" not in registry and registry.get("b") == 2


def test_opening_an_open_session_is_refused():
    registry = SessionRegistry()
    registry.open("a", 1)
    with pytest.raises(ValueError, match="already open"):
        registry.open("a", 2)


def test_a_closed_id_is_refused_with_the_reason_it_closed():
    registry = SessionRegistry()
    registry.open("a", 1)
    registry.close("a", "a piece was cancelled while it was being made")
    with pytest.raises(SessionClosed, match="'a' was closed: a piece was cancelled .* set restart"):
        registry.open("a", 2)
    registry.forget("a")  # a restart
    assert registry.open("a", 2) == 2


def test_an_expired_session_is_refused_as_idle_not_restarted():
    clock = Clock()
    registry = SessionRegistry(idle_seconds=90, clock=clock)
    registry.open("a", 1)
    clock.now = 91
    with pytest.raises(SessionClosed, match="idle for more than 1.5 minutes"):
        registry.check_can_open("a")


def test_closing_an_id_that_was_never_open_records_nothing():
    registry = SessionRegistry()
    registry.close("never", "it ended")
    assert registry.open("never", 1) == 1


def test_the_memory_of_closed_ids_is_bounded(monkeypatch):
    monkeypatch.setattr("nodes.sessions.REMEMBERED_CLOSED", 3)
    registry = SessionRegistry(limit=10)
    for key in "abcd":
        registry.open(key, key)
        registry.close(key, "it ended")
    assert list(registry.closed) == ["b", "c", "d"]
