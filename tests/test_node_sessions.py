import pytest

from nodes.sessions import SessionRegistry


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_sessions_are_found_by_their_key_and_closed():
    registry = SessionRegistry(limit=2)
    registry.open("a", "stream a")
    assert registry.get("a") == "stream a" and registry.get("b") is None
    registry.close("a")
    assert "a" not in registry and len(registry) == 0


def test_the_number_of_sessions_is_bounded():
    registry = SessionRegistry(limit=2)
    registry.open("a", 1)
    registry.open("b", 2)
    with pytest.raises(ValueError, match="2 live sessions are open"):
        registry.open("c", 3)
    registry.close("a")
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
