"""How an identity (`faces.py`) is drawn: its parts as polygons in head units, the backdrop, and the painter that
turns one head pose, mouth and eyelid state into a frame, in the identity's drawing style.

Every part is a `Part`: a polygon (or a polyline with a line width) in head units that the per-frame head transform
moves. Parts are drawn back to front at SUPERSAMPLE times the frame size and box-filtered down (anti-aliasing, and
vertices placed to a fraction of a pixel). Styles act in two places: while drawing (ink outlines, cel shading: a
shadow tone with the lit part drawn over it, shrunk and shifted towards the light) and on the finished frame
(lighting tint, texture, painterly smearing, and the held-out families' halftone, watercolour, pixel and duotone
looks). Everything a style needs that does not change from frame to frame (noise fields, displacements) is made
once per clip from the style's seed, so a clip is still a function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .faces import shade

SUPERSAMPLE = 4
PIVOT = (0.0, 0.9)  # the head turns about the top of the neck, in head units


@dataclass
class Part:
    points: np.ndarray  # [N, 2] head units
    colour: list
    line: float | None = None  # a polyline this wide (head units); None: a filled polygon
    shaded: bool = False  # takes cel shading
    inked: bool = False  # takes the style's outline


def ellipse(cx, cy, rx, ry, n=48, start=0.0, stop=2 * np.pi, closed=True) -> np.ndarray:
    t = np.linspace(start, stop, n, endpoint=not closed)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def superellipse(cx, cy, rx, ry, power=0.4, n=40) -> np.ndarray:
    """A rounded rectangle: power 1 is an ellipse, towards 0 a rectangle."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([cx + rx * np.sign(c) * np.abs(c) ** power, cy + ry * np.sign(s) * np.abs(s) ** power], 1)


# --- the head --------------------------------------------------------------------------------------------------

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
        return h["hairline"] - 0.12 + 0.2 * ((x - h["part"] * a) / a) ** 2
    if style == "curly":
        return h["hairline"] + 0.05 * np.sin(x / a * 9) + 0.12 * (x / a) ** 2
    if style == "spiky":
        return h["hairline"] + 0.1 + 0.08 * np.where(np.arange(len(x)) % 2 == 0, 1, -1) + 0.1 * (x / a) ** 2
    return h["hairline"] + 0.18 * (x / a) ** 2


def hair_parts(identity: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
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
    if style == "bun":
        back.append(ellipse(0, -1 - top - 0.12, 0.28, 0.24, 32))
    if style == "bob":
        outer = ellipse(0, 0, a + vol + 0.04, 1 + top, 40, np.pi, 2 * np.pi)
        back.append(np.concatenate([[[-(a + vol + 0.1), 0.75]], outer, [[a + vol + 0.1, 0.75]]]))
    if style == "long":
        outer = ellipse(0, 0, a + vol + 0.04, 1 + top, 40, np.pi, 2 * np.pi)
        back.append(np.concatenate([[[-(a + vol + 0.35), 2.4], [-(a + vol + 0.12), 1.0]], outer,
                                    [[a + vol + 0.12, 1.0], [a + vol + 0.35, 2.4]]]))
    # the cap over the skull, down the sides as far as the style goes, and back across the forehead
    side = {"short": 0.0, "buzz": -0.1, "fringe": 0.1, "bob": 0.55, "long": 0.6, "curly": 0.0, "spiky": -0.05,
            "bun": -0.05}[style]
    inner = {"bob": 0.88, "long": 0.92}.get(style, 0.98)
    outer = ellipse(0, 0, a + vol, 1 + top, 40, np.pi, 2 * np.pi)
    if style == "spiky":  # every other point of the cap pushed out into a spike
        centre = np.array([0, 0])
        outer = outer + (outer - centre) * np.where(np.arange(len(outer)) % 4 == 2, 0.22, 0.0)[:, None]
    xs = np.linspace(0.9 * a, -0.9 * a, 17)
    line = np.stack([xs, hairline(identity, xs)], axis=1)

    def side_x(y):
        return inner * face_width(identity, y)

    front.append(np.concatenate([[[-(a + vol), side]], outer, [[a + vol, side]],
                                 [[side_x(side), side], [side_x(line[0, 1] + 0.1), line[0, 1] + 0.1]], line,
                                 [[-side_x(line[-1, 1] + 0.1), line[-1, 1] + 0.1], [-side_x(side), side]]]))
    return back, front


def hat_parts(identity: dict) -> list[Part]:
    hat = identity["hat"]
    if hat is None:
        return []
    a, top = identity["face_aspect"], identity["hair"]["top"] if identity["hair"]["style"] != "bald" else 0.0
    crown = -1 - top
    c, trim = hat["colour"], hat["trim"]
    style = hat["style"]
    if style == "beanie":
        dome = ellipse(0, -0.45, a + 0.1, -crown - 0.45 + 0.12, 40, np.pi, 2 * np.pi)
        band = superellipse(0, -0.45, a + 0.14, 0.12, 0.3)
        parts = [Part(np.concatenate([dome, [[a + 0.1, -0.45], [-(a + 0.1), -0.45]]]), c, shaded=True, inked=True),
                 Part(band, trim, shaded=True, inked=True)]
    elif style == "cap":
        dome = ellipse(0, -0.5, a + 0.06, -crown - 0.5 + 0.06, 40, np.pi, 2 * np.pi)
        brim = ellipse(0.25 * a, -0.5, a + 0.35, 0.1, 32, 0, np.pi)
        parts = [Part(np.concatenate([dome, [[a + 0.06, -0.5], [-(a + 0.06), -0.5]]]), c, shaded=True, inked=True),
                 Part(brim, trim, inked=True)]
    elif style == "tophat":
        parts = [Part(superellipse(0, crown - 0.35, a * 0.75, 0.5, 0.15), c, shaded=True, inked=True),
                 Part(superellipse(0, crown + 0.12, a + 0.3, 0.07, 0.3), c, inked=True),
                 Part(superellipse(0, crown - 0.02, a * 0.76, 0.07, 0.2), trim)]
    elif style == "bow":
        x, y = 0.45 * a, crown + 0.12
        parts = [Part(np.array([[x, y], [x - 0.28, y - 0.18], [x - 0.28, y + 0.18]]), c, inked=True),
                 Part(np.array([[x, y], [x + 0.28, y - 0.18], [x + 0.28, y + 0.18]]), c, inked=True),
                 Part(ellipse(x, y, 0.07, 0.07, 16), trim, inked=True)]
    elif style == "headband":
        xs = np.linspace(-(a + 0.06), a + 0.06, 21)
        y = -0.55 - 0.22 * (1 - (xs / a) ** 2)
        parts = [Part(np.concatenate([np.stack([xs, y - 0.07], 1), np.stack([xs, y + 0.07], 1)[::-1]]), c,
                      shaded=True, inked=True)]
    else:
        raise ValueError(f"unknown hat {style!r}")
    tilt = np.radians(hat["tilt"])
    rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    for p in parts:
        p.points = p.points @ rot.T
    return parts


def beard_parts(identity: dict) -> list[Part]:
    beard = identity["beard"]
    if beard is None:
        return []
    m = identity["mouth"]
    cy, c, style = m["height"], beard["colour"], beard["style"]
    if style == "moustache":
        w = m["size"] * 1.25
        xs = np.linspace(-w, w, 15)
        top = cy - 0.1 - 0.03 * (1 - (xs / w) ** 2)
        bottom = cy - 0.035 + 0.02 * (xs / w) ** 2
        return [Part(np.concatenate([np.stack([xs, top], 1), np.stack([xs, bottom], 1)[::-1]]), c, inked=True)]
    if style == "goatee":
        return [Part(np.array([[-0.12, cy + 0.12], [0.12, cy + 0.12], [0.08, 0.98], [0, 1.05], [-0.08, 0.98]]), c,
                     inked=True)]
    ys = np.linspace(0.1 if style == "full" else 0.2, 1.0, 15)
    outer = np.stack([face_width(identity, ys) * 1.04 + 0.01, ys], 1)
    outer = np.concatenate([outer, [[0, 1.08]], (outer * [-1, 1])[::-1]])
    if style == "chinstrap":
        ys_in = ys[::-1]
        inner = np.stack([-(face_width(identity, ys_in) - 0.09), ys_in - 0.06], 1)
        inner = np.concatenate([inner[::-1] * [-1, 1], [[0, 0.94]], inner])
        return [Part(np.concatenate([outer, inner]), c, shaded=True, inked=True)]
    return [Part(outer, c, shaded=True, inked=True)]


def glasses_parts(identity: dict) -> list[Part]:
    g, e = identity["glasses"], identity["eyes"]
    if g is None:
        return []
    r = e["size"] * g["size"] * (1.3 if g["shape"] == "big" else 1.0)
    r = max(r, 0.11)
    parts = []
    for s in (-1, 1):
        cx, cy = s * e["spacing"], e["height"]
        shape = g["shape"]
        if shape in ("round", "big"):
            rim = ellipse(cx, cy, r, r * 0.85, 32)
        elif shape == "square":
            rim = superellipse(cx, cy, r * 1.05, r * 0.75, 0.4, 32)
        elif shape == "cateye":
            rim = superellipse(cx, cy, r * 1.05, r * 0.7, 0.5, 32)
            outer = (rim[:, 0] - cx) * s > 0.3 * r
            rim[outer & (rim[:, 1] < cy), 1] -= 0.35 * r * ((rim[outer & (rim[:, 1] < cy), 0] - cx) * s / r)
        elif shape == "aviator":  # wider above, a drop below
            t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
            rim = np.stack([cx + r * 1.05 * np.cos(t), cy + r * 0.8 * np.sin(t) * np.where(np.sin(t) > 0, 1.2, 0.7)],
                           1)
        elif shape == "halfrim":
            rim = ellipse(cx, cy, r * 1.05, r * 0.75, 17, np.pi, 2 * np.pi, closed=False)
        else:
            raise ValueError(f"unknown glasses {shape!r}")
        if g["lens"] is not None and shape != "halfrim":
            parts.append(Part(rim, g["lens"]))
        ring = rim if shape == "halfrim" else np.concatenate([rim, rim[:1]])
        parts.append(Part(ring, g["colour"], line=g["width"]))
        edge = face_width(identity, cy)
        parts.append(Part(np.array([[cx + s * r * 0.98, cy - 0.02], [s * edge, cy - 0.04]]), g["colour"],
                          line=g["width"]))
    bridge, y = e["spacing"] - r, e["height"]
    parts.append(Part(np.array([[-bridge, y - 0.03], [0, y - 0.06], [bridge, y - 0.03]]), g["colour"],
                      line=g["width"]))
    return parts


def clothes_parts(identity: dict) -> list[Part]:
    """The body, static in head units (the head moves above it), scaled about the neck for chibi proportions."""
    c = identity["clothes"]
    sy, w, neck = c["shoulder"], c["width"], identity["neck_width"] * identity["face_aspect"]
    far = 40.0
    t = np.linspace(0, 1, 12)
    slope = np.stack([neck + 0.1 + (w - 0.4 - neck - 0.1) * t, sy + c["drop"] * t ** 2], 1)
    arm = ellipse(w - 0.4, sy + c["drop"] + 0.4, 0.4, 0.4, 10, -np.pi / 2, 0, closed=False)
    right = np.concatenate([slope, arm, [[w, far]]])
    left = (right * [-1, 1])[::-1]
    body = left.tolist()
    collar = c["collar"]
    if collar == "v":
        cut = [[-neck * 0.9, sy], [0, sy + 0.55], [neck * 0.9, sy]]
    elif collar == "turtle":
        cut = [[-neck * 1.1, sy], [neck * 1.1, sy]]
    else:
        cut = ellipse(0, sy - 0.05, neck + 0.08, 0.3, 15, np.pi, 0).tolist()
    body += cut + right.tolist()
    parts = [Part(np.array(body), c["colour"], shaded=True, inked=True)]
    if collar == "turtle":
        parts.append(Part(np.array([[-neck * 1.12, sy + 0.1], [-neck * 1.08, sy - 0.36], [neck * 1.08, sy - 0.36],
                                    [neck * 1.12, sy + 0.1]]), c["trim"], inked=True))
    elif collar == "shirt":
        for s in (-1, 1):
            parts.append(Part(np.array([[s * (neck + 0.12), sy - 0.08], [s * 0.02, sy + 0.22],
                                        [s * (neck + 0.3), sy + 0.18]]), c["trim"], inked=True))
    elif collar in ("crew", "hoodie"):
        rim = ellipse(0, sy - 0.05, neck + 0.08, 0.3, 15, np.pi, 0)
        parts.append(Part(np.concatenate([rim, ellipse(0, sy - 0.05, neck + 0.16, 0.37, 15, 0, np.pi)]), c["trim"]))
        if collar == "hoodie":
            for s in (-1, 1):
                parts.append(Part(np.array([[s * 0.12, sy + 0.25], [s * 0.14, sy + 0.75]]), c["trim"], line=0.03))
    pivot = np.array([0.0, 1.0])
    for p in parts:
        p.points = pivot + (p.points - pivot) * identity["body_scale"]
    return parts


def feature_parts(identity: dict) -> list[Part]:
    """Nose, brows, cheeks: static parts drawn on the face."""
    parts = []
    skin = identity["skin"]
    if identity["blush"] is not None:
        for s in (-1, 1):
            parts.append(Part(ellipse(s * 0.42 * identity["face_aspect"], 0.28, 0.12, 0.07, 24), identity["blush"]))
    if identity["freckles"] is not None:
        g = np.random.default_rng(identity["freckles"]["seed"])
        for s in (-1, 1):
            for _ in range(6):
                x, y = s * g.uniform(0.2, 0.5) * identity["face_aspect"], g.uniform(0.12, 0.32)
                parts.append(Part(ellipse(x, y, 0.018, 0.018, 8), identity["freckles"]["colour"]))
    nose = identity["nose"]
    n, ny, nc = nose["size"], nose["height"], nose["colour"]
    style = nose["style"]
    if style == "button":
        parts.append(Part(ellipse(0, ny, 0.55 * n, 0.42 * n, 24), nose["tip"]))
        for s in (-1, 1):
            parts.append(Part(ellipse(s * 0.3 * n, ny + 0.22 * n, 0.12 * n, 0.08 * n, 12), nc))
    elif style == "line":
        parts.append(Part(np.array([[0.05 * n, ny - 1.4 * n], [0.25 * n, ny + 0.2 * n], [-0.3 * n, ny + 0.4 * n]]),
                          nc, line=0.018))
    elif style == "wedge":
        parts.append(Part(np.array([[0, ny - 1.3 * n], [0.45 * n, ny + 0.35 * n], [-0.15 * n, ny + 0.42 * n]]), nc))
    elif style == "dot":
        parts.append(Part(ellipse(0, ny, 0.2 * n, 0.15 * n, 12), shade(skin, 0.6)))
    b, e = identity["brows"], identity["eyes"]
    if b is not None:
        for s in (-1, 1):
            cx, cy, half = s * e["spacing"], e["height"] - b["lift"] - 0.5 * (e["size"] - 0.1), b["length"]
            t = np.linspace(-1, 1, 9)
            tilt = np.tan(np.radians(b["tilt"]))
            centre = np.stack([cx + s * t * half, cy - b["arch"] * (1 - t ** 2) - tilt * t * half], 1)
            thick = b["thickness"] * (1 - 0.5 * np.clip(t, 0, 1))[:, None]  # tapering to the outer end
            parts.append(Part(np.concatenate([centre - [0, 1] * thick / 2, (centre + [0, 1] * thick / 2)[::-1]]),
                              b["colour"]))
    return parts


def ear_parts(identity: dict) -> list[Part]:
    """Both ears (each with its inner ear and an earring, if any), or none."""
    if not identity["ears"]:
        return []
    ear, parts = identity["ear_size"], []
    for s in (-1, 1):
        x = s * face_width(identity, 0.05)
        parts.append(Part(ellipse(x, 0.05, 0.12 * ear, 0.2 * ear, 24), identity["skin"], inked=True))
        parts.append(Part(ellipse(x + s * 0.02, 0.06, 0.06 * ear, 0.12 * ear, 16), identity["ear"]))
        if identity["earrings"] is not None:
            parts.append(Part(ellipse(x, 0.05 + 0.22 * ear, 0.035, 0.035, 12), identity["earrings"], inked=True))
    return parts


def head_parts(identity: dict) -> list:
    """Back to front, everything of the head; the strings "clothes", "eyes" and "mouth" mark where the static
    body and the moving eyes and mouth go."""
    a, skin = identity["face_aspect"], identity["skin"]
    back, front = hair_parts(identity)
    hair = identity["hair"]["colour"]
    neck = identity["neck_width"] * a
    parts: list = [Part(p, hair, shaded=True, inked=True) for p in back]
    parts.append(Part(np.array([[-neck, 0.4], [-neck * 1.05, 3.0], [neck * 1.05, 3.0], [neck, 0.4]]),
                      identity["neck"], shaded=True, inked=True))
    parts.append("clothes")
    parts += ear_parts(identity)
    parts.append(Part(face_outline(identity), skin, shaded=True, inked=True))
    moustache = identity["beard"] is not None and identity["beard"]["style"] == "moustache"
    if identity["beard"] and not moustache:  # a beard lies on the face, under its features
        parts += beard_parts(identity)[:1]
    parts += feature_parts(identity)
    parts.append("eyes")
    parts.append("mouth")
    if moustache:  # over the mouth
        parts += beard_parts(identity)
    parts += [Part(p, hair, shaded=True, inked=True) for p in front]
    parts += hat_parts(identity)
    parts += glasses_parts(identity)
    return parts


def head_extent(identity: dict) -> np.ndarray:
    """Points outlining the head in head units: face, ears, hair and hat above the chin, the top of the neck."""
    parts = [face_outline(identity)]
    back, front = hair_parts(identity)
    parts += [p[p[:, 1] < 1.0] for p in back + front]
    parts += [p.points for p in hat_parts(identity)]
    ear = identity["ear_size"]
    for s in (-1, 1):
        parts.append(ellipse(s * face_width(identity, 0.05), 0.05, 0.12 * ear, 0.2 * ear, 24))
    neck = identity["neck_width"] * identity["face_aspect"]
    parts.append(np.array([[-neck, 1.3], [neck, 1.3]]))
    return np.concatenate(parts)


def head_hull(identity: dict) -> np.ndarray:
    """The convex outline of `head_extent`, counter-clockwise in head units: the region that moves with the head
    (a pose-code VAE's head mask learns it, vae_pose.py).  [P, 2]"""
    points = sorted(map(tuple, np.round(head_extent(identity), 4)))

    def turns_left(a, b, c) -> bool:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) > 0

    def half(ordered):  # Andrew's monotone chain
        chain: list = []
        for p in ordered:
            while len(chain) >= 2 and not turns_left(chain[-2], chain[-1], p):
                chain.pop()
            chain.append(p)
        return chain[:-1]

    return np.array(half(points) + half(points[::-1]))


# --- what moves: eyes and mouth --------------------------------------------------------------------------------

def eye_parts(identity: dict, blink: float) -> list[Part]:
    e = identity["eyes"]
    style = e["style"]
    rx = e["size"]
    ry = rx * e["roundness"] * (1 - blink) + 1e-3
    parts = []
    for s in (-1, 1):
        cx, cy = s * e["spacing"], e["height"]
        if style == "dots":
            parts.append(Part(ellipse(cx, cy, rx, rx * 1.15 * (1 - blink) + 0.006, 24), e["pupil"]))
            continue
        parts.append(Part(ellipse(cx, cy, rx, ry, 32), e["white"], inked=True))
        iris = 0.75 if style == "anime" else 0.55
        discs = [(e["iris"], iris * rx, iris * rx * (1.25 if style == "anime" else 1.0), 0, 0),
                 (e["pupil"], 0.28 * rx, 0.28 * rx * (1.25 if style == "anime" else 1.0), 0, 0),
                 (e["white"], 0.12 * rx, 0.12 * rx, 0.2 * rx, -0.25 * rx)]
        if style == "anime":
            discs.append((e["white"], 0.07 * rx, 0.07 * rx, -0.25 * rx, 0.3 * rx))
        for fill, rdx, rdy, dx, dy in discs:
            disc = ellipse(cx + dx, cy + dy, rdx, rdy, 20)
            # keep the disc inside the (possibly closing) eye: the eyelids cover the rest
            inside = np.sqrt(np.clip(1 - ((disc[:, 0] - cx) / rx) ** 2, 0, 1)) * ry
            disc[:, 1] = np.clip(disc[:, 1], cy - inside, cy + inside)
            parts.append(Part(disc, fill))
        if style == "sleepy":  # a heavy lid over the top of the eye
            lid = ellipse(cx, cy, rx * 1.05, ry * 1.05, 17, np.pi, 2 * np.pi, closed=False)
            lid = np.concatenate([lid, [[cx + rx * 1.05, cy - 0.35 * ry], [cx - rx * 1.05, cy - 0.35 * ry]]])
            parts.append(Part(lid, identity["skin"]))
        width = e["lash"] * (2.2 if style == "anime" else 1.0)
        upper = ellipse(cx, cy, rx * 1.04, ry, 17, np.pi, 2 * np.pi, closed=False)
        parts.append(Part(upper, e["pupil"], line=width))
        if style in ("lashes", "anime"):
            for k in range(3):
                base = upper[-1 - k * 2] if s > 0 else upper[k * 2]
                tip = base + np.array([s * 0.05, -0.04 - 0.01 * k])
                parts.append(Part(np.stack([base, tip]), e["pupil"], line=e["lash"] * 0.8))
    return parts


def mouth_parts(identity: dict, openness: float, width: float) -> list[Part]:
    """Lips, then the opening with teeth and tongue. The opening's area is proportional to openness whatever the
    width (rounding the lips narrows it and makes it taller by the same factor) and whatever the shape."""
    m = identity["mouth"]
    cy, lip = m["height"], m["lip"]
    k = 0.82 + 0.36 * width
    rx, ry = m["size"] * k, m["open_height"] * openness / k
    parts = []
    if lip > 0:
        parts.append(Part(ellipse(0, cy, rx + 0.8 * lip, ry + lip, 40), identity["lips"]))
    parts.append(Part(np.array([[-rx - 0.3 * lip, cy], [rx + 0.3 * lip, cy]]), m["line"], line=0.016))
    if ry <= 1e-4:
        return parts
    shape = m["shape"]
    if shape == "d":  # flat top, round bottom: the lower half of an ellipse twice as tall
        opening = np.concatenate([ellipse(0, cy - ry * 0.5, rx, 2 * ry, 33, 0, np.pi, closed=False)])
        opening = np.concatenate([opening, [[-rx, cy - ry * 0.5], [rx, cy - ry * 0.5]]])
        top, bottom = cy - 0.5 * ry, cy + 1.5 * ry
    elif shape == "wide":
        opening = superellipse(0, cy, rx, ry, 0.55, 40)
        top, bottom = cy - ry, cy + ry
    else:
        opening = ellipse(0, cy, rx, ry, 40)
        top, bottom = cy - ry, cy + ry
    parts.append(Part(opening, m["interior"], inked=True))
    height = bottom - top
    if m["tongue"] is not None and height > 0.04:
        tongue = ellipse(0, bottom - 0.12 * height, 0.55 * rx, 0.25 * height, 24)
        tongue[:, 1] = np.minimum(tongue[:, 1], bottom - 0.02 * height)
        inside = np.abs(tongue[:, 0]) < rx * np.sqrt(np.clip(1 - ((tongue[:, 1] - (top + bottom) / 2)
                                                                  / (height / 2)) ** 2, 0, 1))
        tongue[~inside, 0] *= 0.8
        parts.append(Part(tongue, m["tongue"]))
    if m["teeth"] is not None:  # the top fifth of the opening: a fixed share, so the interior stays proportional
        band = opening.copy()
        band[:, 1] = np.minimum(band[:, 1], top + 0.2 * height)
        parts.append(Part(band, m["teeth"]))
    return parts


# --- layout ----------------------------------------------------------------------------------------------------

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


# --- backdrops and fields --------------------------------------------------------------------------------------

def value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a random grid of `cells` x `cells`, bicubically upsampled. [size, size]"""
    from PIL import Image

    grid = rng.uniform(0, 1, (cells + 1, cells + 1)).astype(np.float32)
    up = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(up) * 2 - 1, -1, 1)


def backdrop(background: dict, size: int) -> np.ndarray:
    """The background at `size` pixels: uint8 [size, size, 3]."""
    from .images import photo

    first, second = (np.asarray(c, np.float32) for c in background["colours"])
    kind = background["kind"]
    rng = np.random.default_rng(background["seed"])
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = np.radians(background["angle"])
    along = xs * np.cos(angle) + ys * np.sin(angle)
    spacing, dot = background["spacing"], background["size"]
    if kind == "photo":
        picture = photo(background["photo"])
        h, w = picture.shape[:2]
        fx, fy, fraction = background["crop"]
        side = max(16, int(min(h, w) * fraction))
        x0, y0 = int(fx * (w - side)), int(fy * (h - side))
        from PIL import Image

        crop = Image.fromarray(picture[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.BICUBIC)
        image = np.asarray(crop, np.float32)
        if np.ptp(image.reshape(-1, 3).mean(0)) < 1 and np.allclose(image[..., 0], image[..., 1]):
            mix = image[..., :1] / 255  # a grey texture: tinted between the two colours
            image = second + (first - second) * mix
        return np.clip(np.round(image), 0, 255).astype(np.uint8)
    if kind == "gradient":
        mix = np.clip(along - along.min(), 0, None) / max(float(np.ptp(along)), 1e-6)
    elif kind == "radial":
        mix = np.clip(np.hypot(xs - 0.5, ys - 0.5) * 1.6, 0, 1)
    elif kind == "stripes":
        mix = (np.floor(along / spacing) % 2).astype(np.float32)
    elif kind == "checks":
        across = -xs * np.sin(angle) + ys * np.cos(angle)
        mix = ((np.floor(along / spacing) + np.floor(across / spacing)) % 2).astype(np.float32)
    elif kind == "dots":
        gx, gy = (xs / spacing) % 1 - 0.5, (ys / spacing) % 1 - 0.5
        mix = np.clip((dot * 0.5 - np.hypot(gx, gy)) * spacing * size * 0.5 + 0.5, 0, 1)
    elif kind == "noise":
        mix = value_noise(rng, size, int(rng.integers(3, 12))) * 0.5 + 0.5
    else:  # solid
        mix = np.zeros((size, size), np.float32)
    image = first + (second - first) * mix[:, :, None]
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


# --- the painter -----------------------------------------------------------------------------------------------

class Painter:
    """Draws one identity's frames; everything that does not change from frame to frame is prepared once."""

    def __init__(self, identity: dict, size: int, centre: np.ndarray, unit: float):
        from PIL import Image

        self.identity, self.size, self.unit = identity, size, unit
        self.style = identity["style"]
        big = size * SUPERSAMPLE
        self.background = Image.fromarray(backdrop(identity["background"], big))
        self.head = head_parts(identity)
        rest = np.array([[unit, 0, centre[0]], [0, unit, centre[1]]])
        self.clothes = [(p, apply(rest, p.points) * SUPERSAMPLE) for p in clothes_parts(identity)]
        self.finish = Finish(self.style, size)

    def frame(self, m: np.ndarray, openness: float, width: float, blink: float) -> np.ndarray:
        """One frame: the head placed by the 2x3 map m (head units -> pixels). uint8 [size, size, 3]"""
        from PIL import ImageDraw

        image = self.background.copy()
        draw = ImageDraw.Draw(image)
        scale = m * SUPERSAMPLE
        for part in self.head:
            if part == "clothes":
                for p, xy in self.clothes:
                    self.stroke(draw, p, xy)
                continue
            if isinstance(part, str):
                moving = eye_parts(self.identity, blink) if part == "eyes" else mouth_parts(self.identity, openness,
                                                                                               width)
                for p in moving:
                    self.stroke(draw, p, apply(scale, p.points))
            else:
                self.stroke(draw, part, apply(scale, part.points))
        return self.finish(np.asarray(image.reduce(SUPERSAMPLE)))

    def stroke(self, draw, part: Part, xy: np.ndarray):
        """Draw one part at supersampled pixels xy, with the style's outline and cel shading where it takes them."""
        pen = self.unit * SUPERSAMPLE
        if part.line is not None:
            draw.line(xy.ravel().tolist(), fill=tuple(part.colour), width=max(1, round(part.line * pen)),
                      joint="curve")
            return
        cel, ink = self.style["cel"], self.style["outline"]
        outline = {}
        if ink is not None and part.inked:
            outline = {"outline": tuple(ink["colour"]), "width": max(1, round(ink["width"] * pen))}
        if cel is not None and part.shaded:
            draw.polygon(xy.ravel().tolist(), fill=tuple(shade(part.colour, cel["depth"])), **outline)
            size = float(np.ptp(xy, axis=0).max())
            toward = np.array([np.cos(np.radians(cel["angle"])), np.sin(np.radians(cel["angle"]))])
            middle = xy.mean(0)
            lit = middle + (xy - middle) * 0.9 + toward * cel["offset"] * size
            draw.polygon(lit.ravel().tolist(), fill=tuple(part.colour))
            if outline:  # the outline stays on top of the lit part
                draw.polygon(xy.ravel().tolist(), fill=None, **outline)
            return
        draw.polygon(xy.ravel().tolist(), fill=tuple(part.colour), **outline)


class Finish:
    """The style's whole-frame pass: lighting, texture, painterly smearing, held-out looks. Fields made once."""

    def __init__(self, style: dict, size: int):
        self.style, self.size = style, size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
        self.light = None
        if style["light"] is not None:
            a = np.radians(style["light"]["angle"])
            ramp = 1 + style["light"]["strength"] * (xs * np.cos(a) + ys * np.sin(a)) * 2
            self.light = ramp[..., None] * (np.asarray(style["light"]["tint"], np.float32) / 255)
        self.texture = None
        t = style["texture"]
        if t is not None:
            rng = np.random.default_rng(t["seed"])
            if t["kind"] == "grain":
                field = rng.normal(0, 1, (size, size)).astype(np.float32)
            elif t["kind"] == "fibres":
                from PIL import Image

                raw = Image.fromarray(((rng.normal(0, 1, (size, size)) * 40 + 128).clip(0, 255)).astype(np.uint8))
                streak = raw.resize((size, max(1, size // 6)), Image.BOX).resize((size, size), Image.BILINEAR)
                field = (np.asarray(streak, np.float32) - 128) / 20
            else:  # canvas: a woven grid
                period = 2 + t["scale"]
                field = np.sin(xs * size * 2 * np.pi / period) * np.sin(ys * size * 2 * np.pi / period) * 1.5
            self.texture = 1 + t["strength"] * np.clip(field, -2.5, 2.5)[..., None] / 2.5
        p = style["painterly"]
        self.warp = None
        if p is not None:
            rng = np.random.default_rng(p["seed"])
            cells = max(4, size // 12)
            dx, dy = (value_noise(rng, size, cells) * p["wobble"] for _ in range(2))
            iy, ix = np.mgrid[0:size, 0:size]
            self.warp = (np.clip(np.round(iy + dy), 0, size - 1).astype(np.intp),
                         np.clip(np.round(ix + dx), 0, size - 1).astype(np.intp))
            strokes = value_noise(rng, size, max(8, size // 4))
            self.strokes = 1 + p["strokes"] * strokes[..., None]
        e = style["effect"]
        if e is not None and e["kind"] == "watercolour":
            rng = np.random.default_rng(e["seed"])
            self.paper = 1 + 0.05 * value_noise(rng, size, max(8, size // 3))[..., None]
        if e is not None and e["kind"] == "halftone":
            a = np.radians(e["angle"])
            u = (xs * np.cos(a) + ys * np.sin(a)) * size / e["cell"]
            v = (-xs * np.sin(a) + ys * np.cos(a)) * size / e["cell"]
            self.dot_distance = np.hypot(u - np.round(u), v - np.round(v))  # 0 at a dot's centre .. 0.71

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The drawing is finished first (smeared, or printed in a held-out look), then textured and lit: light
        falls on the print, as on paper, and each look sees the palette it was drawn in."""
        from PIL import Image, ImageFilter

        s = self.style
        x = frame.astype(np.float32)
        if self.warp is not None:
            x = x[self.warp[0], self.warp[1]]
            x = np.asarray(Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(s["painterly"]["blur"])), np.float32) * self.strokes
        e = s["effect"]
        if e is not None:
            x = getattr(self, e["kind"])(np.clip(x, 0, 255), e)
        if self.texture is not None:
            x = x * self.texture
        if self.light is not None:
            x = x * self.light
        return np.clip(np.round(x), 0, 255).astype(np.uint8)

    def halftone(self, x: np.ndarray, e: dict) -> np.ndarray:
        """Comic print: each colour as dots of ink on white, dots grow with the tone's darkness."""
        lum = (x @ np.array([0.299, 0.587, 0.114], np.float32)) / 255
        radius = 0.62 * np.sqrt(np.clip(0.3 + 0.7 * (1 - lum), 0, 1))
        inside = np.clip((radius - self.dot_distance) * e["cell"], 0, 1)[..., None]
        paper = x + (255 - x) * 0.7
        return paper + (x - paper) * inside

    def watercolour(self, x: np.ndarray, e: dict) -> np.ndarray:
        """Washes that bleed past their edges, pigment pooling at the edges, on grainy paper."""
        from PIL import Image, ImageFilter

        image = Image.fromarray(x.astype(np.uint8))
        soft = np.asarray(image.filter(ImageFilter.GaussianBlur(e["bleed"])), np.float32)
        wide = np.asarray(image.filter(ImageFilter.GaussianBlur(e["bleed"] * 3)), np.float32)
        edges = np.abs(soft - wide).mean(-1, keepdims=True) / 255
        pooled = soft * (1 - e["pooling"] * np.clip(edges * 4, 0, 1))
        paper = np.asarray(e["paper"], np.float32)
        return (pooled + (paper - pooled) * e["wash"]) * self.paper

    def pixel(self, x: np.ndarray, e: dict) -> np.ndarray:
        """Pixel art: blocks of `block` pixels, each channel posterised to `levels`."""
        from PIL import Image

        n = self.size // e["block"]
        small = np.asarray(Image.fromarray(x.astype(np.uint8)).resize((n, n), Image.BOX), np.float32)
        step = 255 / (e["levels"] - 1)
        small = np.round(small / step) * step
        return np.asarray(Image.fromarray(small.astype(np.uint8)).resize((self.size, self.size), Image.NEAREST),
                          np.float32)

    def duotone(self, x: np.ndarray, e: dict) -> np.ndarray:
        """Two inks only: the tone picks a mix of ink and paper in three steps (ink, half, paper). The skin's tone
        is the half step, so whatever the palette, darker features print in ink and lighter ones on bare paper."""
        lum = (x @ np.array([0.299, 0.587, 0.114], np.float32)) / 255
        soft, skin = e["softness"], e["skin"]
        step = [np.clip((lum - edge) / soft + 0.5, 0, 1) for edge in (skin - 0.1, skin + 0.12)]
        level = (step[0] + step[1]) / 2
        ink, paper = (np.asarray(c, np.float32) for c in (e["ink"], e["paper"]))
        return ink + (paper - ink) * level[..., None]
