import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_vae_bench_prints_one_json_line_with_speed_flops_and_memory():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "vae_bench.py"), "--preset", "rest-demo",
                          "--chunks", "3", "--timed", "1"], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["frames_per_chunk"] == 24 and result["stream_chunks"] == 3
    for key in ("encode_chunk_s", "decode_chunk_s", "decode_fps", "decode_gflop_per_frame",
                "encode_gflop_per_frame", "memory_first_tenth_mb", "memory_last_tenth_mb"):
        assert result[key] > 0, key
