"""VAE benchmark: encode and streaming-decode time per 24-frame chunk, GFLOP per frame, and the memory of a long
streaming decode (it must stay flat). Random weights.

    python bench/vae_bench.py --preset rest-demo                             # CPU, float32
    python bench/vae_bench.py --preset rest-2b --device cuda --dtype bfloat16

Prints one JSON line. GFLOP are counted by torch's FLOP counter on one chunk (convolutions and matmuls).
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

from common import DTYPES, header, parser, sync  # noqa: E402

from rest_core import CausalVAE, RESTConfig  # noqa: E402
from rest_core.config import VAE_TEMPORAL  # noqa: E402


def memory_now(device) -> int:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    with open("/proc/self/statm") as f:  # resident set size, in pages
        return int(f.read().split()[1]) * resource.getpagesize()


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--chunks", type=int, default=200, help="chunks in the long streaming decode")
    p.add_argument("--timed", type=int, default=5, help="chunks timed for encode and decode speed")
    args = p.parse_args(argv)

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    config = RESTConfig.preset(args.preset)
    c, s = config.chunk_latents, config.latent_size
    torch.manual_seed(0)
    vae = CausalVAE(config.vae).to(device=device, dtype=dtype).eval()
    frames = c * VAE_TEMPORAL
    z_ref = torch.randn(1, config.vae.latent_channels, 1, s, s, device=device, dtype=dtype)
    z_chunk = torch.randn(1, config.vae.latent_channels, c, s, s, device=device, dtype=dtype)
    clip = torch.rand(1, 3, 1 + frames, config.resolution, config.resolution, device=device, dtype=dtype) * 2 - 1
    portrait = clip[:, :, 0]  # a reference-conditioned VAE's (a plain one ignores it)

    with torch.no_grad():
        state = vae.decode_start(portrait)
        vae.decode_stream(z_ref, state)
        with FlopCounterMode(display=False) as counter:
            vae.decode_stream(z_chunk, state)
        decode_flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            vae.encode_video(clip, portrait)
        encode_flops = counter.get_total_flops()

        encode_times = []
        for _ in range(args.timed):
            sync(device)
            start = time.perf_counter()
            vae.encode_video(clip, portrait)
            sync(device)
            encode_times.append(time.perf_counter() - start)

        # one long stream: time every chunk, sample memory as it goes
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        state = vae.decode_start(portrait)
        vae.decode_stream(z_ref, state)
        decode_times, memory = [], []
        for _ in range(args.chunks):
            sync(device)
            start = time.perf_counter()
            vae.decode_stream(z_chunk, state)
            sync(device)
            decode_times.append(time.perf_counter() - start)
            memory.append(memory_now(device))

    tenth = max(1, args.chunks // 10)
    decode = statistics.median(decode_times)
    result = {
        **header("vae", args, device),
        "resolution": config.resolution,
        "frames_per_chunk": frames,
        "encode_chunk_s": round(statistics.median(encode_times), 4),  # a 1 + 24 frame clip
        "decode_chunk_s": round(decode, 4),
        "decode_fps": round(frames / decode, 1),
        "decode_real_time_factor": round(decode / (frames / config.fps), 4),
        "decode_gflop_per_frame": round(decode_flops / frames / 1e9, 3),
        "encode_gflop_per_frame": round(encode_flops / (1 + frames) / 1e9, 3),
        "stream_chunks": args.chunks,
        "memory_first_tenth_mb": round(statistics.mean(memory[:tenth]) / 2**20, 1),
        "memory_last_tenth_mb": round(statistics.mean(memory[-tenth:]) / 2**20, 1),
        "memory_max_mb": round(max(memory) / 2**20, 1),
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
