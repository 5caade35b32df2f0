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
