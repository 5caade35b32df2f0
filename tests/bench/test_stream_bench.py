import pytest


@pytest.mark.slow
def test_stream_bench_prints_one_json_line_with_the_promised_measurements(run_bench):
    result = run_bench("stream_bench.py", "--preset", "rest-demo", "--chunks", "2", "--steps", "1")
    assert result["chunks"] == 2 and result["frames_per_chunk"] == 24
    for key in ("first_chunk_s", "chunk_latency_s", "steady_fps", "real_time_factor", "peak_memory_mb",
                "chunk_gflop", "matmul_peak_tflops", "fraction_of_floor"):
        assert result[key] > 0, key
    assert abs(result["steady_fps"] * result["chunk_latency_s"] - 24) < 0.1


@pytest.mark.slow
def test_stream_bench_compiles_the_blocks_when_asked_and_says_in_which_mode(run_bench):
    result = run_bench("stream_bench.py", "--preset", "rest-demo", "--chunks", "2", "--steps", "1", "--compile")
    assert result["compiled"] == "default" and result["steady_fps"] > 0


@pytest.mark.slow
def test_stream_bench_against_another_dtype_streams_both_in_turn_and_reports_the_speedup(run_bench):
    result = run_bench("stream_bench.py", "--chunks", "2", "--steps", "1", "--dtype", "bfloat16",
                       "--against", "float32", "--repeats", "2")
    assert result["dtype"] == "bfloat16" and result["repeats"] == 2 and result["against"]["dtype"] == "float32"
    assert result["chunks"] == 2 and result["against"]["steady_fps"] > 0
    assert result["speedup"] == pytest.approx(result["steady_fps"] / result["against"]["steady_fps"], rel=0.01)
