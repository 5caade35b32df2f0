"""A procedural talking-head corpus: cartoon portraits that speak espeak-ng sentences.

Real talking-head data only says what the camera saw. Here every clip is made from known parts, so the truth is
known exactly: how far the mouth is open at every frame, where the head is, when the eyes blink, what identity was
drawn. A model trained or evaluated on this corpus can therefore be measured directly for lip-sync (mouth versus
speech energy), identity drift (palette and shape versus the reference frame) and seams between chunks (motion that
should be smooth). `mouth_openness` reads the mouth back from pixels alone, which makes the same lip-sync measurement
work on generated frames: the mouth interior is one colour that nothing else in the corpus comes near.

Each clip is an mp4 (H.264 yuv420p, 25 fps, AAC mono speech) plus a JSON sidecar with the same name:

    python -m rest_core synth --out corpus/ --count 1000 --seconds 8 --workers 2

The sidecar: seed, fps, frames, size, sample_rate, text, voice (and speech: voice, speed_wpm, pitch), identity
(every palette and shape parameter; shapes in head units, see below; plus face_centre and unit_px, where the face sits
at rest and how many pixels one head unit is), mouth_colour, face_box [x0, y0, x1, y1] (square, fixed for the clip,
holding face, ears and hair above the chin at every frame), and per frame: mouth_open (0 shut .. 1 widest),
mouth_width (0 rounded .. 1 spread), blink (0 open .. 1 shut), mouth_centre [x, y], and head {dx, dy, angle, scale}
(offset from the rest position, degrees clockwise about the top of the neck, size factor). Positions are in pixels of
the clip's frames, pixel (i, j) covering [i, i + 1) x [j, j + 1). Everything, speech included, follows from the seed.
"""

from __future__ import annotations

import colorsys
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

FPS = 25

# The mouth interior: a bright, saturated magenta. Skin, lips, hair, eyes, clothes and backgrounds are all kept at
# least PALETTE_MARGIN away from it (and every blend of two of them at least BLEND_MARGIN away), so a pixel this
# colour is mouth and nothing else, even after blur or video compression.
MOUTH = (220, 0, 200)
PALETTE_MARGIN = 140.0
BLEND_MARGIN = 115.0
# mouth_openness counts a pixel fully within MOUTH_NEAR of MOUTH, fading to nothing at MOUTH_FAR (< BLEND_MARGIN).
MOUTH_NEAR, MOUTH_FAR = 45.0, 100.0

SUPERSAMPLE = 4  # drawn at 4x and box-filtered down: anti-aliasing, and vertices placed to a quarter pixel
PIVOT = (0.0, 0.9)  # the head turns about the top of the neck, in head units (below)

# Head units: the face ellipse's vertical radius is 1, its centre at rest is the origin, y points down. The chin
# is at y = 1, the eyes near y = -0.1 and the mouth near y = 0.5.


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
# Identity: palette and shape. Colours are RGB 0..255.

SKIN = np.array([(255, 228, 206), (244, 206, 176), (232, 186, 150), (214, 160, 120), (190, 134, 96),
                 (160, 108, 74), (128, 84, 58), (98, 64, 44), (72, 48, 34), (56, 38, 28)], float)

HAIR = {  # name: (colour, weight)
    "black": ((28, 24, 24), 5), "dark brown": ((62, 42, 30), 5), "brown": ((104, 70, 44), 4),
    "light brown": ((150, 112, 74), 3), "blonde": ((222, 190, 124), 3), "platinum": ((236, 226, 200), 1),
    "auburn": ((138, 62, 36), 2), "ginger": ((196, 104, 48), 2), "grey": ((150, 150, 150), 2),
    "white": ((228, 226, 222), 1), "blue": ((48, 92, 176), 1), "teal": ((30, 134, 134), 1),
    "green": ((60, 140, 70), 1),
}
IRIS = [(92, 58, 32), (58, 38, 24), (128, 98, 52), (72, 124, 76), (70, 120, 182), (112, 128, 144),
        (160, 120, 40)]
FRAMES = [(20, 20, 24), (80, 50, 30), (196, 168, 86), (180, 184, 190), (30, 50, 110), (30, 100, 80)]
HAIR_STYLES = ["short", "buzz", "fringe", "bob", "long", "curly", "bald"]
COLLARS = ["crew", "v", "shirt", "turtle"]
BACKGROUNDS = ["solid", "vertical", "horizontal", "split", "diagonal"]
EYE_WHITE, PUPIL, TEETH = (242, 240, 234), (16, 14, 18), (244, 240, 226)


def colour(rgb) -> list[int]:
    return [int(np.clip(round(float(c)), 0, 255)) for c in rgb]


def jitter(rng: np.random.Generator, rgb, amount: float) -> list[int]:
    return colour(np.asarray(rgb, float) + rng.uniform(-amount, amount, 3))


def hsv(rng: np.random.Generator, saturation: tuple, value: tuple) -> list[int]:
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value))
    return colour(np.array(rgb) * 255)


def shade(rgb, factor: float, tint=(0, 0, 0)) -> list[int]:
    return colour(np.asarray(rgb, float) * factor + np.asarray(tint, float))


def mouth_distance(rgb) -> float:
    return float(np.linalg.norm(np.asarray(rgb, float) - MOUTH))


def blend_distance(a, b) -> float:
    """How close any mix of colours a and b (an anti-aliased edge between them) comes to MOUTH."""
    a, b, m = np.asarray(a, float), np.asarray(b, float), np.asarray(MOUTH, float)
    span = b - a
    t = np.clip(np.dot(m - a, span) / max(np.dot(span, span), 1e-9), 0, 1)
    return float(np.linalg.norm(a + t * span - m))


def palette(identity: dict) -> list:
    """Every colour an identity draws with, the mouth interior aside."""
    i = identity
    colours = [i["skin"], i["lips"], i["neck_colour"], i["ear_colour"], i["hair"]["colour"], i["eyes"]["iris_colour"],
               i["brows"]["colour"], i["nose"]["colour"], i["nose"]["tip_colour"], i["mouth"]["line_colour"],
               i["clothes"]["colour"], i["clothes"]["trim_colour"], *i["background"]["colours"],
               EYE_WHITE, PUPIL, TEETH]
    if i["glasses"] is not None:
        colours.append(i["glasses"]["colour"])
    return [list(c) for c in colours]


def palette_ok(colours: list) -> bool:
    if min(mouth_distance(c) for c in colours) < PALETTE_MARGIN:
        return False
    return all(blend_distance(a, b) >= BLEND_MARGIN for i, a in enumerate(colours) for b in colours[i + 1:])


def sample_identity(rng: np.random.Generator) -> dict:
    """A random face, redrawn until its palette keeps clear of the mouth colour."""
    while True:
        identity = draw_identity(rng)
        if palette_ok(palette(identity)):
            return identity


def draw_identity(rng: np.random.Generator) -> dict:
    u = rng.uniform
    tone = u(0, len(SKIN) - 1)
    low = int(tone)
    skin = SKIN[low] + (SKIN[min(low + 1, len(SKIN) - 1)] - SKIN[low]) * (tone - low)
    skin = jitter(rng, skin + np.array([u(-6, 10), u(-6, 6), u(-10, 4)]), 6)
    # lips: darker than the skin and a little redder, never purple
    lips = shade(skin, u(0.68, 0.82), (u(8, 22), u(-10, 0), u(-12, -2)))

    names, weights = list(HAIR), np.array([w for _, w in HAIR.values()], float)
    hair_name = names[rng.choice(len(names), p=weights / weights.sum())]
    hair = jitter(rng, HAIR[hair_name][0], 10)
    style = HAIR_STYLES[rng.integers(len(HAIR_STYLES))]
    if style == "buzz":
        hair = shade(np.asarray(hair) * 0.75 + np.asarray(skin) * 0.25, 1.0)  # skin shows through
    brow = shade(hair, 0.7) if np.mean(hair) < 140 and style != "bald" else jitter(rng, (90, 64, 44), 20)

    background_style = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    muted = u() < 0.6
    backdrop = [hsv(rng, (0.05, 0.35) if muted else (0.3, 0.8), (0.45, 0.95)) for _ in range(2)]
    if background_style == "solid":
        backdrop[1] = backdrop[0]
    elif background_style in ("vertical", "horizontal"):
        backdrop[1] = shade(backdrop[0], u(0.55, 0.85)) if u() < 0.6 else backdrop[1]

    collar = COLLARS[rng.integers(len(COLLARS))]
    clothes = hsv(rng, (0.1, 0.85), (0.2, 0.92))
    trim = [246, 246, 244] if collar == "shirt" and u() < 0.7 else shade(clothes, u(0.6, 0.8))

    a = u(0.70, 0.88)
    identity = {
        "skin": skin, "lips": lips, "neck_colour": shade(skin, 0.84), "ear_colour": shade(skin, 0.8),
        "face_aspect": a, "jaw": u(0.55, 0.92), "jaw_curve": u(1.5, 4.0),
        "ear_size": u(0.8, 1.2),
        "neck_width": u(0.42, 0.58),
        "hair": {"style": style, "colour": hair, "shade": hair_name, "volume": u(0.06, 0.14),
                 "top": u(0.1, 0.22), "hairline": u(-0.62, -0.5), "part": u(-0.35, 0.35)},
        "eyes": {"spacing": u(0.27, 0.38), "height": u(-0.16, -0.04), "size": u(0.095, 0.135),
                 "roundness": u(0.5, 0.8), "iris_colour": jitter(rng, IRIS[rng.integers(len(IRIS))], 12),
                 "lash": u(0.018, 0.035)},
        "brows": {"colour": brow, "thickness": u(0.025, 0.055), "length": u(0.11, 0.16), "tilt": u(-12, 12),
                  "arch": u(0.0, 0.05), "lift": u(0.14, 0.2)},
        "nose": {"style": ["button", "line", "wedge"][rng.integers(3)], "size": u(0.08, 0.14),
                 "height": u(0.16, 0.26), "colour": shade(skin, u(0.78, 0.88)), "tip_colour": shade(skin, 0.93)},
        "mouth": {"height": u(0.5, 0.58), "size": u(0.17, 0.24), "open_height": u(0.10, 0.14),
                  "lip": u(0.025, 0.045), "teeth": bool(u() < 0.7), "line_colour": shade(lips, 0.6)},
        "clothes": {"colour": clothes, "collar": collar, "trim_colour": trim, "shoulder": u(1.2, 1.36),
                    "width": u(2.0, 2.7), "drop": u(0.25, 0.45)},
        "background": {"style": background_style, "colours": backdrop, "split": u(0.3, 0.7)},
        "glasses": None,
    }
    if u() < 0.25:
        identity["glasses"] = {"shape": ["round", "square"][rng.integers(2)],
                               "colour": jitter(rng, FRAMES[rng.integers(len(FRAMES))], 10),
                               "width": u(0.018, 0.032), "size": u(1.35, 1.7)}
    return identity


# ---------------------------------------------------------------------------------------------------------------
# Geometry in head units. Every part is a polygon (or a polyline) that the per-frame head transform moves.

def ellipse(cx, cy, rx, ry, n=48, start=0.0, stop=2 * np.pi, closed=True) -> np.ndarray:
    t = np.linspace(start, stop, n, endpoint=not closed)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def face_width(identity: dict, y):
    """The face outline's half-width at height y (the jaw narrows it below the cheekbones)."""
    a, jaw, curve = identity["face_aspect"], identity["jaw"], identity["jaw_curve"]
    y = np.clip(y, -1, 1)
    w = a * np.sqrt(1 - y ** 2)
    return np.where(y > 0, w * (1 - (1 - jaw) * np.abs(y) ** curve), w)


def face_outline(identity: dict) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    x, y = np.cos(t), np.sin(t)
    a, jaw, curve = identity["face_aspect"], identity["jaw"], identity["jaw_curve"]
    x = a * x * np.where(y > 0, 1 - (1 - jaw) * np.abs(y) ** curve, 1)
    return np.stack([x, y], axis=1)


def hairline(identity: dict, x: np.ndarray) -> np.ndarray:
    h, a = identity["hair"], identity["face_aspect"]
    style = h["style"]
    if style == "fringe":
        zigzag = 0.03 * np.where(np.arange(len(x)) % 2 == 0, 1, -1)
        return h["hairline"] + 0.22 + 0.08 * (x / a) ** 2 + zigzag
    if style in ("long", "bob"):
        part = h["part"] * a
        return h["hairline"] - 0.12 + 0.2 * ((x - part) / a) ** 2
    if style == "curly":
        return h["hairline"] + 0.05 * np.sin(x / a * 9) + 0.12 * (x / a) ** 2
    return h["hairline"] + 0.18 * (x / a) ** 2


def hair_parts(identity: dict) -> tuple[list, list]:
    """(behind the head, in front of the face) hair polygons."""
    h, a = identity["hair"], identity["face_aspect"]
    style, vol, top = h["style"], h["volume"], h["top"]
    back, front = [], []
    if style == "bald":
        for side in (-1, 1):  # a little hair left above the ears
            back.append(np.array([[side * (face_width(identity, -0.3) - 0.02), -0.3],
                                  [side * (face_width(identity, -0.3) + 0.05), -0.32],
                                  [side * (face_width(identity, 0.15) + 0.06), 0.1],
                                  [side * (face_width(identity, 0.15) - 0.02), 0.15]]))
        return back, front
    if style == "buzz":
        vol, top = 0.025, 0.04
    if style == "curly":
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        bumps = 1 + 0.05 * np.sin(t * 16)
        back.append(np.stack([(a + 0.32 + vol) * bumps * np.cos(t), -0.12 + (1.08 + top) * bumps * np.sin(t)], 1))
    if style == "bob":
        outer = ellipse(0, 0, a + vol + 0.04, 1 + top, 40, np.pi, 2 * np.pi)
        back.append(np.concatenate([[[-(a + vol + 0.1), 0.75]], outer, [[a + vol + 0.1, 0.75]]]))
    if style == "long":
        outer = ellipse(0, 0, a + vol + 0.04, 1 + top, 40, np.pi, 2 * np.pi)
        back.append(np.concatenate([[[-(a + vol + 0.35), 2.4], [-(a + vol + 0.12), 1.0]], outer,
                                    [[a + vol + 0.12, 1.0], [a + vol + 0.35, 2.4]]]))
    # the cap over the skull, down the sides as far as the style goes, and back across the forehead
    side = {"short": 0.0, "buzz": -0.1, "fringe": 0.1, "bob": 0.55, "long": 0.6, "curly": 0.0}[style]
    inner = {"bob": 0.88, "long": 0.92}.get(style, 0.98)
    outer = ellipse(0, 0, a + vol, 1 + top, 40, np.pi, 2 * np.pi)
    xs = np.linspace(0.9 * a, -0.9 * a, 17)
    line = np.stack([xs, hairline(identity, xs)], axis=1)

    def side_x(y):
        return inner * face_width(identity, y)

    front.append(np.concatenate([[[-(a + vol), side]], outer, [[a + vol, side]],
                                 [[side_x(side), side], [side_x(line[0, 1] + 0.1), line[0, 1] + 0.1]], line,
                                 [[-side_x(line[-1, 1] + 0.1), line[-1, 1] + 0.1], [-side_x(side), side]]]))
    return back, front


def clothes_parts(identity: dict) -> list:
    """(polygon, colour) pairs for the body, static in head units (the head moves above it)."""
    c = identity["clothes"]
    sy, w, neck = c["shoulder"], c["width"], identity["neck_width"] * identity["face_aspect"]
    far = 40.0
    # from the neck the shoulder line falls away ever faster, then rounds down into the arm
    t = np.linspace(0, 1, 12)
    slope = np.stack([neck + 0.1 + (w - 0.4 - neck - 0.1) * t, sy + c["drop"] * t ** 2], 1)
    arm = ellipse(w - 0.4, sy + c["drop"] + 0.4, 0.4, 0.4, 10, -np.pi / 2, 0, closed=False)
    right = np.concatenate([slope, arm, [[w, far]]])
    left = (right * [-1, 1])[::-1]
    body = left.tolist()
    if c["collar"] == "v":
        cut = [[-neck * 0.9, sy], [0, sy + 0.55], [neck * 0.9, sy]]
    elif c["collar"] == "turtle":
        cut = [[-neck * 1.1, sy], [neck * 1.1, sy]]
    else:
        cut = ellipse(0, sy - 0.05, neck + 0.08, 0.3, 15, np.pi, 0).tolist()
    body += cut + right.tolist()
    parts = [(np.array(body), c["colour"])]
    if c["collar"] == "turtle":
        parts.append((np.array([[-neck * 1.12, sy + 0.1], [-neck * 1.08, sy - 0.36], [neck * 1.08, sy - 0.36],
                                [neck * 1.12, sy + 0.1]]), c["trim_colour"]))
    elif c["collar"] == "shirt":
        for s in (-1, 1):
            parts.append((np.array([[s * (neck + 0.12), sy - 0.08], [s * 0.02, sy + 0.22],
                                    [s * (neck + 0.3), sy + 0.18]]), c["trim_colour"]))
    elif c["collar"] == "crew":
        rim = ellipse(0, sy - 0.05, neck + 0.08, 0.3, 15, np.pi, 0)
        parts.append((np.concatenate([rim, ellipse(0, sy - 0.05, neck + 0.16, 0.37, 15, 0, np.pi)]),
                      c["trim_colour"]))
    return parts


def head_parts(identity: dict) -> list:
    """(polygon or polyline, colour, line width in head units or None for a filled polygon), back to front:
    everything of the head that does not change with the mouth or the eyelids."""
    a, skin = identity["face_aspect"], identity["skin"]
    back, front = hair_parts(identity)
    hair = identity["hair"]["colour"]
    neck = identity["neck_width"] * a
    parts = [(p, hair, None) for p in back]
    parts.append((np.array([[-neck, 0.4], [-neck * 1.05, 3.0], [neck * 1.05, 3.0], [neck, 0.4]]),
                  identity["neck_colour"], None))
    parts.append(("clothes", None, None))
    ear = identity["ear_size"]
    for s in (-1, 1):
        x = s * face_width(identity, 0.05)
        parts.append((ellipse(x, 0.05, 0.12 * ear, 0.2 * ear, 24), skin, None))
        parts.append((ellipse(x + s * 0.02, 0.06, 0.06 * ear, 0.12 * ear, 16), identity["ear_colour"], None))
    parts.append((face_outline(identity), skin, None))

    nose = identity["nose"]
    n, ny, nc = nose["size"], nose["height"], nose["colour"]
    if nose["style"] == "button":
        parts.append((ellipse(0, ny, 0.55 * n, 0.42 * n, 24), nose["tip_colour"], None))
        for s in (-1, 1):
            parts.append((ellipse(s * 0.3 * n, ny + 0.22 * n, 0.12 * n, 0.08 * n, 12), nc, None))
    elif nose["style"] == "line":
        parts.append((np.array([[0.05 * n, ny - 1.4 * n], [0.25 * n, ny + 0.2 * n], [-0.3 * n, ny + 0.4 * n]]),
                      nc, 0.018))
    else:
        parts.append((np.array([[0, ny - 1.3 * n], [0.45 * n, ny + 0.35 * n], [-0.15 * n, ny + 0.42 * n]]), nc,
                      None))

    b = identity["brows"]
    e = identity["eyes"]
    for s in (-1, 1):
        cx, cy, half = s * e["spacing"], e["height"] - b["lift"], b["length"]
        t = np.linspace(-1, 1, 9)
        tilt = np.tan(np.radians(b["tilt"]))
        centre = np.stack([cx + s * t * half, cy - b["arch"] * (1 - t ** 2) - tilt * t * half], 1)
        thick = b["thickness"] * (1 - 0.5 * np.clip(t, 0, 1))[:, None]  # tapering to the outer end
        parts.append((np.concatenate([centre - [0, 1] * thick / 2, (centre + [0, 1] * thick / 2)[::-1]]),
                      b["colour"], None))
    parts.append(("eyes", None, None))
    parts.append(("mouth", None, None))
    parts += [(p, hair, None) for p in front]

    g = identity["glasses"]
    if g is not None:
        r = e["size"] * g["size"]
        for s in (-1, 1):
            cx, cy = s * e["spacing"], e["height"]
            if g["shape"] == "round":
                rim = ellipse(cx, cy, r, r * 0.85, 32)
            else:  # a superellipse: a rounded rectangle
                t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
                rim = np.stack([cx + r * 1.05 * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** 0.4,
                                cy + r * 0.75 * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** 0.4], 1)
            parts.append((np.concatenate([rim, rim[:1]]), g["colour"], g["width"]))
            edge = face_width(identity, cy)
            parts.append((np.array([[cx + s * r * 0.98, cy - 0.02], [s * edge, cy - 0.04]]), g["colour"],
                          g["width"]))
        bridge = e["spacing"] - r
        y = e["height"]
        parts.append((np.array([[-bridge, y - 0.03], [0, y - 0.06], [bridge, y - 0.03]]), g["colour"], g["width"]))
    return parts


def eye_parts(identity: dict, blink: float) -> list:
    e = identity["eyes"]
    rx, ry = e["size"], e["size"] * e["roundness"] * (1 - blink) + 1e-3
    parts = []
    for s in (-1, 1):
        cx, cy = s * e["spacing"], e["height"]
        parts.append((ellipse(cx, cy, rx, ry, 32), EYE_WHITE, None))
        for colour_, radius, dx, dy in ((e["iris_colour"], 0.55 * rx, 0, 0), (PUPIL, 0.26 * rx, 0, 0),
                                        (EYE_WHITE, 0.1 * rx, 0.15 * rx, -0.15 * rx)):
            disc = ellipse(cx + dx, cy + dy, radius, radius, 20)
            # keep the disc inside the (possibly closing) eye: the eyelids cover the rest
            inside = np.sqrt(np.clip(1 - ((disc[:, 0] - cx) / rx) ** 2, 0, 1)) * ry
            disc[:, 1] = np.clip(disc[:, 1], cy - inside, cy + inside)
            parts.append((disc, colour_, None))
        lid = ellipse(cx, cy, rx * 1.04, ry, 17, np.pi, 2 * np.pi, closed=False)
        parts.append((lid, PUPIL, e["lash"]))
    return parts


def mouth_parts(identity: dict, openness: float, width: float) -> list:
    """Lips, then the interior (MOUTH) and teeth. The interior's area is proportional to openness whatever the
    width: rounding the lips narrows the opening and makes it taller by the same factor."""
    m = identity["mouth"]
    cy, lip = m["height"], m["lip"]
    k = 0.82 + 0.36 * width
    rx, ry = m["size"] * k, m["open_height"] * openness / k
    lips = identity["lips"]
    parts = [(ellipse(0, cy, rx + 0.8 * lip, ry + lip, 40), lips, None),
             (np.array([[-rx - 0.3 * lip, cy], [rx + 0.3 * lip, cy]]), m["line_colour"], 0.014)]
    if ry > 1e-4:  # the opening is drawn over the line where the lips meet
        parts.append((ellipse(0, cy, rx, ry, 40), MOUTH, None))
        if m["teeth"]:  # the top 20 % of the opening: a fixed share, so the visible interior stays proportional
            start = np.pi + np.arcsin(0.45)
            parts.append((ellipse(0, cy, rx, ry, 16, start, 3 * np.pi - start, closed=False), TEETH, None))
    return parts


# ---------------------------------------------------------------------------------------------------------------
# Layout and rendering.

def head_extent(identity: dict) -> np.ndarray:
    """Points outlining the head in head units: face, ears and hair above the chin, and the top of the neck."""
    parts = [face_outline(identity)]
    back, front = hair_parts(identity)
    parts += [p[p[:, 1] < 1.0] for p in back + front]
    ear = identity["ear_size"]
    for s in (-1, 1):
        parts.append(ellipse(s * face_width(identity, 0.05), 0.05, 0.12 * ear, 0.2 * ear, 24))
    neck = identity["neck_width"] * identity["face_aspect"]
    parts.append(np.array([[-neck, 1.3], [neck, 1.3]]))
    return np.concatenate(parts)


def transforms(head: dict, centre: np.ndarray, unit: float) -> np.ndarray:
    """Per frame, the 2x3 affine map from head units to pixels: [T, 2, 3]."""
    angle = np.radians(np.asarray(head["angle"]))
    scale = np.asarray(head["scale"])
    c, s = np.cos(angle) * scale * unit, np.sin(angle) * scale * unit
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # [T, 2, 2]
    pivot = np.asarray(PIVOT)
    shift = centre + np.stack([head["dx"], head["dy"]], -1) + unit * pivot - rot @ pivot
    return np.concatenate([rot, shift[:, :, None]], axis=2)


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def backdrop(background: dict, size: int) -> np.ndarray:
    first, second = (np.asarray(c, np.float32) for c in background["colours"])
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    style, split = background["style"], background["split"]
    if style == "vertical":
        mix = np.broadcast_to(ramp[:, None], (size, size))
    elif style == "horizontal":
        mix = np.broadcast_to(ramp[None, :], (size, size))
    elif style == "split":
        mix = np.broadcast_to((ramp[None, :] > split).astype(np.float32), (size, size))
    elif style == "diagonal":
        mix = ((ramp[None, :] + ramp[:, None]) / 2 > split).astype(np.float32)
    else:
        mix = np.zeros((size, size), np.float32)
    image = first + (second - first) * mix[:, :, None]
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


class Painter:
    """Draws one identity's frames; everything that does not change from frame to frame is prepared once."""

    def __init__(self, identity: dict, size: int, centre: np.ndarray, unit: float):
        from PIL import Image

        self.identity, self.size, self.unit = identity, size, unit
        big = size * SUPERSAMPLE
        self.background = Image.fromarray(backdrop(identity["background"], big))
        self.head = head_parts(identity)
        rest = np.array([[unit, 0, centre[0]], [0, unit, centre[1]]])
        self.clothes = [(apply(rest, p) * SUPERSAMPLE, c) for p, c in clothes_parts(identity)]

    def frame(self, m: np.ndarray, openness: float, width: float, blink: float) -> np.ndarray:
        from PIL import ImageDraw

        image = self.background.copy()
        draw = ImageDraw.Draw(image)
        scale = m * SUPERSAMPLE
        pen = self.unit * SUPERSAMPLE
        for points, fill, line in self.head:
            if isinstance(points, str):  # a placeholder for the static body or the moving eyes and mouth
                if points == "clothes":
                    for polygon, c in self.clothes:
                        draw.polygon(polygon.ravel().tolist(), fill=tuple(c))
                    continue
                parts = (eye_parts(self.identity, blink) if points == "eyes"
                         else mouth_parts(self.identity, openness, width))
                for p, c, w in parts:
                    self.stroke(draw, apply(scale, p), c, w, pen)
            else:
                self.stroke(draw, apply(scale, points), fill, line, pen)
        small = image.reduce(SUPERSAMPLE)
        return np.asarray(small)

    @staticmethod
    def stroke(draw, points: np.ndarray, fill, width, pen: float):
        xy = points.ravel().tolist()
        if width is None:
            draw.polygon(xy, fill=tuple(fill))
        else:
            draw.line(xy, fill=tuple(fill), width=max(1, round(width * pen)), joint="curve")


# ---------------------------------------------------------------------------------------------------------------
# Clips.

@dataclass
class Clip:
    frames: np.ndarray  # uint8 [T, size, size, 3]
    audio: np.ndarray  # float32 mono [N], N = T * sample_rate / 25
    sample_rate: int
    truth: dict  # the sidecar


def layout(rng: np.random.Generator, identity: dict, head_units: dict, size: int) -> tuple:
    """Place the head: (face box [x0, y0, x1, y1], head centre at rest in pixels, pixels per head unit).

    The box is the square around the head's outline over every frame of its motion, with a margin; it is scaled to
    55-75 % of the frame and put near the centre."""
    outline = head_extent(identity)
    reach = np.concatenate([apply(m, outline) for m in transforms(head_units, np.zeros(2), 1.0)])
    low, high = reach.min(0), reach.max(0)
    side = (high - low).max() * 1.06
    middle = (low + high) / 2
    box_side = rng.uniform(0.55, 0.75) * size
    unit = box_side / side
    room = (size - box_side) / 2
    offset = rng.uniform(-1, 1, 2) * min(0.06 * size, room)
    box_centre = size / 2 + offset
    centre = box_centre - unit * middle
    box = [float(box_centre[0] - box_side / 2), float(box_centre[1] - box_side / 2),
           float(box_centre[0] + box_side / 2), float(box_centre[1] + box_side / 2)]
    return box, centre, unit


def rounded(values, digits=4) -> list:
    return [round(float(v), digits) for v in np.asarray(values).ravel()]


def render_clip(seed: int, seconds: float, size: int = 256) -> Clip:
    """One clip, entirely determined by (seed, seconds, size): round(seconds * 25) frames of size x size pixels,
    the speech (espeak-ng) cut to exactly as long, and the sidecar."""
    frames = round(seconds * FPS)
    if frames < 1 or size < 16:
        raise ValueError(f"a clip needs at least one frame and 16 pixels (got {seconds} s, {size} px)")
    check_espeak()
    looks, moves, talk = np.random.default_rng(seed).spawn(3)
    identity = sample_identity(looks)

    # head motion in head units first: the layout needs the head's full reach to fit the face box around it
    head_units = {"dx": wander(moves, frames, moves.uniform(0.03, 0.08)),
                  "dy": wander(moves, frames, moves.uniform(0.02, 0.06)),
                  "angle": wander(moves, frames, moves.uniform(1.5, 4.5)),
                  "scale": 1 + wander(moves, frames, moves.uniform(0.01, 0.03))}
    blink = blinks(moves, frames)
    box, centre, unit = layout(moves, identity, head_units, size)
    head = dict(head_units, dx=head_units["dx"] * unit, dy=head_units["dy"] * unit)

    audio, rate, text, voice = speech(talk, frames)
    openness, width = mouth_curves(audio, rate, frames)

    maps = transforms(head, centre, unit)
    painter = Painter(identity, size, centre, unit)
    pictures = np.stack([painter.frame(maps[i], openness[i], width[i], blink[i]) for i in range(frames)])
    mouth_centre = np.stack([apply(m, np.array([0.0, identity["mouth"]["height"]])) for m in maps])

    truth = {
        "seed": int(seed), "fps": FPS, "frames": frames, "size": size, "sample_rate": rate,
        "text": text, "voice": voice["voice"], "speech": voice,
        "identity": dict(identity, face_centre=rounded(centre, 2), unit_px=round(float(unit), 4)),
        "mouth_colour": list(MOUTH),
        "face_box": rounded(box, 2),
        "mouth_open": rounded(openness), "mouth_width": rounded(width),
        "head": {"dx": rounded(head["dx"], 3), "dy": rounded(head["dy"], 3), "angle": rounded(head["angle"], 3),
                 "scale": rounded(head["scale"], 5)},
        "blink": rounded(blink),
        "mouth_centre": [rounded(p, 2) for p in mouth_centre],
    }
    return Clip(pictures, audio, rate, truth)


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


def mouth_openness(frames) -> np.ndarray:
    """How open the mouth is in each frame, from pixels alone: [T, H, W, 3] (uint8, or float in 0..1) -> [T].

    The measurement is the share of the frame's area that shows the mouth interior: each pixel counts 1 within
    RGB distance MOUTH_NEAR (45 of 255) of the interior colour MOUTH, fading linearly to 0 at MOUTH_FAR (100), and
    the counts are averaged over the frame. Nothing else in the corpus comes within that distance, so the value is
    0 for a closed mouth, and because the drawn interior's area is proportional to the sidecar's `mouth_open`, it
    tracks it linearly. Partial counts make blurred or compressed edges still count partly, so the measure holds
    on small, blurry or generated frames (e.g. 128x128 face crops); compare values between frames of the same
    framing, since a tighter crop makes the mouth a larger share of the frame."""
    x = np.asarray(frames)
    if x.ndim == 3:
        x = x[None]
    scale = 1.0 if x.dtype == np.uint8 else 255.0
    target = np.asarray(MOUTH, np.float32)
    out = np.empty(len(x))
    for i, frame in enumerate(x):
        d = np.linalg.norm(frame.astype(np.float32) * scale - target, axis=-1)
        out[i] = np.clip((MOUTH_FAR - d) / (MOUTH_FAR - MOUTH_NEAR), 0, 1).mean()
    return out


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


def clip_name(seed: int) -> str:
    return f"clip_{seed:07d}"


def make(job: tuple) -> int:
    seed, seconds, size, out = job
    write_clip(render_clip(seed, seconds, size), Path(out) / clip_name(seed))
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
    jobs = [(s, args.seconds, args.size, str(out)) for s in todo]
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
