"""Command line.

    python -m rest_core generate --checkpoint model.safetensors --image face.png --audio speech.wav --out talk.mp4
    python -m rest_core synth ...      a procedural talking-head corpus (rest_core/data/synth.py)
    python -m rest_core prepare ...    videos -> cropped clips, speech features, VAE latents (rest_core/data/prepare.py)
    python -m rest_core train ...      vae | speechae | teacher | student (rest_core/train/)
    python -m rest_core eval ...       quality metrics and ablations on held-out clips (rest_core/eval/evaluate.py)

`generate` writes the talking-head video with the speech muxed in, chunk by chunk. The other commands live in
their own modules, each with `configure(parser)` and `run(args) -> exit code`, imported only when called.
"""

from __future__ import annotations

import argparse
import sys
import time

from .checkpoint import DTYPES
from .config import add_option_flags, given_options



def progress(done: int, total: int, started: float, note: str = ""):
    width = 30
    filled = width * done // max(total, 1)
    elapsed = time.perf_counter() - started
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} steps  {elapsed:6.1f} s {note}")
    sys.stderr.flush()


def chosen_dtype(choice: str, device: str):
    from .precision import emulated_dtype_warning, fastest_cpu_dtype

    import torch

    if choice != "auto":
        warning = emulated_dtype_warning(DTYPES[choice], device)
        if warning:
            sys.stderr.write(f"warning: {warning}\n")
        return DTYPES[choice]
    if device == "cpu":
        return fastest_cpu_dtype()
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def generate(args) -> int:
    from .media import VideoWriter, read_audio, read_image
    from .pipeline import RESTPipeline
    from .reference import CropBox
    from .resample import resampled_length
    from .speech import check_sample_rate, latent_frames, mono_clip
    from .whisper import SAMPLE_RATE

    pipe = RESTPipeline.from_pretrained(args.checkpoint, whisper=args.whisper, device=args.device,
                                        dtype=chosen_dtype(args.dtype, args.device))
    if args.compile:
        pipe.compile()
    image = read_image(args.image)
    waveform, rate = read_audio(args.audio)
    samples_16k = resampled_length(mono_clip(waveform).shape[0], check_sample_rate(rate), SAMPLE_RATE)
    options = pipe.options(**given_options(args))
    chunks = -(-latent_frames(samples_16k) // pipe.config.chunk_latents)
    started = time.perf_counter()
    done = [0]

    def on_step(chunk: int, step: int):
        done[0] += 1
        progress(done[0], chunks * options.steps, started, f"(chunk {chunk + 1}/{chunks})")

    box = None if args.box is None else CropBox(top=args.box[1], left=args.box[0], size=args.box[2])
    stream = pipe.stream(image, waveform, rate, box, options, args.mouth, on_step=on_step)
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


# command -> (module, help); the module is imported when its command runs, so `generate` never loads training code
COMMANDS = {
    "synth": ("rest_core.data.synth", "write a procedural talking-head corpus: mp4 clips + ground-truth sidecars"),
    "prepare": ("rest_core.data.prepare", "videos -> face-cropped 25 fps clips, speech features and VAE latents"),
    "train": ("rest_core.train", "train the VAE, SpeechAE, teacher or student"),
    "eval": ("rest_core.eval.evaluate", "lip-sync, identity drift, seams, PSNR/SSIM on held-out clips, with ablations"),
}


def main(argv=None) -> int:
    import importlib

    p = argparse.ArgumentParser(prog="python -m rest_core", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    for name, (module, help_text) in COMMANDS.items():
        q = sub.add_parser(name, help=help_text)
        if argv[:1] == [name]:
            importlib.import_module(module).configure(q)
    g = sub.add_parser("generate", help="portrait + speech -> talking-head mp4")
    g.add_argument("--checkpoint", required=True, help="a REST .safetensors checkpoint")
    g.add_argument("--image", required=True, help="the portrait")
    g.add_argument("--audio", required=True, help="the speech (any format ffmpeg reads)")
    g.add_argument("--out", required=True, help="the mp4 to write")
    g.add_argument("--box", type=int, nargs=3, metavar=("X", "Y", "SIZE"), default=None,
                   help="the square of the portrait to animate, in its pixels (default: the largest centred one)")
    g.add_argument("--mouth", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), default=None,
                   help="where the portrait's mouth is, a box in its pixels (default: the model finds it; on a "
                        "photograph it can miss, and the mouth then opens in the wrong place)")
    g.add_argument("--whisper", default=None, help="Whisper weights (default: bundled in the checkpoint, or tiny.en)")
    add_option_flags(g)
    g.add_argument("--device", default="cpu")
    g.add_argument("--dtype", default="auto", choices=["auto", *sorted(DTYPES)],
                   help="auto: bfloat16 on a GPU that supports it; on the CPU bfloat16 only where its native "
                        "bfloat16 matmuls are measured faster than float32's (rest_core/precision.py)")
    g.add_argument("--compile", action="store_true",
                   help="compile the DiT (torch.compile): the first chunk waits 15-30 s for it, later ones run "
                        "faster; needs a C++ compiler on the CPU")
    args = p.parse_args(argv)
    args.argv = argv  # the command line as given, for reports that say how they were made
    try:
        if args.command in COMMANDS:
            return importlib.import_module(COMMANDS[args.command][0]).run(args)
        return generate(args)
    except ValueError as e:
        sys.stderr.write(f"\nerror: {e}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
