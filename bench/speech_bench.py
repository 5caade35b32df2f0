"""Speech path benchmark: the cost of turning live audio into speech latents E, per streaming chunk.

Audio is pushed one chunk (0.96 s) at a time into the Whisper windows and SpeechAE, as a live stream does.
Reports seconds and GFLOP per chunk, the real-time factor, and the lookahead the windows wait for.

    python bench/speech_bench.py --preset rest-demo                     # CPU, float32, real tiny.en weights
    python bench/speech_bench.py --preset rest-2b --device cuda

Prints one JSON line. SpeechAE has random weights (its cost does not depend on them).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DTYPES, header, parser, sync  # noqa: E402

from rest_core import RESTConfig, SpeechAE, SpeechWindows, default_whisper_encoder  # noqa: E402
from rest_core.speech import SAMPLES_PER_LATENT  # noqa: E402
from rest_core.whisper import SAMPLE_RATE  # noqa: E402


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--chunks", type=int, default=20, help="chunks of audio streamed")
    args = p.parse_args(argv)

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    config = RESTConfig.preset(args.preset)
    chunk_samples = config.chunk_latents * SAMPLES_PER_LATENT
    torch.manual_seed(0)
    whisper = default_whisper_encoder().to(device=device, dtype=dtype)
    speech_ae = SpeechAE.from_config(config).to(device=device, dtype=dtype).eval()
    audio = torch.randn(chunk_samples * (args.chunks + 1)) * 0.1  # one extra chunk covers the lookahead

    stream = SpeechWindows(whisper, config.speech.context_left, config.speech.context_right)
    times, flops = [], []
    with torch.no_grad():
        for k in range(args.chunks + 1):
            sync(device)
            start = time.perf_counter()
            with FlopCounterMode(display=False) as counter:
                windows = stream.push(audio[k * chunk_samples:(k + 1) * chunk_samples])
                if windows.shape[0]:
                    speech_ae.encode(windows)
            sync(device)
            if k:  # the first push only fills the lookahead
                times.append(time.perf_counter() - start)
                flops.append(counter.get_total_flops() / max(1, windows.shape[0]))

    chunk_s = statistics.median(times)
    result = {
        **header("speech", args, device),
        "chunk_latents": config.chunk_latents,
        "window_features": config.speech.window,
        "lookahead_ms": stream.lookahead_samples * 1000 / SAMPLE_RATE,
        "chunk_s": round(chunk_s, 4),
        "real_time_factor": round(chunk_s / (chunk_samples / SAMPLE_RATE), 4),
        "gflop_per_latent_frame": round(statistics.median(flops) / 1e9, 3),
        "speech_ae_params_m": round(sum(p.numel() for p in speech_ae.parameters()) / 1e6, 2),
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
