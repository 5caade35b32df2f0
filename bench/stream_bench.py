"""Streaming DiT benchmark: per-chunk latency, time to first chunk, steady-state fps, real-time factor, peak
memory and the achieved fraction of the compute floor. Random weights (speed does not depend on them).

    python bench/stream_bench.py --preset rest-demo                          # CPU, float32
    python bench/stream_bench.py --preset rest-2b --device cuda --dtype bfloat16
    python bench/stream_bench.py --dtype bfloat16 --against float32 --repeats 8   # speedup, interleaved

`--against` builds a second model with the same weights in another dtype and streams the two in turn, `--repeats`
times each after a warm-up stream, in one process: on a machine whose speed drifts (shared cores) that ratio holds
where two separate runs do not. The steady latency is then the median over the repeats of each stream's median, and
the peak memory holds both models.

Prints one JSON line. The floor is the analytic FLOPs of a chunk (rest_core.flops) over this device's measured
matmul peak in the same dtype.
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

from common import DTYPES, add_compile_flag, header, matmul_peak, parser, sync  # noqa: E402

from rest_core import A2VDiT, RESTConfig, stream_latents  # noqa: E402
from rest_core.config import VAE_TEMPORAL, add_option_flags, given_options  # noqa: E402
from rest_core.flops import chunk_flops  # noqa: E402

TEXT_TOKENS = 128  # T5 prompt length used by LTX-Video


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--chunks", type=int, default=8, help="chunks to stream (the first is reported separately)")
    add_option_flags(p)
    add_compile_flag(p)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--against", default=None, choices=sorted(DTYPES),
                   help="also stream a model with the same weights in this dtype, in turn, and report the speedup")
    p.add_argument("--repeats", type=int, default=4, help="streams of each model with --against (after a warm-up)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats: expected at least 1")

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    config = RESTConfig.preset(args.preset)
    options = config.sampler.replace(**given_options(args))
    steps, cfg = options.steps, options.cfg
    dit, c, s = config.dit, config.chunk_latents, config.latent_size

    torch.manual_seed(0)
    model = A2VDiT(dit).eval()
    models = {args.dtype: model}
    if args.against:
        models[args.against] = A2VDiT(dit).eval()
        models[args.against].load_state_dict(model.state_dict())
    for name, m in models.items():
        m.to(device=device, dtype=DTYPES[name])
        if args.compile:
            m.compile_blocks(args.compile)
    ref = torch.randn(1, dit.in_channels, 1, s, s, device=device)
    speech = torch.randn(1, args.chunks * c, dit.speech_tokens, dit.speech_dim, device=device)
    text = torch.randn(1, TEXT_TOKENS, dit.text_dim, device=device) if dit.text_dim else None

    def stream(m) -> list[float]:
        """Seconds of each chunk of one stream."""
        latencies = []
        sync(device)
        last = time.perf_counter()
        for _ in stream_latents(m, ref, speech, text, chunk_latents=c, options=options):
            sync(device)
            now = time.perf_counter()
            latencies.append(now - last)
            last = now
        return latencies

    def steady_of(latencies: list[float]) -> float:
        return statistics.median(latencies[1:]) if len(latencies) > 1 else latencies[0]

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warm_up = {name: stream(m) for name, m in models.items()}
    memory = peak_memory_bytes(device)
    first = warm_up[args.dtype]
    runs = {name: [] for name in models} if args.against else {name: [lat] for name, lat in warm_up.items()}
    for _ in range(args.repeats if args.against else 0):
        for name, m in models.items():
            runs[name].append(stream(m))
    steadies = {name: statistics.median(steady_of(lat) for lat in r) for name, r in runs.items()}
    steady_chunks = [t for lat in runs[args.dtype] for t in (lat[1:] or lat)]

    flops = chunk_flops(dit, latent_size=s, chunk_latents=c, steps=steps, guided=cfg != 1.0,
                        context_refresh=options.context_refresh, text_tokens=0 if text is None else TEXT_TOKENS,
                        id_sink=options.id_sink, context_cache=options.context_cache)
    peak = matmul_peak(device, dtype)
    steady = steadies[args.dtype]
    chunk_seconds = c * VAE_TEMPORAL / config.fps
    result = {
        **header("stream_dit", args, device),
        "steps": steps,
        "cfg": cfg,
        "context_refresh": options.context_refresh,
        "chunks": len(first),
        "frames_per_chunk": c * VAE_TEMPORAL,
        "first_chunk_s": round(first[0], 4),
        "chunk_latency_s": round(steady, 4),
        "chunk_latency_min_s": round(min(steady_chunks), 4),
        "steady_fps": round(c * VAE_TEMPORAL / steady, 2),
        "real_time_factor": round(steady / chunk_seconds, 4),
        "total_s": round(sum(first), 3),
        "peak_memory_mb": round(memory / 2**20, 1),
        "chunk_gflop": round(flops / 1e9, 2),
        "matmul_peak_tflops": round(peak / 1e12, 3),
        "achieved_tflops": round(flops / steady / 1e12, 3),
        "fraction_of_floor": round(flops / steady / peak, 4),
        "torch": torch.__version__,
    }
    if args.against:
        against = steadies[args.against]
        result |= {"repeats": args.repeats, "against": {"dtype": args.against, "chunk_latency_s": round(against, 4),
                                                        "steady_fps": round(c * VAE_TEMPORAL / against, 2)},
                   "speedup": round(against / steady, 3)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
