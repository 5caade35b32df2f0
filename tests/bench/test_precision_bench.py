import sys

import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import precision_bench  # noqa: E402


def test_precision_bench_compares_every_frame_with_float32s_and_says_whether_it_passes(run_bench, tiny_checkpoint):
    result = run_bench("precision_bench.py", "--checkpoint", str(tiny_checkpoint), "--seconds", "2")
    assert (result["dtype"], result["against"], result["frames"]) == ("bfloat16", "float32", 50)
    assert len(result["psnr_db_per_chunk"]) == 3  # 24 frames a chunk, the last one short
    assert result["min_psnr_db"] <= result["psnr_db_min"] <= result["psnr_db_mean"] < 100
    assert 0 < result["max_abs_difference"] < 0.1 and result["pass"] is True
    assert set(result["fidelity_db"]) == set(result["seconds"]) == {"float32", "bfloat16"}


def test_a_frame_below_the_tolerance_fails_the_comparison(monkeypatch, tiny_checkpoint):
    monkeypatch.setattr(precision_bench, "MIN_PSNR_DB", 90.0)  # bfloat16 is never this close
    result = precision_bench.compare(tiny_checkpoint, torch.bfloat16, torch.device("cpu"), 1.0)
    assert result["psnr_db_min"] < 90 and result["pass"] is False
