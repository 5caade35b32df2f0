import pytest


@pytest.mark.slow
def test_vae_bench_prints_one_json_line_with_speed_flops_and_memory(run_bench):
    result = run_bench("vae_bench.py", "--preset", "rest-demo", "--chunks", "3", "--timed", "1")
    assert result["frames_per_chunk"] == 24 and result["stream_chunks"] == 3
    for key in ("encode_chunk_s", "decode_chunk_s", "decode_fps", "decode_gflop_per_frame",
                "encode_gflop_per_frame", "memory_first_tenth_mb", "memory_last_tenth_mb"):
        assert result[key] > 0, key
