import pytest


@pytest.mark.slow
def test_speech_bench_prints_one_json_line_with_cost_and_lookahead(run_bench):
    result = run_bench("speech_bench.py", "--preset", "rest-demo", "--chunks", "2")
    assert result["lookahead_ms"] == 162.5 and result["window_features"] == 32
    for key in ("chunk_s", "real_time_factor", "gflop_per_latent_frame", "speech_ae_params_m"):
        assert result[key] > 0, key
