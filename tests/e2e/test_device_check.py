"""bench/device_check.py on the CPU at its tiny sizes: what a GPU machine runs in its few minutes must not rot."""

import json
import subprocess
import sys

from conftest import ROOT


def test_the_device_check_passes_on_the_cpu_and_ends_with_one_json_summary():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "device_check.py"), "--device", "cpu"],
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["pass"] and summary["device"] and summary["config"] == "tiny"
    assert sorted(summary["exactness"]) == sorted(f"{check}_{dtype}" for dtype in ("float32", "bfloat16") for check in
                                                  ("cached_equals_sequence", "stream_decode_equals_whole",
                                                   "live_equals_whole"))
    assert all(r["pass"] and r["relative_error"] < 0.04 for r in summary["exactness"].values())
    assert summary["exactness"]["live_equals_whole_float32"]["relative_error"] == 0  # bit for bit on the CPU
    assert sorted(summary["precision"]) == ["bfloat16", "float16"]
    assert all(r["pass"] and r["psnr_db_min"] >= r["min_psnr_db"] for r in summary["precision"].values())
    assert summary["nodes"]["pass"] and summary["nodes"]["frames"] == 75  # 3 s of speech through ComfyUI
    stream, e2e = summary["speed"]["stream"], summary["speed"]["e2e"]
    assert stream["steady_fps"] > 0 and 0 < stream["fraction_of_floor"] < 1 and e2e["fps"] > 0
    assert "FAIL" not in out.stderr
