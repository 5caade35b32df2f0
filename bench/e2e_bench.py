"""End-to-end benchmark: portrait + audio -> decoded frames through RESTPipeline (speech path, DiT with the
ID-Context Cache, streaming VAE decode). Random weights except Whisper (the real tiny.en).

    python bench/e2e_bench.py --preset rest-demo                              # CPU, float32
    python bench/e2e_bench.py --preset rest-2b --device cuda --dtype bfloat16

Prints one JSON line: time to the first frame (the call to the first chunk, audio already there), steady-state
seconds per chunk and fps, real-time factor, peak memory.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DTYPES, compile_blocks, header, parser, sync  # noqa: E402

from rest_core import RESTConfig, RESTPipeline  # noqa: E402
from rest_core.config import add_option_flags, given_options  # noqa: E402


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--seconds", type=float, default=12.0, help="length of the audio")
    add_option_flags(p)
    p.add_argument("--compile", action="store_true", help="compile the DiT's blocks first (torch.compile)")
    args = p.parse_args(argv)

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    config = RESTConfig.preset(args.preset)
    torch.manual_seed(0)
    pipe = RESTPipeline.from_config(config, device=device, dtype=dtype)
    if args.compile:
        compile_blocks(pipe.dit)
    image = torch.rand(1, config.resolution, config.resolution, 3)
    audio = torch.randn(1, int(args.seconds * 16_000)) * 0.1
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    times, frames = [], 0
    start = last = time.perf_counter()
    options = pipe.options(**given_options(args))
    for chunk in pipe.stream(image, audio, 16_000, options=options):
        sync(device)
        now = time.perf_counter()
        times.append(now - last)
        last = now
        frames += chunk.frames.shape[0]
    total = time.perf_counter() - start
    steady = statistics.median(times[1:-1]) if len(times) > 2 else times[-1]
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    result = {
        **header("e2e", args, device),
        "steps": options.steps,
        "cfg": options.cfg,
        "audio_s": args.seconds,
        "frames": frames,
        "chunks": len(times),
        "first_frame_s": round(times[0], 4),
        "chunk_s": round(steady, 4),
        "fps": round(config.frames_per_chunk / steady, 1),
        "real_time_factor": round(steady / (config.frames_per_chunk / config.fps), 4),
        "total_s": round(total, 3),
        "peak_memory_mb": round(peak / 2**20, 1),
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
