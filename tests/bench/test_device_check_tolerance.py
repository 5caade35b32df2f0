import sys

import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import device_check  # noqa: E402


def test_a_difference_beyond_the_tolerance_fails_the_check(monkeypatch):
    monkeypatch.setitem(device_check.TOLERANCE, torch.float32, 0.0)
    monkeypatch.setattr(device_check, "live_equals_whole", lambda config, device, dtype: 0.0)
    results, ok = device_check.exactness(device_check.TINY, torch.device("cpu"))
    assert not ok  # the float32 decode differs by rounding, which a zero tolerance refuses
    assert results["stream_decode_equals_whole_float32"]["pass"] is False
    assert results["live_equals_whole_float32"]["pass"] and results["cached_equals_sequence_bfloat16"]["pass"]


def test_a_failing_compiled_benchmark_is_reported_and_a_failing_plain_one_fails_the_check(monkeypatch):
    def bench(script, *args):
        if "--compile" in args or failing_plain:
            raise RuntimeError(f"{script} failed: out of memory")
        return {"steady_fps": 30.0, "fps": 25.0, "unlisted": 1}

    monkeypatch.setattr(device_check, "bench", bench)
    failing_plain = False
    results, ok = device_check.speed(torch.device("cpu"), compile_too=True)
    assert ok and results["stream"] == {"steady_fps": 30.0, "fps": 25.0}
    assert "out of memory" in results["stream_compiled"]["error"] and "error" in results["e2e_compiled"]
    failing_plain = True
    results, ok = device_check.speed(torch.device("cpu"), compile_too=False)
    assert not ok and "out of memory" in results["e2e"]["error"]
