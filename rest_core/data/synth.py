"""A procedural talking-head corpus: drawn portraits that speak espeak-ng sentences.

Real talking-head data only says what the camera saw. Here every clip is made from known parts, so the truth is
known exactly: how far the mouth is open at every frame, where the head is, when the eyes blink, what identity was
drawn. Identities (`faces.py`) vary along every axis a user's character might, in one of several drawing styles
(`drawing.py`); `--looks heldout` draws the held-out style families only, which the training generator never
produces, so evaluation can be split by style and not only by seed. No colour is reserved for the mouth: reading
lip motion back from generated pixels is the job of the mouth-opening expert (`rest_core/eval/mouth_expert.py`).

Each clip is an mp4 (H.264 yuv420p, 25 fps, AAC mono speech) plus a JSON sidecar with the same name:

    python -m rest_core synth --out corpus/ --count 1000 --seconds 8 --workers 2 [--looks train|heldout|<family>]

The sidecar: seed, looks, fps, frames, size, sample_rate, text, voice (and speech: voice, speed_wpm, pitch),
identity (every palette, shape and style parameter; shapes in head units, see faces.py; plus face_centre and
unit_px, where the face sits at rest and how many pixels one head unit is), face_box [x0, y0, x1, y1] (square,
fixed for the clip, holding face, ears, hair and hat above the chin at every frame), mouth_box [x0, y0, x1, y1]
(square, fixed: 0.8 head units around the mouth at rest, which holds the mouth at every frame of the clip's head
motion), and per frame: mouth_open (0 shut .. 1 widest), mouth_width (0 rounded .. 1 spread), blink (0 open .. 1
shut), mouth_centre [x, y], and head {dx, dy, angle, scale} (offset from the rest position, degrees clockwise about
the top of the neck, size factor). Positions are in pixels of the clip's frames, pixel (i, j) covering
[i, i + 1) x [j, j + 1). Everything, speech included, follows from the seed and the looks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import FPS
from .drawing import Painter, apply, head_extent, transforms
from .faces import HELDOUT_STYLES, TRAIN_STYLES, sample_identity, style_families

MOUTH_BOX = 0.8  # side of the mouth box in head units

# ---------------------------------------------------------------------------------------------------------------
# Speech: random sentences in random espeak-ng voices.

WORDS = {
    "noun": """time year day week morning evening night house home room door window table chair kitchen garden
        street road city town village country world river lake sea beach mountain hill forest tree flower grass
        field farm market shop school office station train bus car bicycle boat ship plane bridge park church
        library museum hospital hotel restaurant cafe letter book paper story picture song music film game ball
        dog cat horse bird fish cow sheep rabbit mouse friend family mother father sister brother child teacher
        doctor farmer driver neighbour student baker painter singer king queen captain clock phone computer
        camera radio lamp box bag basket bottle cup glass plate spoon bread cheese apple orange cake coffee tea
        water milk soup rice dinner lunch breakfast coat hat shoe shirt jacket umbrella key map ticket gift
        question answer idea plan problem reason rule voice face hand head heart mind name word colour light
        fire rain snow wind sun moon star cloud stone sand wall roof floor corner edge island valley""",
    "adj": """big small little large long short tall old new young early late quick slow fast quiet loud
        happy sad kind warm cold hot cool dry wet clean dirty bright dark light heavy soft hard easy simple strange
        busy empty full open closed green blue red yellow brown white black golden silver wooden round square
        gentle brave careful clever calm tired hungry lucky famous friendly pretty lovely nice fine good great
        wonderful beautiful quiet narrow wide deep sweet fresh ready strong""",
    "verb_past": """found saw took made gave left kept brought bought sold built painted opened closed moved
        carried cleaned watched visited followed pushed pulled washed fixed changed dropped lifted wanted needed
        liked loved helped called asked answered remembered forgot noticed counted chose caught threw held met
        heard read wrote drew""",
    "verb": """find see take make give keep bring buy sell build paint open close move carry clean watch visit
        follow push pull wash fix change drop lift want need like help call ask remember notice count choose
        catch throw hold meet hear read write draw""",
    "adverb": """slowly quickly quietly carefully gently happily suddenly finally again today yesterday early
        later soon together outside inside there here""",
    "prep": "in on under over near behind beside across along through into onto from past by",
    "name": """Anna Ben Clara David Emma Frank Grace Henry Isla Jack Kate Leo Maria Nick Olivia Peter Rose Sam
        Tom Uma Victor Wendy Zoe Oscar Lucy Max Nora Paul Ruth Simon""",
    "time": """today tomorrow yesterday tonight later soon now then""",
}
WORDS = {kind: words.split() for kind, words in WORDS.items()}

TEMPLATES = [
    "the {adj} {noun} {verb_past} {prep} the {noun}",
    "{name} {verb_past} the {adj} {noun} {adverb}",
    "did you {verb} the {noun} {time}",
    "we will {verb} a {adj} {noun} {prep} the {noun}",
    "I think the {noun} is {adj}",
    "{name} and {name} {verb_past} a {adj} {noun}",
    "{time} the {noun} was {adj} and {adj}",
    "please {verb} the {noun} {prep} my {noun}",
    "my {noun} {verb_past} your {adj} {noun} {prep} the {adj} {noun}",
    "where is the {adj} {noun}",
    "{name} said the {noun} {verb_past} the {noun} {adverb}",
    "there was a {adj} {noun} {prep} the {noun} {time}",
]

VOICES = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029", "en-us-nyc"]
VARIANTS = ["", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4"]


def sentence(rng: np.random.Generator) -> str:
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    words = []
    for piece in template.split():
        if piece.startswith("{"):
            options = WORDS[piece[1:-1]]
            piece = options[rng.integers(len(options))]
        words.append(piece)
    text = " ".join(words)
    return text[0].upper() + text[1:] + ("?" if template.startswith(("did", "where")) else ".")


def check_espeak():
    if shutil.which("espeak-ng") is None:
        raise ValueError("espeak-ng is not installed; the corpus speaks with it: apt-get install espeak-ng "
                         "(or your system's package of espeak-ng)")


def espeak(text: str, voice: str, speed: int, pitch: int, folder: str) -> tuple[np.ndarray, int]:
    """Text -> (float32 mono samples, sample rate) from espeak-ng."""
    path = os.path.join(folder, "speech.wav")
    done = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", path, text],
                          capture_output=True, text=True)
    if done.returncode != 0 or not os.path.exists(path):
        raise ValueError(f"espeak-ng failed for voice {voice}: {done.stderr.strip()}")
    with wave.open(path) as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16).reshape(-1, f.getnchannels())
        return pcm.mean(axis=1).astype(np.float32) / 32768, f.getframerate()


def speech(rng: np.random.Generator, frames: int) -> tuple[np.ndarray, int, str, dict]:
    """Sentences in one random voice, with pauses, until the clip is full; cut to exactly `frames` frames."""
    voice = VOICES[rng.integers(len(VOICES))] + VARIANTS[rng.integers(len(VARIANTS))]
    speed, pitch = int(rng.integers(130, 191)), int(rng.integers(25, 76))
    gain = float(rng.uniform(0.5, 0.95))
    pieces, texts, rate, length = [], [], None, 0
    with tempfile.TemporaryDirectory() as folder:
        lead = float(rng.uniform(0.1, 0.6))
        while rate is None or length < frames * rate / FPS:
            text = sentence(rng)
            audio, rate = espeak(text, voice, speed, pitch, folder)
            if not pieces:
                pieces.append(np.zeros(round(lead * rate), np.float32))
            pieces += [audio, np.zeros(round(rng.uniform(0.15, 0.7) * rate), np.float32)]
            texts.append(text)
            length = sum(len(p) for p in pieces)
    audio = np.concatenate(pieces)
    wanted = round(frames * rate / FPS)
    audio = np.pad(audio, (0, max(0, wanted - len(audio))))[:wanted]
    audio *= gain / max(float(np.abs(audio).max()), 1e-6)
    return audio.astype(np.float32), rate, " ".join(texts), {"voice": voice, "speed_wpm": speed, "pitch": pitch}


# ---------------------------------------------------------------------------------------------------------------
# What the face does: mouth from the audio, head motion and blinks from smooth random curves.

def frame_slices(audio: np.ndarray, rate: int, frames: int) -> list[np.ndarray]:
    """The 40 ms of audio that play while each frame is shown."""
    edges = [round(i * rate / FPS) for i in range(frames + 1)]
    return [audio[a:b] for a, b in zip(edges, edges[1:])]


def smooth3(x: np.ndarray) -> np.ndarray:
    padded = np.pad(x, 1, mode="edge")
    return 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]


def mouth_curves(audio: np.ndarray, rate: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(openness, width) per frame, both 0..1.

    Openness is the frame's RMS over the clip's loud frames, square-root compressed (quiet syllables still open the
    mouth visibly) and lightly smoothed; what falls under a small gate is shut, so silence means a closed mouth.
    Width follows the spectral centroid: bright sounds (ee, s) spread the lips, dark ones (oo, o) round them."""
    pieces = frame_slices(audio, rate, frames)
    rms = np.array([np.sqrt(np.mean(p.astype(np.float64) ** 2)) if len(p) else 0.0 for p in pieces])
    loud = rms[rms > 0.05 * rms.max()] if rms.max() > 0 else rms[:0]
    if not len(loud):
        return np.zeros(frames), np.full(frames, 0.5)
    raw = np.clip(rms / np.percentile(loud, 90), 0, 1) ** 0.5
    raw[rms < 0.02 * np.percentile(loud, 90)] = 0
    gate = 0.08
    openness = np.clip((smooth3(raw) - gate) / (1 - gate), 0, 1)

    centroid = np.zeros(frames)
    for i, p in enumerate(pieces):
        spectrum = np.abs(np.fft.rfft(p * np.hanning(len(p)))) if len(p) > 1 else np.zeros(1)
        if spectrum.sum() > 0:
            centroid[i] = (spectrum * np.fft.rfftfreq(len(p), 1 / rate)).sum() / spectrum.sum()
    bright = np.clip(np.log(np.maximum(centroid, 1) / 700) / np.log(3000 / 700), 0, 1)
    width = 0.5 + (bright - 0.5) * np.clip(raw * 2, 0, 1)  # in silence the lips rest at a neutral width
    return openness, np.clip(smooth3(width), 0, 1)


def wander(rng: np.random.Generator, frames: int, amplitude: float) -> np.ndarray:
    """A smooth random curve within +-amplitude: a few slow sinusoids (0.05-0.5 Hz) with random phases."""
    t = np.arange(frames) / FPS
    curve = np.zeros(frames)
    for _ in range(3):
        curve += rng.uniform(0.3, 1) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi))
    return amplitude * curve / 2.3  # 2.3 bounds the three-term sum, so |curve| <= amplitude


def blinks(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Eyelid closure per frame: blinks of 4-6 frames every 2-6 s, the first within 2 s."""
    closed = np.zeros(frames)
    start = rng.uniform(0.3, 2.0) * FPS
    while start < frames:
        length = int(rng.integers(4, 7))
        u = (np.arange(length) + 0.5) / length
        first = int(start)
        shape = np.clip(1.3 * np.sin(np.pi * u), 0, 1)[: max(0, frames - first)]
        closed[first:first + len(shape)] = shape
        start += rng.uniform(2, 6) * FPS
    return closed


# ---------------------------------------------------------------------------------------------------------------
# Clips.

@dataclass
class Clip:
    frames: np.ndarray  # uint8 [T, size, size, 3]
    audio: np.ndarray  # float32 mono [N], N = T * sample_rate / 25
    sample_rate: int
    truth: dict  # the sidecar


def layout(identity: dict, head_units: dict, size: int) -> tuple:
    """Place the head: (face box [x0, y0, x1, y1], head centre at rest in pixels, pixels per head unit).

    The box is the square around the head's outline over every frame of its motion, with a margin; its side is the
    identity's framing share of the frame (0.42-0.85), placed anywhere its framing offset says inside the frame."""
    outline = head_extent(identity)
    reach = np.concatenate([apply(m, outline) for m in transforms(head_units, np.zeros(2), 1.0)])
    low, high = reach.min(0), reach.max(0)
    side = (high - low).max() * 1.06
    middle = (low + high) / 2
    framing = identity["framing"]
    box_side = framing["face"] * size
    unit = box_side / side
    room = (size - box_side) / 2
    box_centre = size / 2 + np.array([framing["dx"], framing["dy"]]) * room
    centre = box_centre - unit * middle
    box = [float(box_centre[0] - box_side / 2), float(box_centre[1] - box_side / 2),
           float(box_centre[0] + box_side / 2), float(box_centre[1] + box_side / 2)]
    return box, centre, unit


def rounded(values, digits=4) -> list:
    return [round(float(v), digits) for v in np.asarray(values).ravel()]


def mouth_box(identity: dict, centre: np.ndarray, unit: float, margin: float = 1.0) -> list[float]:
    """The square of margin x MOUTH_BOX head units around the mouth at rest: [x0, y0, x1, y1] in pixels."""
    x, y = centre + unit * np.array([0.0, identity["mouth"]["height"]])
    half = margin * MOUTH_BOX * unit / 2
    return [float(x - half), float(y - half), float(x + half), float(y + half)]


def looks_seed(seed: int, looks: str) -> list[int]:
    """The random streams of a clip: the training generator's clip `seed` keeps its own stream; other looks mix
    their name in, so the held-out clip with the same seed is another person."""
    return [seed] if looks == "train" else [seed, *looks.encode()]


def render_clip(seed: int, seconds: float, size: int = 256, looks: str = "train") -> Clip:
    """One clip, entirely determined by (seed, seconds, size, looks): round(seconds * 25) frames of size x size
    pixels, the speech (espeak-ng) cut to exactly as long, and the sidecar."""
    frames = round(seconds * FPS)
    if frames < 1 or size < 16:
        raise ValueError(f"a clip needs at least one frame and 16 pixels (got {seconds} s, {size} px)")
    style_families(looks)
    check_espeak()
    identity_rng, moves, talk = np.random.default_rng(looks_seed(seed, looks)).spawn(3)
    identity = sample_identity(identity_rng, looks)

    # head motion in head units first: the layout needs the head's full reach to fit the face box around it
    head_units = {"dx": wander(moves, frames, moves.uniform(0.03, 0.08)),
                  "dy": wander(moves, frames, moves.uniform(0.02, 0.06)),
                  "angle": wander(moves, frames, moves.uniform(1.5, 4.5)),
                  "scale": 1 + wander(moves, frames, moves.uniform(0.01, 0.03))}
    blink = blinks(moves, frames)
    box, centre, unit = layout(identity, head_units, size)
    head = dict(head_units, dx=head_units["dx"] * unit, dy=head_units["dy"] * unit)

    audio, rate, text, voice = speech(talk, frames)
    openness, width = mouth_curves(audio, rate, frames)

    maps = transforms(head, centre, unit)
    painter = Painter(identity, size, centre, unit)
    pictures = np.stack([painter.frame(maps[i], openness[i], width[i], blink[i]) for i in range(frames)])
    mouth_centre = np.stack([apply(m, np.array([0.0, identity["mouth"]["height"]])) for m in maps])

    truth = {
        "seed": int(seed), "looks": looks, "fps": FPS, "frames": frames, "size": size, "sample_rate": rate,
        "text": text, "voice": voice["voice"], "speech": voice,
        "identity": dict(identity, face_centre=rounded(centre, 2), unit_px=round(float(unit), 4)),
        "face_box": rounded(box, 2), "mouth_box": rounded(mouth_box(identity, centre, unit), 2),
        "mouth_open": rounded(openness), "mouth_width": rounded(width),
        "head": {"dx": rounded(head["dx"], 3), "dy": rounded(head["dy"], 3), "angle": rounded(head["angle"], 3),
                 "scale": rounded(head["scale"], 5)},
        "blink": rounded(blink),
        "mouth_centre": [rounded(p, 2) for p in mouth_centre],
    }
    return Clip(pictures, audio, rate, truth)


def render_portrait(seed: int, size: int = 256, looks: str = "train") -> tuple[np.ndarray, list[float]]:
    """The speaker of clip `seed` at rest, mouth shut, eyes open, as a still: (uint8 [size, size, 3], its mouth box).
    No speech, so no espeak-ng: for checks that need a portrait the model knows and any audio."""
    style_families(looks)
    identity = sample_identity(np.random.default_rng(looks_seed(seed, looks)).spawn(3)[0], looks)
    at_rest = {"dx": np.zeros(1), "dy": np.zeros(1), "angle": np.zeros(1), "scale": np.ones(1)}
    _, centre, unit = layout(identity, at_rest, size)
    picture = Painter(identity, size, centre, unit).frame(transforms(at_rest, centre, unit)[0], 0.0, 0.5, 0.0)
    return picture, mouth_box(identity, centre, unit)


def write_clip(clip: Clip, path) -> tuple[Path, Path]:
    """Write `<path>.mp4` (H.264 crf 18 + AAC) and `<path>.json`. Each lands under its final name only when
    complete, the json last, so a clip with both files is a finished clip."""
    import torch

    from ..media import VideoWriter

    path = Path(path)
    video, sidecar = path.with_name(path.name + ".mp4"), path.with_name(path.name + ".json")
    partial = path.with_name(path.name + ".partial.mp4")
    writer = VideoWriter(partial, FPS, audio_rate=clip.sample_rate, audio_channels=1, crf=18)
    try:
        for start in range(0, len(clip.frames), 25):
            writer.write(torch.from_numpy(clip.frames[start:start + 25]).float() / 255)
    finally:
        writer.close(torch.from_numpy(clip.audio)[None])
    os.replace(partial, video)
    partial = path.with_name(path.name + ".partial.json")
    partial.write_text(json.dumps(clip.truth))
    os.replace(partial, sidecar)
    return video, sidecar


# ---------------------------------------------------------------------------------------------------------------
# Command line.

def configure(parser):
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--out", required=True, help="folder for clip_<seed>.mp4 and clip_<seed>.json")
    parser.add_argument("--count", type=int, default=100, help="how many clips (default 100)")
    parser.add_argument("--first-seed", type=int, default=0, help="clips use seeds first..first+count-1")
    parser.add_argument("--seconds", type=float, default=8.0, help="clip length (default 8)")
    parser.add_argument("--size", type=int, default=256, help="square frame size in pixels (default 256)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering in parallel (default 1)")
    parser.add_argument("--looks", default="train",
                        help=f"drawing styles: train (the training generator: {', '.join(TRAIN_STYLES)}), heldout "
                             f"(never in training: {', '.join(HELDOUT_STYLES)}) or one family's name")


def clip_name(seed: int) -> str:
    return f"clip_{seed:07d}"


def make(job: tuple) -> int:
    seed, seconds, size, looks, out = job
    write_clip(render_clip(seed, seconds, size, looks), Path(out) / clip_name(seed))
    return seed


def quiet_worker():
    import torch

    torch.set_num_threads(1)  # the parallelism is the pool's processes


def run(args) -> int:
    if args.count < 1:
        raise ValueError(f"--count must be at least 1 (got {args.count})")
    if args.first_seed < 0:
        raise ValueError(f"--first-seed must be 0 or more (got {args.first_seed})")
    if not 0.04 <= args.seconds <= 3600:
        raise ValueError(f"--seconds must be between 0.04 (one frame) and 3600 (got {args.seconds})")
    if args.size < 32 or args.size % 2:
        raise ValueError(f"--size must be an even number of pixels, 32 or more, for H.264 (got {args.size})")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1 (got {args.workers})")
    style_families(args.looks)
    check_espeak()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder")
    out.mkdir(parents=True, exist_ok=True)

    seeds = range(args.first_seed, args.first_seed + args.count)
    todo = [s for s in seeds
            if not ((out / f"{clip_name(s)}.mp4").exists() and (out / f"{clip_name(s)}.json").exists())]
    skipped = args.count - len(todo)
    if skipped:
        sys.stderr.write(f"{skipped} of {args.count} clips already in {out}, skipped\n")
    jobs = [(s, args.seconds, args.size, args.looks, str(out)) for s in todo]
    started, done = time.perf_counter(), 0

    def report():
        rate = done / max(time.perf_counter() - started, 1e-9)
        sys.stderr.write(f"\rsynth: {done + skipped}/{args.count} clips, {rate:.2f} clips/s")
        sys.stderr.flush()

    if args.workers == 1 or len(jobs) <= 1:
        for job in jobs:
            make(job)
            done += 1
            report()
    else:
        import multiprocessing

        # spawn, not fork: the parent has torch loaded, and forked OpenMP thread pools can hang
        with multiprocessing.get_context("spawn").Pool(args.workers, initializer=quiet_worker) as pool:
            for _ in pool.imap_unordered(make, jobs):
                done += 1
                report()
    sys.stderr.write(f"\nwrote {done} clips to {out}\n")
    return 0
