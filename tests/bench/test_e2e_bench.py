import pytest

from conftest import TINY_REST


@pytest.mark.slow
def test_e2e_bench_prints_one_json_line_with_latency_fps_and_memory(run_bench):
    result = run_bench("e2e_bench.py", "--preset", "rest-demo", "--seconds", "2", "--steps", "1", "--cfg", "1")
    assert result["frames"] == 50 and result["chunks"] == 3
    for key in ("first_frame_s", "chunk_s", "fps", "real_time_factor", "peak_memory_mb"):
        assert result[key] > 0, key
    parts = result["parts"]
    assert sorted(parts) == ["dit", "speech", "vae"] and all(p["s"] > 0 and p["gflop"] > 0 for p in parts.values())
    assert result["chunk_gflop"] == pytest.approx(sum(p["gflop"] for p in parts.values()), abs=0.02)
    assert result["fraction_of_floor"] > 0  # the chunk's FLOPs over the measured matmul peak


@pytest.mark.slow
def test_e2e_bench_runs_a_checkpoint_with_its_own_preset_and_sampler_defaults(run_bench, tiny_checkpoint):
    result = run_bench("e2e_bench.py", "--checkpoint", str(tiny_checkpoint), "--seconds", "2")
    assert result["preset"] == "tiny" and result["frames"] == 50
    assert (result["steps"], result["cfg"]) == (TINY_REST.sampler.steps, TINY_REST.sampler.cfg)
