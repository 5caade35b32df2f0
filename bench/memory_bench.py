"""Peak memory against the length of the speech: the long_audio workflow (REST Render Video -> Save Video) through a
real ComfyUI, and `python -m rest_core generate`, for several minutes of speech each.

    python bench/memory_bench.py                                          # the shipped demo model, 1, 3, 10 min
    python bench/memory_bench.py --resolution 512 --dtype bfloat16 --only server   # random weights at 512 x 512
    python bench/memory_bench.py --resolution 512 --narrow                          # the same layout, narrow

Each length gets a fresh server: its peak resident memory (VmHWM) is read after the job, next to its resident memory
idle (before the job) and after it. The CLI's peak comes from the finished process (ru_maxrss). Memory does not
depend on the denoising steps or the guidance, so they default to 1 step without guidance to keep 10 minutes short.
The speech is one espeak-ng paragraph said again and again (22.05 kHz mono, as espeak-ng writes it).

Prints one JSON line per run and a summary line with the growth from the shortest to the longest speech.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.comfyui_server import ComfyServer  # noqa: E402

PARAGRAPH = ("The light over the harbour changed slowly as the boats came home. Nobody on the quay said much; they "
             "watched the water, counted the nets and waited for the last of them to tie up before the rain.")


def speech_wav(path: Path, minutes: float) -> Path:
    """espeak-ng's paragraph repeated to `minutes` of 22.05 kHz mono speech."""
    spoken = path.with_suffix(".once.wav")
    subprocess.run(["espeak-ng", "-w", str(spoken), PARAGRAPH], check=True)
    with wave.open(str(spoken)) as f:
        rate, once = f.getframerate(), np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    samples = np.resize(once, int(minutes * 60 * rate))
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.astype("<i2").tobytes())
    spoken.unlink()
    return path


def portrait_png(path: Path, side: int) -> Path:
    from PIL import Image

    g = np.random.default_rng(0)
    Image.fromarray(g.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    return path


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def server_run(checkpoint: Path, image: Path, audio: Path, steps: int, cfg: float, dtype: str, root: Path) -> dict:
    server = ComfyServer(root)
    server.install()
    (server.base / "models" / "rest" / "bench.safetensors").symlink_to(checkpoint.resolve())
    for f in (image, audio):
        (server.base / "input" / f.name).symlink_to(f.resolve())
    server.start()
    try:
        prompt = json.loads((ROOT / "workflows" / "api" / "long_audio.json").read_text())
        prompt["1"]["inputs"]["image"], prompt["2"]["inputs"]["audio"] = image.name, audio.name
        prompt["3"]["inputs"] |= {"checkpoint": "bench.safetensors", "dtype": dtype}
        prompt["6"]["inputs"] |= {"steps": steps, "cfg": cfg, "live_player": False}
        pid = server.process.pid
        idle = status_mb(pid, "VmRSS")
        started = time.perf_counter()
        entry = server.run(prompt, timeout=3 * 3600)
        seconds = time.perf_counter() - started
        time.sleep(2)  # the executor's clean-up after the job
        return {"idle_mb": round(idle), "peak_mb": round(status_mb(pid, "VmHWM")),
                "after_mb": round(status_mb(pid, "VmRSS")), "job_s": round(seconds, 1),
                "mp4_mb": round(server.output_file(entry, "9").stat().st_size / 2**20, 1)}
    finally:
        server.stop()


def cli_run(checkpoint: Path, image: Path, audio: Path, steps: int, cfg: float, dtype: str, out: Path) -> dict:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "rest_core", "generate", "--checkpoint", str(checkpoint),
                                "--image", str(image), "--audio", str(audio), "--out", str(out),
                                "--steps", str(steps), "--cfg", str(cfg),
                                "--dtype", "float32" if dtype == "auto" else dtype],
                               cwd=ROOT, stderr=subprocess.DEVNULL)
    _, code, usage = os.wait4(process.pid, 0)
    if code:
        raise RuntimeError(f"rest_core generate failed (status {code})")
    return {"peak_mb": round(usage.ru_maxrss / 1024), "job_s": round(time.perf_counter() - started, 1)}


def random_checkpoint(path: Path, resolution: int, narrow: bool) -> Path:
    """Random rest-demo weights at `resolution`; `narrow` keeps its layout (blocks, strides, chunks, speech clock)
    at a fraction of its widths, which changes the cost per frame and the constant weights, not what a longer
    speech adds: that is frames, audio and the stream's state, the same for any width."""
    from rest_core import PRESETS, RESTPipeline
    from rest_core.config import DiTConfig, SpeechConfig, VAEConfig

    config = replace(PRESETS["rest-demo"], name=f"rest-demo-{resolution}", resolution=resolution)
    if narrow:
        config = replace(config, name=f"rest-demo-narrow-{resolution}",
                         dit=DiTConfig(in_channels=16, hidden=64, depth=1, heads=2, text_dim=None, speech_tokens=4,
                                       speech_dim=16, ffn_gelu="none"),
                         vae=VAEConfig(latent_channels=16, block_out_channels=(8, 16, 16, 16),
                                       layers_per_block=(1, 1, 1, 1, 1), decoder_block_out_channels=(8, 16, 16, 16),
                                       decoder_layers_per_block=(1, 1, 1, 1, 1)),
                         speech=SpeechConfig(hidden=32, depth=1, heads=2))
    RESTPipeline.from_config(config).save_pretrained(path)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "rest-demo.safetensors")
    p.add_argument("--resolution", type=int, default=None,
                   help="random rest-demo weights at this resolution instead of --checkpoint")
    p.add_argument("--narrow", action="store_true",
                   help="with --resolution: a narrow random model of the same layout (far faster per frame)")
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10])
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--cfg", type=float, default=1.0)
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="the model's dtype (the loader's choice; auto is float32 for the CLI)")
    p.add_argument("--only", choices=["server", "cli"], default=None)
    args = p.parse_args(argv)
    if args.narrow and not args.resolution:
        p.error("--narrow makes a random model: give --resolution too")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.resolution:
            checkpoint = random_checkpoint(tmp / "random.safetensors", args.resolution, args.narrow)
            side = args.resolution
        else:
            from rest_core import RESTPipeline

            checkpoint = args.checkpoint
            side = RESTPipeline.from_pretrained(checkpoint).config.resolution
        image = portrait_png(tmp / "bench_portrait.png", side)
        peaks: dict[str, list[int]] = {"server": [], "cli": []}
        for minutes in args.minutes:
            audio = speech_wav(tmp / f"bench_speech_{minutes:g}min.wav", minutes)
            for kind in ("server", "cli"):
                if args.only not in (None, kind):
                    continue
                if kind == "server":
                    result = server_run(checkpoint, image, audio, args.steps, args.cfg, args.dtype,
                                        tmp / f"server-{minutes:g}")
                else:
                    result = cli_run(checkpoint, image, audio, args.steps, args.cfg, args.dtype, tmp / "cli.mp4")
                peaks[kind].append(result["peak_mb"])
                print(json.dumps({"bench": "memory", "run": kind, "minutes": minutes, "output_px": side,
                                  "narrow": args.narrow,
                                  "steps": args.steps, "cfg": args.cfg, "dtype": args.dtype, **result}), flush=True)
            audio.unlink()
        summary = {"bench": "memory", "output_px": side, "minutes": args.minutes}
        for kind, values in peaks.items():
            if values:
                summary[f"{kind}_growth_mb"] = values[-1] - values[0]
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
