"""`python -m rest_core eval`: the trained model against held-out synthetic clips, with the paper's ablations.

    python -m rest_core eval --checkpoint models/rest/rest-demo.safetensors --clips corpus/heldout \
        --streams corpus/heldout-60s --teacher runs/demo/teacher/dit.safetensors \
        --no-asd runs/demo/student-noasd/dit.safetensors --out docs

Every clip's first frame (face-cropped as in training) is the portrait; the speech starts one frame later, so
generated frame t is ground-truth frame t + 1. Two tables:

- training window: each held-out clip cut to K chunks (the length the teacher was trained on), for the streaming
  student and its ablations and the non-streaming teacher, which denoises all K chunks at once;
- long streams (e.g. 60 s): the streaming variants only (a non-streaming model has no stream), with identity
  drift = identity error over the last 10 s / over the first 10 s.

Variants: full (ID sink + context cache), no ID sink, no context cache (the same weights with that part of the
cache switched off at inference, Table 2), student trained without ASD (Table 3), teacher. Two reference rows
calibrate the measurements: the ground truth itself and its VAE reconstruction (the best any generation through
this VAE can do). Writes OUT/RESULTS.md, OUT/results/results.json and a contact sheet per variant.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import metrics
from .config import VAE_TEMPORAL
from .data.prepare import crop_resize, face_box, find_videos, read_frames_25fps
from .data.synth import mouth_openness
from .media import read_audio
from .pipeline import RESTPipeline
from .sampling import sample_sequence
from .train.state import load_part

SHEET_COLUMNS = 12


@dataclass
class HeldOutClip:
    name: str
    frames: torch.Tensor  # [T, R, R, 3] float in [0, 1], face-cropped ground truth
    audio: torch.Tensor  # [channels, samples]
    rate: int
    mouth_open: np.ndarray  # [T] the corpus' true openness


def load_clip(path: Path, resolution: int) -> HeldOutClip:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise ValueError(f"{path}: no {sidecar.name} beside it; eval needs the synthetic corpus' ground truth "
                         f"(python -m rest_core synth)")
    truth = json.loads(sidecar.read_text())
    frames = read_frames_25fps(path)
    pixels = crop_resize(frames, face_box(path, *frames.shape[1:3]), resolution)
    audio, rate = read_audio(path)
    count = min(len(pixels), len(truth["mouth_open"]))
    return HeldOutClip(path.stem, torch.from_numpy(pixels[:count]).float() / 255, audio, rate,
                       np.asarray(truth["mouth_open"][:count]))


def after_first_frame(clip: HeldOutClip, frames: int) -> tuple[torch.Tensor, int]:
    """The speech under ground-truth frames 1 .. frames: cut so the video is exactly `frames` long."""
    start, stop = round(clip.rate / 25), round(clip.rate * (1 + frames) / 25)
    return clip.audio[:, start:stop], clip.rate


# --- generation ------------------------------------------------------------------------------------------------

def streamed(pipe: RESTPipeline, clip: HeldOutClip, frames: int, **options) -> torch.Tensor:
    audio, rate = after_first_frame(clip, frames)
    return pipe.generate(clip.frames[0], audio, rate, seed=0, **options)


@torch.no_grad()
def non_streaming(pipe: RESTPipeline, teacher, clip: HeldOutClip, frames: int) -> torch.Tensor:
    audio, rate = after_first_frame(clip, frames)
    ref, _ = pipe.encode_reference(clip.frames[0])
    speech = pipe.encode_speech(audio, rate)
    sampler = pipe.config.sampler
    z = sample_sequence(teacher, ref, speech.latents, chunk_latents=pipe.config.chunk_latents, steps=sampler.steps,
                        cfg=sampler.cfg, shift=sampler.shift, seed=0)
    return pipe.decode_latents(ref, z, speech.video_frames)


@torch.no_grad()
def reconstructed(pipe: RESTPipeline, clip: HeldOutClip, frames: int) -> torch.Tensor:
    """Ground truth through the VAE: frame 0 primes the decoder as a portrait does, then the chunks."""
    video = clip.frames[: 1 + frames].permute(3, 0, 1, 2)[None] * 2 - 1
    z = pipe.vae.encode_video(video)
    return pipe.decode_latents(z[:, :, :1], z[:, :, 1:], frames)


# --- measuring -------------------------------------------------------------------------------------------------

def measure(frames: torch.Tensor, clip: HeldOutClip, chunk_frames: int, drift_seconds: float | None = None) -> dict:
    truth = clip.frames[1:1 + len(frames)]
    opening = mouth_openness(frames.numpy())
    row = {"lipsync": metrics.pearson(opening, clip.mouth_open[1:1 + len(frames)]),
           "psnr": metrics.psnr(frames, truth), "ssim": metrics.ssim(frames, truth),
           "seam": metrics.seam_ratio(frames, chunk_frames)}
    if drift_seconds:
        n = round(drift_seconds * 25)
        error = metrics.identity_error(frames, truth)
        row |= {"id_first": float(error[:n].mean()), "id_last": float(error[-n:].mean())}
        row["drift"] = (row["id_last"] + 1e-6) / (row["id_first"] + 1e-6)  # 1 for no error at all
    return row


def mean_rows(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


# --- contact sheets --------------------------------------------------------------------------------------------

def contact_sheet(path: Path, truth: torch.Tensor, frames: torch.Tensor, title: str):
    """Two rows over time: ground truth above, the variant below."""
    picks = np.linspace(0, len(frames) - 1, SHEET_COLUMNS).round().astype(int)
    size = frames.shape[1]
    sheet = Image.new("RGB", (SHEET_COLUMNS * size, 2 * size + 36), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), title, fill="black")
    for col, t in enumerate(picks):
        for row, video in enumerate((truth, frames)):
            pixels = (video[t].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            sheet.paste(Image.fromarray(pixels), (col * size, 16 + row * size))
        draw.text((col * size + 2, 18 + 2 * size), f"{(t + 1) / 25:.1f} s", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


# --- the report ------------------------------------------------------------------------------------------------

COLUMNS_SHORT = [("lipsync", "lip-sync r", "{:.3f}"), ("psnr", "PSNR dB", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"),
                 ("seam", "seam ratio", "{:.3f}")]


def columns_long(seconds: float) -> list:
    return COLUMNS_SHORT + [("id_first", f"id. error first {seconds:g} s", "{:.4f}"),
                            ("id_last", f"id. error last {seconds:g} s", "{:.4f}"), ("drift", "drift ratio", "{:.3f}")]


def table(results: dict[str, dict], columns) -> str:
    lines = ["| variant | " + " | ".join(c[1] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in results.items():
        lines.append(f"| {name} | " + " | ".join(fmt.format(row[k]) if k in row else "-" for k, _, fmt in columns)
                     + " |")
    return "\n".join(lines)


# What the demo model must show (issue acceptance, paper Tables 2-3): the measured row, the measure, and the test.
# Each ablation is held to the metric the paper says it hurts; long-stream rows where streams were evaluated.
TARGETS = [
    ("lip-sync r >= 0.6", "short", "full", "lipsync", lambda v, ref: v >= 0.6),
    ("identity drift <= 1.2", "long", "full", "drift", lambda v, ref: v <= 1.2),
    ("seam ratio <= 1.3", "long", "full", "seam", lambda v, ref: v <= 1.3),
    ("no ID sink drifts more", "long", "no ID sink", "drift", lambda v, ref: v > ref),
    ("no context cache has worse seams", "long", "no context cache", "seam", lambda v, ref: v > ref),
    ("student without ASD has worse lip-sync", "short", "student without ASD", "lipsync", lambda v, ref: v < ref),
]


def acceptance(short: dict, long: dict) -> list[tuple[str, str, bool]]:
    """(target, what was measured, met) for every target whose rows exist."""
    checks = []
    for target, section, variant, key, met in TARGETS:
        rows = long if section == "long" and long else short
        if variant not in rows or key not in rows[variant] or key not in rows["full"]:
            continue
        value, ref = rows[variant][key], rows["full"][key]
        measured = f"{variant}: {value:.3f}" + ("" if variant == "full" else f" vs full {ref:.3f}")
        checks.append((target, measured, bool(met(value, ref))))
    return checks


def report(out: Path, short: dict, long: dict, setup: dict, command: str) -> str:
    text = [
        "# Results: the shipped demo model on held-out synthetic clips",
        "",
        "Made by (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        f"Setup: {json.dumps(setup)}",
        "",
        f"## Training window ({setup['short_clips']} clips x {setup['short_frames']} frames)",
        "",
        table(short, COLUMNS_SHORT),
        "",
    ]
    checks = acceptance(short, long)
    if checks:
        text += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        text += [f"| {target} | {measured} | {'yes' if met else '**no**'} |" for target, measured, met in checks]
        text += [""]
    if long:
        text += [f"## Long streams ({setup['streams']} streams x {setup['stream_frames']} frames)", "",
                 table(long, columns_long(setup["drift_seconds"])), ""]
    text += ["Contact sheets (ground truth above, the variant below, first long stream or first clip): "
             + ", ".join(f"[{p.stem}](results/{p.name})" for p in sorted((out / "results").glob("*.png"))), ""]
    return "\n".join(text)


VARIANTS = {"full": {}, "no ID sink": {"id_sink": False}, "no context cache": {"context_cache": False}}


@torch.no_grad()
def evaluate(args) -> dict:
    pipe = RESTPipeline.from_pretrained(args.checkpoint, device=args.device)
    config = pipe.config
    chunk_frames = config.frames_per_chunk
    short_frames = args.chunks * chunk_frames
    others = {}
    if args.no_asd:
        others["student without ASD"] = RESTPipeline(config, load_part(args.no_asd, "dit")[0].to(args.device).eval(),
                                                     pipe.vae, pipe.speech_ae, pipe.whisper)
    teacher = load_part(args.teacher, "dit")[0].to(args.device).eval() if args.teacher else None
    out = Path(args.out)
    sheets = out / "results"
    started = time.perf_counter()

    def log(text):
        sys.stderr.write(f"[eval {time.perf_counter() - started:6.0f} s] {text}\n")

    clips = [load_clip(p, config.resolution) for p in find_videos(args.clips)[: args.max_clips]]
    clips = [c for c in clips if len(c.frames) > short_frames]
    if not clips:
        raise ValueError(f"{args.clips}: no clip longer than {short_frames + 1} frames")
    short: dict[str, list] = {}

    def add(table_rows, name, frames, clip, sheet_name=None, **kw):
        """Measure one clip of a variant; its first clip of a table draws the variant's contact sheet (the long
        streams' then replaces the training window's)."""
        table_rows.setdefault(name, []).append(measure(frames, clip, chunk_frames, **kw))
        if sheet_name and len(table_rows[name]) == 1:
            contact_sheet(sheets / f"{sheet_name}.png", clip.frames[1:1 + len(frames)], frames,
                          f"{name}: {clip.name}")

    for clip in clips:
        log(f"training window: {clip.name}")
        truth = clip.frames[1:1 + short_frames]
        add(short, "ground truth", truth, clip)
        add(short, "VAE reconstruction", reconstructed(pipe, clip, short_frames), clip)
        for name, options in VARIANTS.items():
            add(short, name, streamed(pipe, clip, short_frames, **options), clip, slug(name))
        for name, other in others.items():
            add(short, name, streamed(other, clip, short_frames), clip, slug(name))
        if teacher is not None:
            add(short, "teacher (non-streaming)", non_streaming(pipe, teacher, clip, short_frames), clip,
                "teacher")

    long: dict[str, list] = {}
    streams = []
    if args.streams:
        streams = [load_clip(p, config.resolution) for p in find_videos(args.streams)[: args.max_streams]]
    for clip in streams:
        frames = (len(clip.frames) - 1) // VAE_TEMPORAL * VAE_TEMPORAL  # whole latent frames, for the VAE row
        if frames < 2 * round(args.drift_seconds * 25):
            raise ValueError(f"{clip.name}: {frames / 25:.1f} s is too short for a first and a last "
                             f"{args.drift_seconds:g} s")
        log(f"long stream: {clip.name} ({frames / 25:.0f} s)")
        add(long, "ground truth", clip.frames[1:1 + frames], clip, drift_seconds=args.drift_seconds)
        add(long, "VAE reconstruction", reconstructed(pipe, clip, frames), clip, drift_seconds=args.drift_seconds)
        for name, options in VARIANTS.items():
            add(long, name, streamed(pipe, clip, frames, **options), clip, sheet_name=slug(name),
                drift_seconds=args.drift_seconds)
        for name, other in others.items():
            add(long, name, streamed(other, clip, frames), clip, sheet_name=slug(name),
                drift_seconds=args.drift_seconds)
    stream_frames = min(((len(c.frames) - 1) // VAE_TEMPORAL * VAE_TEMPORAL for c in streams), default=0)
    setup = {"checkpoint": Path(args.checkpoint).name, "steps": config.sampler.steps, "cfg": config.sampler.cfg,
             "seed": 0, "short_clips": len(clips), "short_frames": short_frames, "streams": len(streams),
             "stream_frames": stream_frames, "drift_seconds": args.drift_seconds, "device": args.device}
    results = {"setup": setup, "training_window": {k: mean_rows(v) for k, v in short.items()},
               "long_streams": {k: mean_rows(v) for k, v in long.items()},
               "per_clip": {"training_window": short, "long_streams": long}}
    sheets.mkdir(parents=True, exist_ok=True)
    (sheets / "results.json").write_text(json.dumps(results, indent=1))
    command = "python -m rest_core " + " ".join(shlex.quote(a) for a in args.argv)
    (out / "RESULTS.md").write_text(report(out, results["training_window"], results["long_streams"], setup, command))
    log(f"wrote {out / 'RESULTS.md'}")
    return results


def slug(name: str) -> str:
    return name.lower().replace(" ", "_").replace("(", "").replace(")", "")


def configure(p):
    p.add_argument("--checkpoint", required=True, help="the REST checkpoint to evaluate (the full student)")
    p.add_argument("--clips", required=True, help="folder of held-out synthetic clips (mp4 + json)")
    p.add_argument("--streams", default=None, help="folder of long held-out clips for drift and seams (e.g. 60 s)")
    p.add_argument("--teacher", default=None, help="the teacher's dit.safetensors (non-streaming row)")
    p.add_argument("--no-asd", default=None, help="dit.safetensors of the student trained without ASD")
    p.add_argument("--chunks", type=int, default=3, help="chunks in the training-window table")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--max-streams", type=int, default=None)
    p.add_argument("--drift-seconds", type=float, default=10.0)
    p.add_argument("--out", required=True, help="folder for RESULTS.md and results/")
    p.add_argument("--device", default="cpu")


def run(args) -> int:
    results = evaluate(args)
    for section in ("training_window", "long_streams"):
        for name, row in results[section].items():
            print(section, name, json.dumps({k: round(v, 4) for k, v in row.items()}))
    return 0
