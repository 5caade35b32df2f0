"""Command line: `python -m rest_core generate --checkpoint model.safetensors --image face.png --audio speech.wav
--out talk.mp4` writes the talking-head video with the speech muxed in, chunk by chunk."""

from __future__ import annotations

import argparse
import sys
import time

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def progress(done: int, total: int, started: float, note: str = ""):
    width = 30
    filled = width * done // max(total, 1)
    elapsed = time.perf_counter() - started
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} steps  {elapsed:6.1f} s {note}")
    sys.stderr.flush()


def generate(args) -> int:
    from .media import VideoWriter, read_audio, read_image
    from .pipeline import RESTPipeline
    from .resample import resampled_length
    from .speech import check_sample_rate, latent_frames, mono_clip
    from .whisper import SAMPLE_RATE

    pipe = RESTPipeline.from_pretrained(args.checkpoint, whisper=args.whisper, device=args.device,
                                        dtype=DTYPES[args.dtype])
    image = read_image(args.image)
    waveform, rate = read_audio(args.audio)
    samples_16k = resampled_length(mono_clip(waveform).shape[0], check_sample_rate(rate), SAMPLE_RATE)
    steps = args.steps or pipe.config.sampler.steps
    chunks = -(-latent_frames(samples_16k) // pipe.config.chunk_latents)
    started = time.perf_counter()
    done = [0]

    def on_step(chunk: int, step: int):
        done[0] += 1
        progress(done[0], chunks * steps, started, f"(chunk {chunk + 1}/{chunks})")

    stream = pipe.stream(image, waveform, rate, steps=steps, cfg=args.cfg, seed=args.seed,
                         id_sink=not args.no_id_sink, context_cache=not args.no_context_cache, on_step=on_step)
    writer = VideoWriter(args.out, pipe.config.fps, audio_rate=rate, audio_channels=waveform.shape[0])
    try:
        for chunk in stream:
            writer.write(chunk.frames)
    finally:
        writer.close(waveform)
    elapsed = time.perf_counter() - started
    seconds = writer.frames / pipe.config.fps
    sys.stderr.write(f"\nwrote {args.out}: {writer.frames} frames ({seconds:.2f} s) in {elapsed:.1f} s, "
                     f"real-time factor {elapsed / seconds:.2f}\n")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rest_core", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="portrait + speech -> talking-head mp4")
    g.add_argument("--checkpoint", required=True, help="a REST .safetensors checkpoint")
    g.add_argument("--image", required=True, help="the portrait")
    g.add_argument("--audio", required=True, help="the speech (any format ffmpeg reads)")
    g.add_argument("--out", required=True, help="the mp4 to write")
    g.add_argument("--whisper", default=None, help="Whisper weights (default: bundled in the checkpoint, or tiny.en)")
    g.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: the model's)")
    g.add_argument("--cfg", type=float, default=None, help="Joint CFG scale (default: the model's)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-id-sink", action="store_true", help="ablation: later chunks do not see the reference")
    g.add_argument("--no-context-cache", action="store_true", help="ablation: chunks do not see their predecessor")
    g.add_argument("--device", default="cpu")
    g.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    args = p.parse_args(argv)
    try:
        return generate(args)
    except ValueError as e:
        sys.stderr.write(f"\nerror: {e}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
