"""`python -m rest_core eval`: the trained model against held-out clips, held-out style families and photographs,
with the paper's ablations.

    python -m rest_core eval --checkpoint models/rest-demo.safetensors --clips corpus/heldout \
        --streams corpus/heldout-60s --families corpus/families-60s --photos \
        --teacher runs/demo/teacher/dit.safetensors --no-asd runs/demo/student-noasd/dit.safetensors --out docs

Every clip's first frame (cropped as the training clips were, `--crop`) is the portrait; the speech starts one
frame later, so generated frame t is ground-truth frame t + 1. Tables:

- training window: each held-out clip cut to K chunks (the length the teacher was trained on), for the streaming
  student and its ablations and the non-streaming teacher, which denoises all K chunks at once;
- long streams (e.g. 60 s): the streaming variants only (a non-streaming model has no stream), with identity
  drift = identity error over the last 10 s / over the first 10 s;
- held-out style families (`--families`: clips of `synth --looks heldout`, drawing styles the training generator
  never produces), one table per family, long streams as above;
- photographs (`--photos`): the public-domain portraits of `rest_core.data.images`, each speaking the speech of
  the first family clip (or long stream); with no ground-truth video, drift is measured against the portrait. A
  model that draws the mouth's shape gets one more row, "full, mouth given": the photograph's mouth box given, as a
  user paints it into REST Reference Encoder's `mouth_mask` (the targets hold the "full" row, the mouth found).

Every row has appearance fidelity (PSNR against the portrait outside the mouth box, at the best shift within
1/32 of the width, `metrics.appearance_fidelity`) and lip-sync: Pearson r between the opening the mouth-opening
expert (`rest_core.eval.mouth_expert`) reads off the frames and the true opening under the speech.

Variants: full (ID sink + context cache), no ID sink, no context cache (the same weights with that part of the
cache switched off at inference, Table 2), student trained without ASD (Table 3), teacher. Two reference rows
calibrate the measurements: the ground truth itself and its VAE reconstruction (the best any generation through
this VAE can do). Writes OUT/RESULTS.md, OUT/results/results.json and contact sheets.
"""

from __future__ import annotations

import copy
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import metrics
from ..checkpoint import DTYPES, load_part
from ..config import FPS, VAE_TEMPORAL
from ..data.faces import FRAMING
from ..data.images import PORTRAITS, photo
from ..data.heldout import HeldOutClip, clips_in, each_clip
from ..data.face_code import encode_stream
from ..data.prepare import CROPS, crop_resize
from ..media import to_uint8
from .mouth_expert import MouthExpert, load_expert, read_openness
from ..pipeline import RESTPipeline
from ..reference import CropBox, Reference
from ..streams import decode_latents
from ..sampling import sample_sequence
from ..vae import CausalVAE

SHEET_COLUMNS = 8  # a 60 s stream every 8.5 s: enough to see a face drift or a blot grow
SHEET_SUFFIX = ".jpg"  # contact sheets: see contact_sheet
SHEET_QUALITY = 80
FIDELITY_FRAMES = 100  # frames (evenly spaced) that appearance fidelity is measured on


def photo_square(name: str, crop: str = CROPS[0]) -> CropBox:
    """The portrait cut from a photograph: its face box ("face"), or ("full") the square that frames the face box
    as the synthetic corpus frames its faces, at the middle of its framings, moved inside the photograph."""
    x0, y0, x1, y1 = PORTRAITS[name].face_box
    if crop == "face":
        return CropBox(top=y0, left=x0, size=x1 - x0)
    height, width = photo(name).shape[:2]
    size = min(round((x1 - x0) / (sum(FRAMING) / 2)), height, width)
    top = min(max(round((y0 + y1 - size) / 2), 0), height - size)
    left = min(max(round((x0 + x1 - size) / 2), 0), width - size)
    return CropBox(top=top, left=left, size=size)


def photo_clip(name: str, speech: HeldOutClip, resolution: int, crop: str = CROPS[0]) -> HeldOutClip:
    """A photograph as a clip with no ground-truth video: its portrait square (`photo_square`) is the portrait,
    `speech`'s audio and true mouth opening the speech."""
    entry = PORTRAITS[name]
    crop = photo_square(name, crop)
    portrait = crop_resize(np.array(photo(name)[None]), crop, resolution)  # a copy: the cached photo is read-only
    return HeldOutClip(f"photo {name}", torch.from_numpy(portrait).float() / 255, speech.audio, speech.rate,
                       speech.mouth_open, crop.map(entry.mouth_box, resolution), "photograph")


def truth_or_portrait(clip: HeldOutClip, frames: int) -> torch.Tensor:
    """What `frames` generated frames are compared with: the ground truth under them, or for a clip without video
    (a photograph) the portrait held still.  [frames, R, R, 3]"""
    if len(clip.frames) > frames:
        return clip.frames[1:1 + frames]
    return clip.frames[0].expand(frames, -1, -1, -1)


def whole_latent_frames(clip: HeldOutClip) -> int:
    """Video frames after the portrait, cut to whole latent frames (so the VAE row covers them all)."""
    return (len(clip.frames) - 1) // VAE_TEMPORAL * VAE_TEMPORAL


def after_first_frame(clip: HeldOutClip, frames: int) -> tuple[torch.Tensor, int]:
    """The speech under ground-truth frames 1 .. frames: cut so the video is exactly `frames` long."""
    start, stop = round(clip.rate / FPS), round(clip.rate * (1 + frames) / FPS)
    return clip.audio[:, start:stop], clip.rate


# --- generation ------------------------------------------------------------------------------------------------

def streamed(pipe: RESTPipeline, clip: HeldOutClip, frames: int, mouth=None, **changes) -> torch.Tensor:
    """The clip made by streaming, with the model's options at seed 0 and `changes` (an ablation's switch);
    `mouth`: the portrait's mouth box, given as a user gives it (else the model finds the mouth)."""
    audio, rate = after_first_frame(clip, frames)
    return pipe.generate(clip.frames[0], audio, rate, options=pipe.options(seed=0, **changes), mouth=mouth)


@torch.no_grad()
def non_streaming(pipe: RESTPipeline, teacher, clip: HeldOutClip, frames: int) -> torch.Tensor:
    audio, rate = after_first_frame(clip, frames)
    ref, _ = pipe.encode_reference(clip.frames[0])
    speech = pipe.encode_speech(audio, rate)
    z = sample_sequence(teacher, ref.latent, speech.latents, chunk_latents=pipe.config.chunk_latents,
                        options=pipe.options(seed=0))
    return pipe.decode_latents(ref, z, speech.video_frames)


@torch.no_grad()
def reconstructed(vae: CausalVAE, clip: HeldOutClip, frames: int, chunk_latents: int) -> torch.Tensor:
    """Ground truth through the VAE: frame 0 is the portrait (of a reference-conditioned VAE too: the frames after
    it are other moments of the clip) and primes the decoder as a portrait does, then the chunks.  A clip without
    video (a photograph) is its portrait held still. A coded VAE is given the true code (a clip of the synthetic
    corpus has it in its sidecar; a still portrait is at rest, its head unmoved)."""
    video = truth_or_portrait(clip, frames)
    p = next(vae.parameters())
    video = (torch.cat([clip.frames[:1], video]).permute(3, 0, 1, 2)[None] * 2 - 1).to(p.device, p.dtype)
    portrait = video[:, :, 0]
    code = None
    if vae.config.mouth_code:  # the code the DiT's latents would carry: the clip's truth, a still one's at rest
        code = clip.face_truth(1 + frames).code(range(1 + frames), 0, video.shape[-2:], vae.config.pose_code)
        code = code.to(video.device)
    z = vae.normalize(encode_stream(vae, video, code))
    return decode_latents(vae, Reference(z[:, :, :1], portrait), z[:, :, 1:], chunk_latents, frames)


# --- measuring -------------------------------------------------------------------------------------------------

def measure(frames: torch.Tensor, clip: HeldOutClip, chunk_frames: int, expert: MouthExpert,
            drift_seconds: float | None = None) -> dict:
    """One variant's frames against the clip. Without ground-truth video (a photograph) the truth columns are
    left out and drift is measured against the portrait."""
    portrait = clip.frames[0]
    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), FIDELITY_FRAMES)).round().astype(int))
    row = {"fidelity": float(metrics.appearance_fidelity(frames[picks], portrait, clip.mouth_box).mean()),
           "lipsync": metrics.pearson(read_openness(expert, frames, clip.mouth_box, portrait),
                                      clip.mouth_open[1:1 + len(frames)]),
           "seam": metrics.seam_ratio(frames, chunk_frames)}
    truth = truth_or_portrait(clip, len(frames))
    if len(clip.frames) > len(frames):
        row |= {"psnr": metrics.psnr(frames, truth), "ssim": metrics.ssim(frames, truth),
                "mouth_motion": metrics.mouth_motion(frames, truth, clip.mouth_box)}
    if drift_seconds:
        n = round(drift_seconds * FPS)
        error = metrics.identity_error(frames, truth)
        row |= {"id_first": float(error[:n].mean()), "id_last": float(error[-n:].mean())}
        row["drift"] = (row["id_last"] + 1e-6) / (row["id_first"] + 1e-6)  # 1 for no error at all
    return row


def mean_rows(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


# --- contact sheets --------------------------------------------------------------------------------------------

def contact_sheet(path: Path, truth: torch.Tensor, frames: torch.Tensor, title: str):
    """Two rows over time: ground truth above, the variant below, written to `path`.jpg (JPEG: one evaluation's 256 px
    sheets are about 20 MB as PNG, a fifth of that as JPEG, and they are committed beside RESULTS.md, so each
    regeneration adds them to the repository again: the eight kept of rest-demo's took 1.42 MB at 8 columns and
    quality 80, 2.47 MB at 12 and 85)."""
    picks = np.linspace(0, len(frames) - 1, SHEET_COLUMNS).round().astype(int)
    size = frames.shape[1]
    sheet = Image.new("RGB", (SHEET_COLUMNS * size, 2 * size + 36), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), title, fill="black")
    for col, t in enumerate(picks):
        for row, video in enumerate((truth, frames)):
            pixels = to_uint8(video[t]).numpy()
            sheet.paste(Image.fromarray(pixels), (col * size, 16 + row * size))
        draw.text((col * size + 2, 18 + 2 * size), f"{(t + 1) / FPS:.1f} s", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path.with_name(path.name + SHEET_SUFFIX), quality=SHEET_QUALITY)


# --- the report ------------------------------------------------------------------------------------------------

COLUMNS_SHORT = [("fidelity", "appearance fidelity dB", "{:.2f}"), ("lipsync", "lip-sync r", "{:.3f}"),
                 ("mouth_motion", "mouth motion", "{:.2f}"), ("psnr", "PSNR dB", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"),
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


# What the demo model must show (docs/MODEL_CARD.md, paper Tables 2-3): the measured row, the measure, and the test.
# Each ablation is held to the metric the paper says it hurts; long-stream rows where streams were evaluated.
TARGETS = [
    ("lip-sync r >= 0.6", "short", "full", "lipsync", lambda v, ref: v >= 0.6),
    ("identity drift <= 1.2", "long", "full", "drift", lambda v, ref: v <= 1.2),
    ("seam ratio <= 1.3", "long", "full", "seam", lambda v, ref: v <= 1.3),
    ("no ID sink drifts more", "long", "no ID sink", "drift", lambda v, ref: v > ref),
    ("no context cache has worse seams", "long", "no context cache", "seam", lambda v, ref: v > ref),
    ("student without ASD has worse lip-sync", "short", "student without ASD", "lipsync", lambda v, ref: v < ref),
]
# Held to every held-out style family, and to every photograph: a one-shot model keeps a look it never saw.
FAMILY_TARGETS = [
    ("appearance fidelity >= 26 dB", "full", "fidelity", lambda v: v >= 26),
    ("VAE reconstruction PSNR >= 28 dB", "VAE reconstruction", "psnr", lambda v: v >= 28),
    ("lip-sync r >= 0.55", "full", "lipsync", lambda v: v >= 0.55),
    ("identity drift <= 1.2", "full", "drift", lambda v: v <= 1.2),
    ("seam ratio <= 1.3", "full", "seam", lambda v: v <= 1.3),
]
PHOTO_TARGETS = [("appearance fidelity >= 24 dB", "full", "fidelity", lambda v: v >= 24)]


def acceptance(short: dict, long: dict, families: dict | None = None,
               photographs: dict | None = None) -> list[tuple[str, str, bool]]:
    """(target, what was measured, met) for every target whose rows exist."""
    checks = []
    for target, section, variant, key, met in TARGETS:
        rows = long if section == "long" and long else short
        if variant not in rows or key not in rows[variant] or key not in rows["full"]:
            continue
        value, ref = rows[variant][key], rows["full"][key]
        measured = f"{variant}: {value:.3f}" + ("" if variant == "full" else f" vs full {ref:.3f}")
        checks.append((target, measured, bool(met(value, ref))))
    for group, targets in ((families or {}, FAMILY_TARGETS), (photographs or {}, PHOTO_TARGETS)):
        for name, rows in group.items():
            for target, variant, key, met in targets:
                if key in rows.get(variant, {}):
                    value = rows[variant][key]
                    checks.append((f"{name}: {target}", f"{variant}: {value:.3f}", bool(met(value))))
    return checks


def report(out: Path, results: dict, command: str) -> str:
    setup, short, long = results["setup"], results["training_window"], results["long_streams"]
    families, photographs = results["families"], results["photographs"]
    text = [
        "# Results: the shipped demo model on held-out clips, held-out style families and photographs",
        "",
        "Made by (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        f"Setup: {json.dumps(setup)}",
        "",
    ]
    checks = acceptance(short, long, families, photographs)
    if checks:
        text += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        text += [f"| {target} | {measured} | {'yes' if met else '**no**'} |" for target, measured, met in checks]
        text += [""]
    if short:
        text += [f"## Training window ({setup['short_clips']} clips x {setup['short_frames']} frames)", "",
                 table(short, COLUMNS_SHORT), ""]
    if long:
        text += [f"## Long streams ({setup['streams']} streams x {setup['stream_frames']} frames)", "",
                 table(long, columns_long(setup["drift_seconds"])), ""]
    for family, rows in families.items():
        count = setup["family_clips"][family]
        text += [f"## Held-out style family: {family} ({count} streams)", "",
                 table(rows, columns_long(setup["drift_seconds"])), ""]
    for name, rows in photographs.items():
        text += [f"## Photograph: {name} ({PORTRAITS[name].source})", "",
                 table(rows, columns_long(setup["drift_seconds"])), ""]
    text += ["Contact sheets (ground truth or the portrait above, the variant below; first clip of each table): "
             + ", ".join(f"[{p.stem}](results/{p.name})"
                         for p in sorted((out / "results").glob("*" + SHEET_SUFFIX))), ""]
    return "\n".join(text)


VARIANTS = {"full": {}, "no ID sink": {"id_sink": False}, "no context cache": {"context_cache": False}}
MOUTH_GIVEN = "full, mouth given"  # a photograph's row of a model that draws the mouth: its mouth box given


@torch.no_grad()
def evaluate(args) -> dict:
    dtype = DTYPES[args.dtype]
    pipe = RESTPipeline.from_pretrained(args.checkpoint, device=args.device)
    # the reconstruction row encodes whole clips, which generation never does, in float32 from the checkpoint's own
    # weights (a copy taken before the cast): oneDNN had no bfloat16 kernel for the encoder's 3-D convolutions at
    # 256 px (2-core AMD EPYC)
    recon_vae = pipe.vae if dtype == torch.float32 else copy.deepcopy(pipe.vae)
    pipe = pipe.to(args.device, dtype)
    expert = load_expert(args.expert)
    config = pipe.config
    chunk_frames = config.frames_per_chunk
    short_frames = args.chunks * chunk_frames
    others = {}
    if args.no_asd:
        no_asd = load_part(args.no_asd, "dit")[0].to(args.device, dtype).eval()
        others["student without ASD"] = RESTPipeline(config, no_asd, pipe.vae, pipe.speech_ae, pipe.whisper)
    teacher = load_part(args.teacher, "dit")[0].to(args.device, dtype).eval() if args.teacher else None
    out = Path(args.out)
    sheets = out / "results"
    started = time.perf_counter()

    def log(text):
        sys.stderr.write(f"[eval {time.perf_counter() - started:6.0f} s] {text}\n")

    clips = clips_in(args.clips, config.resolution, args.crop, args.max_clips)
    clips = [c for c in clips if len(c.frames) > short_frames]
    if args.clips and not clips:
        raise ValueError(f"{args.clips}: no clip longer than {short_frames + 1} frames")
    if not (args.clips or args.streams or args.families):
        raise ValueError("nothing to evaluate: give --clips, --streams or --families")
    short: dict[str, list] = {}

    def add(table_rows, name, frames, clip, sheet_name=None, **kw):
        """Measure one clip of a variant; its first clip of a table draws the variant's contact sheet (the long
        streams' then replaces the training window's)."""
        table_rows.setdefault(name, []).append(measure(frames, clip, chunk_frames, expert, **kw))
        if sheet_name and len(table_rows[name]) == 1:
            contact_sheet(sheets / sheet_name, truth_or_portrait(clip, len(frames)), frames,
                          f"{name}: {clip.name}")

    def stream_variants(with_others: bool) -> dict:
        """name -> make(clip, frames): the checkpoint under each ablation's switch (and the other models)."""
        made = {name: (lambda c, n, o=changes: streamed(pipe, c, n, **o)) for name, changes in VARIANTS.items()}
        if with_others:
            made |= {name: (lambda c, n, p=other: streamed(p, c, n)) for name, other in others.items()}
        return made

    def measure_clip(rows: dict, clip: HeldOutClip, frames: int, variants: dict, sheet_prefix: str = "",
                     with_truth: bool = True, **kw):
        """One clip: its ground truth and VAE reconstruction (a clip with video), then every variant made."""
        if with_truth:
            add(rows, "ground truth", clip.frames[1:1 + frames], clip, **kw)
            add(rows, "VAE reconstruction", reconstructed(recon_vae, clip, frames, config.chunk_latents), clip, **kw)
        for name, make in variants.items():
            add(rows, name, make(clip, frames), clip, sheet_prefix + slug(name), **kw)

    def long_stream(rows: dict, clip: HeldOutClip, variants: dict, sheet_prefix: str):
        frames = whole_latent_frames(clip)
        if frames < 2 * round(args.drift_seconds * FPS):
            raise ValueError(f"{clip.name}: {frames / FPS:.1f} s is too short for a first and a last "
                             f"{args.drift_seconds:g} s")
        log(f"long stream: {clip.name} ({frames / FPS:.0f} s)")
        measure_clip(rows, clip, frames, variants, sheet_prefix, drift_seconds=args.drift_seconds)

    short_variants = stream_variants(True)
    if teacher is not None:
        short_variants["teacher (non-streaming)"] = lambda c, n: non_streaming(pipe, teacher, c, n)
    for clip in clips:
        log(f"training window: {clip.name}")
        measure_clip(short, clip, short_frames, short_variants)

    # long clips are read one at a time (each_clip); the photographs speak the first family clip's speech, else the
    # first stream's
    long: dict[str, list] = {}
    stream_lengths, first_stream, first_family = [], None, None
    for clip in each_clip(args.streams, config.resolution, args.crop, args.max_streams):
        long_stream(long, clip, stream_variants(True), "")
        stream_lengths.append(whole_latent_frames(clip))
        first_stream = first_stream or clip

    families: dict[str, dict[str, list]] = {}
    for clip in each_clip(args.families, config.resolution, args.crop):
        rows = families.setdefault(clip.family, {})
        if len(rows.get("full", [])) < args.max_streams_per_family:
            long_stream(rows, clip, stream_variants(False), f"family_{clip.family}_")
        first_family = first_family or clip

    photographs: dict[str, dict[str, list]] = {}
    if args.photos:
        speech = first_family or first_stream
        if speech is None:
            raise ValueError("--photos needs the speech of a --families or --streams clip")
        for name in PORTRAITS:
            clip = photo_clip(name, speech, config.resolution, args.crop)
            frames = whole_latent_frames(speech)
            log(f"photograph: {name} ({frames / FPS:.0f} s)")
            variants = stream_variants(False)
            if config.vae.mouth_shape:  # the model finds the mouth; a user can also give it (REST Reference Encoder)
                variants[MOUTH_GIVEN] = lambda c, n: streamed(pipe, c, n, mouth=c.mouth_box)
            measure_clip(photographs.setdefault(name, {}), clip, frames, variants, f"photo_{name}_",
                         with_truth=False, drift_seconds=args.drift_seconds)

    stream_frames = min(stream_lengths, default=0)
    setup = {"checkpoint": Path(args.checkpoint).name, "steps": config.sampler.steps, "cfg": config.sampler.cfg,
             "context_noise": config.sampler.context_noise, "seed": 0, "short_clips": len(clips),
             "short_frames": short_frames, "streams": len(stream_lengths), "stream_frames": stream_frames,
             "drift_seconds": args.drift_seconds, "device": args.device, "dtype": args.dtype,
             "family_clips": {f: len(rows["full"]) for f, rows in families.items()},
             "expert": Path(args.expert).name if args.expert else "the shipped mouth expert"}

    def means(section: dict) -> dict:
        return {k: mean_rows(v) for k, v in section.items()}

    results = {"setup": setup, "training_window": means(short), "long_streams": means(long),
               "families": {f: means(rows) for f, rows in families.items()},
               "photographs": {p: means(rows) for p, rows in photographs.items()},
               "per_clip": {"training_window": short, "long_streams": long, "families": families,
                            "photographs": photographs}}
    sheets.mkdir(parents=True, exist_ok=True)
    (sheets / "results.json").write_text(json.dumps(results, indent=1))
    command = "python -m rest_core " + " ".join(shlex.quote(a) for a in args.argv)
    (out / "RESULTS.md").write_text(report(out, results, command))
    log(f"wrote {out / 'RESULTS.md'}")
    return results


def evaluate_vae(args) -> dict:
    """The VAE stage alone, before any DiT is trained on it: the first `--vae-frames` frames of every clip
    reconstructed (streamed as the product decodes them) and measured as `measure` measures the whole model's
    "VAE reconstruction" row (PSNR, SSIM, lip-sync, mouth motion, ...), by style family; every photograph held still
    (PSNR and SSIM against itself). Writes OUT/results/vae.json and a contact sheet per family."""
    vae, config = load_part(args.vae, "vae")
    vae = vae.to(args.device).eval()
    expert = load_expert(args.expert)
    sheets = Path(args.out) / "results"
    sheets.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list] = {}

    def add(group: str, clip: HeldOutClip, frames: int):
        recon = reconstructed(vae, clip, frames, config.chunk_latents)
        truth = truth_or_portrait(clip, frames)
        if len(clip.frames) > frames:
            row = measure(recon, clip, config.frames_per_chunk, expert)
        else:  # a photograph: no video, no speech of its own, so only how well it is kept
            row = {"psnr": metrics.psnr(recon, truth), "ssim": metrics.ssim(recon, truth)}
        rows.setdefault(group, []).append(row)
        if len(rows[group]) == 1:
            contact_sheet(sheets / f"vae_{slug(group)}", truth, recon, f"VAE reconstruction: {clip.name}")

    clips = [c for folder in (args.clips, args.streams, args.families)
             for c in clips_in(folder, config.resolution, args.crop)]
    for clip in clips:
        add(clip.family, clip, min(whole_latent_frames(clip), args.vae_frames))
    if args.photos:
        if not clips:
            raise ValueError("--photos needs a --clips, --streams or --families clip for its length")
        for name in PORTRAITS:
            add(f"photo {name}", photo_clip(name, clips[0], config.resolution, args.crop), args.vae_frames)
    if not rows:
        raise ValueError("nothing to evaluate: give --clips, --streams, --families or --photos")
    results = {"vae": Path(args.vae).name, "frames": args.vae_frames, "crop": args.crop,
               "groups": {group: mean_rows(r) | {"clips": len(r)} for group, r in rows.items()}}
    (sheets / "vae.json").write_text(json.dumps(results, indent=1))
    return results


def slug(name: str) -> str:
    return name.lower().replace(",", "").replace(" ", "_").replace("(", "").replace(")", "")


def configure(p):
    p.add_argument("--checkpoint", default=None, help="the REST checkpoint to evaluate (the full student)")
    p.add_argument("--vae", default=None, help="instead of --checkpoint: a VAE stage's vae.safetensors, measured "
                                               "alone (reconstruction by family and of the photographs)")
    p.add_argument("--vae-frames", type=int, default=48, help="frames per clip for --vae")
    p.add_argument("--clips", default=None, help="folder of held-out synthetic clips (mp4 + json)")
    p.add_argument("--streams", default=None, help="folder of long held-out clips for drift and seams (e.g. 60 s)")
    p.add_argument("--families", default=None, help="folder of long clips of the held-out style families "
                                                    "(synth --looks heldout): a table per family")
    p.add_argument("--max-streams-per-family", type=int, default=2)
    p.add_argument("--photos", action="store_true", help="also animate the public-domain photographs")
    p.add_argument("--crop", choices=CROPS, default=CROPS[0],
                   help="the square cut from each clip and photograph, as `prepare clips --crop` cut the training "
                        "clips (default: full)")
    p.add_argument("--teacher", default=None, help="the teacher's dit.safetensors (non-streaming row)")
    p.add_argument("--no-asd", default=None, help="dit.safetensors of the student trained without ASD")
    p.add_argument("--chunks", type=int, default=3, help="chunks in the training-window table")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--max-streams", type=int, default=None)
    p.add_argument("--drift-seconds", type=float, default=10.0)
    p.add_argument("--out", required=True, help="folder for RESULTS.md and results/")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32",
                   help="the model's dtype (bfloat16: what the ComfyUI nodes' auto picks on a CPU with native "
                        "bfloat16; the frames are measured in float32 either way)")
    p.add_argument("--expert", default=None, help="mouth-opening expert for lip-sync (default: the shipped "
                                                  "rest_core/eval/mouth_expert.safetensors)")


def run(args) -> int:
    if (args.checkpoint is None) == (args.vae is None):
        raise ValueError("give --checkpoint (the whole model) or --vae (a VAE stage alone)")
    if args.vae_frames < VAE_TEMPORAL or args.vae_frames % VAE_TEMPORAL:
        raise ValueError(f"--vae-frames {args.vae_frames}: give a multiple of {VAE_TEMPORAL} (whole latent frames "
                         f"after the portrait), for example 48")
    if args.vae:
        for group, row in evaluate_vae(args)["groups"].items():
            print("vae", group, json.dumps({k: round(v, 4) for k, v in row.items()}))
        return 0
    results = evaluate(args)
    for section in ("training_window", "long_streams"):
        for name, row in results[section].items():
            print(section, name, json.dumps({k: round(v, 4) for k, v in row.items()}))
    for section in ("families", "photographs"):
        for group, rows in results[section].items():
            for name, row in rows.items():
                print(section, group, name, json.dumps({k: round(v, 4) for k, v in row.items()}))
    return 0
