"""End-to-end benchmark: portrait + audio -> decoded frames through RESTPipeline (speech path, DiT with the
ID-Context Cache, streaming VAE decode). Random weights of the preset except Whisper (the real tiny.en), or a
checkpoint's (`--checkpoint`: its preset and its sampler defaults); the work, and so the time, is the same.

    python bench/e2e_bench.py --preset rest-demo                              # CPU, float32
    python bench/e2e_bench.py --checkpoint models/rest-demo.safetensors --dtype bfloat16   # the shipped model
    python bench/e2e_bench.py --preset rest-2b --device cuda --dtype bfloat16

Prints one JSON line: time to the first frame (the call to the first chunk, audio already there), steady-state
seconds per chunk and fps, real-time factor, peak memory, and where a chunk's time goes: each part (speech path,
DiT, VAE decode) timed alone on the same chunks, with its FLOPs (torch's FLOP counter) and the whole chunk's
fraction of the compute floor (its FLOPs over the measured matmul peak).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DTYPES, add_compile_flag, header, matmul_peak, parser, sync  # noqa: E402

from rest_core import RESTConfig, RESTPipeline, stream_latents  # noqa: E402
from rest_core.config import add_option_flags, given_options  # noqa: E402
from rest_core.flops import chunk_flops  # noqa: E402
from rest_core.streams import decode_chunk, primed_decoder  # noqa: E402


def seconds_and_flops(device, timed, counted) -> tuple[float, int]:
    """Seconds of timed() and FLOPs of counted(): two calls that do the same work on twin states."""
    sync(device)
    start = time.perf_counter()
    timed()
    sync(device)
    seconds = time.perf_counter() - start
    with FlopCounterMode(display=False) as counter:
        counted()
    return seconds, counter.get_total_flops()


@torch.no_grad()
def parts(pipe: RESTPipeline, image, audio, options, device) -> dict:
    """Each part of the pipeline alone on the clip's chunks: median seconds and GFLOP per chunk (the first chunk
    left out). The DiT's FLOPs are the analytic count (rest_core.flops, checked against torch's counter)."""
    chunk_samples = 16_000 * pipe.config.frames_per_chunk // pipe.config.fps
    ref, _ = pipe.encode_reference(image)
    speech, twin, latents = pipe.speech_stream(16_000), pipe.speech_stream(16_000), []
    spent = {"speech": [], "dit": [], "vae": []}
    for i in range(0, audio.shape[1] - chunk_samples + 1, chunk_samples):
        piece = audio[:, i:i + chunk_samples]
        spent["speech"].append(seconds_and_flops(device, lambda: latents.extend(speech.push(piece)),
                                                 lambda: twin.push(piece)))
    dit_flops = chunk_flops(pipe.config.dit, latent_size=pipe.config.latent_size,
                            chunk_latents=pipe.config.chunk_latents, steps=options.steps, guided=options.cfg != 1.0,
                            context_refresh=options.context_refresh, id_sink=options.id_sink,
                            context_cache=options.context_cache)
    video, made = stream_latents(pipe.dit, ref.latent, iter(latents), chunk_latents=pipe.config.chunk_latents,
                                 options=options), []
    for _ in latents:
        sync(device)
        start = time.perf_counter()
        made.append(next(video).latents)
        sync(device)
        spent["dit"].append((time.perf_counter() - start, dit_flops))
    states = [primed_decoder(pipe.vae, ref), primed_decoder(pipe.vae, ref)]

    def decode(k: int, z):
        states[k] = decode_chunk(pipe.vae, z, states[k])[1]

    for z in made:
        spent["vae"].append(seconds_and_flops(device, lambda: decode(0, z), lambda: decode(1, z)))
    result = {}
    for name, runs in spent.items():
        steady = runs[1:] or runs
        result[name] = {"s": round(statistics.median(s for s, _ in steady), 4),
                        "gflop": round(statistics.median(f for _, f in steady) / 1e9, 2)}
    return result


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--seconds", type=float, default=12.0, help="length of the audio")
    p.add_argument("--checkpoint", type=Path, default=None, help="a REST checkpoint instead of random weights")
    add_option_flags(p)
    add_compile_flag(p)
    args = p.parse_args(argv)

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.manual_seed(0)
    if args.checkpoint:
        pipe = RESTPipeline.from_pretrained(args.checkpoint, device=device, dtype=dtype)
        args.preset = pipe.config.name
    else:
        pipe = RESTPipeline.from_config(RESTConfig.preset(args.preset), device=device, dtype=dtype)
    config = pipe.config
    if args.compile:
        pipe.compile(args.compile)
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
    split = parts(pipe, image, audio, options, device)
    chunk_gflop = sum(part["gflop"] for part in split.values())
    floor = matmul_peak(device, dtype)
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
        "parts": split,  # each alone: median seconds and GFLOP per chunk
        "chunk_gflop": round(chunk_gflop, 2),
        "matmul_peak_tflops": round(floor / 1e12, 3),
        "fraction_of_floor": round(chunk_gflop * 1e9 / steady / floor, 4),
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
