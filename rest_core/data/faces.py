"""Who is drawn: a random identity for the procedural corpus, and the drawing styles it is drawn in.

An identity is a plain JSON-able dict (it goes into every clip's sidecar) of palette, shape, features and style.
It varies along every axis a user's character might: any palette (non-human skin included), face geometry from
long to round to chibi, eyes from dots to large anime eyes, glasses, hats, beards, accessories, backgrounds from
flat colour to public-domain photographs, framing and lighting. No colour is reserved for anything, the mouth
included: its interior, lips and teeth are drawn from the palette too, only kept distinct enough from the skin to
be seen, so nothing downstream may read the mouth off one colour.

Drawing styles come in *families*, and the families are split: `TRAIN_STYLES` are what the training generator
draws; `HELDOUT_STYLES` are drawn only on request (`synth --looks heldout`) and never by the training generator,
so a model evaluated on them has never seen the style, not just the seed:

- training: flat, outlined, cel-shaded, textured (grain and fibres), painterly (smeared edges, brush noise);
- held-out: halftone (comic ink with Ben-Day dots), watercolour (soft bleeding washes on paper), pixel art
  (blocky, posterised), duotone (two inks only, like a print).

Colours are RGB 0..255; shapes are in head units (the face ellipse's vertical radius is 1, its centre the origin,
y pointing down: the chin at y = 1, the eyes near y = -0.1, the mouth near y = 0.5).
"""

from __future__ import annotations

import colorsys

import numpy as np

TRAIN_STYLES = ("flat", "outlined", "shaded", "textured", "painterly")
HELDOUT_STYLES = ("halftone", "watercolour", "pixel", "duotone")

HUMAN_SKIN = np.array([(255, 228, 206), (244, 206, 176), (232, 186, 150), (214, 160, 120), (190, 134, 96),
                       (160, 108, 74), (128, 84, 58), (98, 64, 44), (72, 48, 34), (56, 38, 28)], float)
HAIR_STYLES = ("short", "buzz", "fringe", "bob", "long", "curly", "bald", "spiky", "bun")
EYE_STYLES = ("oval", "dots", "anime", "lashes", "sleepy")
MOUTH_SHAPES = ("oval", "d", "wide")
GLASSES = ("round", "square", "cateye", "aviator", "halfrim", "big")
HATS = ("beanie", "cap", "tophat", "bow", "headband")
BEARDS = ("full", "goatee", "moustache", "chinstrap")
COLLARS = ("crew", "v", "shirt", "turtle", "hoodie")
FRAMING = (0.42, 0.85)  # the face box's share of the frame's side
BACKGROUNDS = ("solid", "gradient", "radial", "stripes", "dots", "checks", "noise", "photo")


def colour(rgb) -> list[int]:
    return [int(np.clip(round(float(c)), 0, 255)) for c in rgb]


def hsv(rng: np.random.Generator, hue=(0, 1), saturation=(0, 1), value=(0, 1)) -> list[int]:
    rgb = colorsys.hsv_to_rgb(rng.uniform(*hue) % 1, rng.uniform(*saturation), rng.uniform(*value))
    return colour(np.array(rgb) * 255)


def shade(rgb, factor: float, tint=(0, 0, 0)) -> list[int]:
    return colour(np.asarray(rgb, float) * factor + np.asarray(tint, float))


def jitter(rng: np.random.Generator, rgb, amount: float) -> list[int]:
    return colour(np.asarray(rgb, float) + rng.uniform(-amount, amount, 3))


def distance(a, b) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=float)))


def luminance(rgb) -> float:
    return float(np.dot(rgb, (0.299, 0.587, 0.114)))


def apart(draw, others: list, margin: float, tries: int = 40) -> list[int]:
    """A colour from `draw()` at least `margin` from every colour in `others` (the farthest of `tries` if none is)."""
    best, best_gap = None, -1.0
    for _ in range(tries):
        c = draw()
        gap = min((distance(c, o) for o in others), default=np.inf)
        if gap >= margin:
            return c
        if gap > best_gap:
            best, best_gap = c, gap
    return best


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.uniform() < p)


# --- palette ---------------------------------------------------------------------------------------------------

def skin_colour(rng: np.random.Generator) -> list[int]:
    if chance(rng, 0.55):  # human tones, interpolated along the table
        tone = rng.uniform(0, len(HUMAN_SKIN) - 1)
        low = int(tone)
        rgb = HUMAN_SKIN[low] + (HUMAN_SKIN[min(low + 1, len(HUMAN_SKIN) - 1)] - HUMAN_SKIN[low]) * (tone - low)
        return jitter(rng, rgb, 10)
    return hsv(rng, saturation=(0.15, 0.8), value=(0.35, 0.98))  # green, blue, purple, grey ... characters


def hair_colour(rng: np.random.Generator) -> list[int]:
    if chance(rng, 0.6):
        return hsv(rng, hue=(0.02, 0.12), saturation=(0.2, 0.8), value=(0.08, 0.9))  # blacks, browns, blondes
    return hsv(rng, saturation=(0.0, 1.0), value=(0.15, 1.0))


def mouth_colours(rng: np.random.Generator, skin, lips) -> dict:
    """Interior, teeth and tongue: any hue, but the interior stands out from the lips and skin around it."""
    def interior():
        if chance(rng, 0.5):
            return hsv(rng, hue=(-0.08, 0.06), saturation=(0.3, 1.0), value=(0.1, 0.65))  # dark reds
        return hsv(rng, saturation=(0.0, 1.0), value=(0.02, 0.9))

    inside = None
    for _ in range(60):  # a mouth is seen by its colour and by its tone (two-ink prints keep only the tone)
        inside = interior()
        if (min(distance(inside, skin), distance(inside, lips)) >= 90
                and abs(luminance(inside) - luminance(skin)) >= 45):
            break
    teeth = apart(lambda: hsv(rng, saturation=(0, 0.25), value=(0.75, 1.0)), [inside], 70)
    tongue = apart(lambda: hsv(rng, hue=(-0.05, 0.05), saturation=(0.3, 0.8), value=(0.4, 0.95)), [inside], 50)
    return {"interior": inside, "teeth": teeth if chance(rng, 0.7) else None,
            "tongue": tongue if chance(rng, 0.4) else None}


# --- styles ----------------------------------------------------------------------------------------------------

def sample_style(rng: np.random.Generator, family: str, skin) -> dict:
    """How the identity is drawn. Every family may also carry a lighting tint (a soft directional gradient)."""
    u = rng.uniform
    style = {"family": family, "outline": None, "cel": None, "texture": None, "painterly": None, "effect": None,
             "light": None}
    if chance(rng, 0.5):
        style["light"] = {"angle": u(0, 360), "strength": u(0.05, 0.3), "tint": hsv(rng, saturation=(0, 0.4),
                                                                                     value=(0.85, 1.0))}
    ink = hsv(rng, saturation=(0, 0.6), value=(0.0, 0.35))
    if family == "outlined":
        style["outline"] = {"width": u(0.012, 0.045), "colour": ink}
    elif family == "shaded":
        style["cel"] = {"depth": u(0.65, 0.88), "angle": u(0, 360), "offset": u(0.04, 0.09)}
        if chance(rng, 0.5):
            style["outline"] = {"width": u(0.008, 0.025), "colour": ink}
    elif family == "textured":
        style["texture"] = {"kind": pick(rng, ("grain", "fibres", "canvas")), "strength": u(0.06, 0.2),
                            "scale": u(1.0, 4.0), "seed": int(rng.integers(2**31))}
        if chance(rng, 0.4):
            style["outline"] = {"width": u(0.008, 0.03), "colour": ink}
    elif family == "painterly":
        style["painterly"] = {"wobble": u(0.6, 2.0), "blur": u(0.4, 1.4), "strokes": u(0.04, 0.14),
                              "seed": int(rng.integers(2**31))}
        if chance(rng, 0.3):
            style["cel"] = {"depth": u(0.75, 0.9), "angle": u(0, 360), "offset": u(0.04, 0.08)}
    elif family == "halftone":
        style["outline"] = {"width": u(0.03, 0.06), "colour": [12, 12, 16]}
        style["cel"] = {"depth": 1.0, "angle": u(0, 360), "offset": u(0.05, 0.09)}  # the shadow is dots, not tone
        style["effect"] = {"kind": "halftone", "cell": u(4.5, 7.0), "angle": u(10, 40), "ink": [12, 12, 16]}
    elif family == "watercolour":
        style["effect"] = {"kind": "watercolour", "bleed": u(0.8, 1.8), "wash": u(0.15, 0.35),
                           "pooling": u(0.3, 0.7), "paper": hsv(rng, hue=(0.08, 0.15), saturation=(0, 0.12),
                                                                value=(0.92, 1.0)),
                           "seed": int(rng.integers(2**31))}
    elif family == "pixel":
        style["outline"] = {"width": u(0.02, 0.04), "colour": ink} if chance(rng, 0.6) else None
        style["effect"] = {"kind": "pixel", "block": int(rng.integers(4, 7)), "levels": int(rng.integers(4, 7))}
    elif family == "duotone":
        style["outline"] = {"width": u(0.015, 0.03), "colour": [0, 0, 0]}
        style["effect"] = {"kind": "duotone", "ink": hsv(rng, saturation=(0.3, 1.0), value=(0.1, 0.45)),
                           "paper": hsv(rng, saturation=(0.0, 0.35), value=(0.82, 1.0)), "softness": u(0.04, 0.1),
                           "skin": luminance(skin) / 255}
    elif family != "flat":
        raise ValueError(f"unknown drawing style {family!r}; choose one of {TRAIN_STYLES + HELDOUT_STYLES}")
    return style


def style_families(looks: str) -> tuple[str, ...]:
    """'train' -> the training generator's families; 'heldout' -> the held-out ones; one family's name -> it."""
    if looks == "train":
        return TRAIN_STYLES
    if looks == "heldout":
        return HELDOUT_STYLES
    if looks in TRAIN_STYLES + HELDOUT_STYLES:
        return (looks,)
    raise ValueError(f"--looks {looks!r}: choose train, heldout or one family of "
                     f"{', '.join(TRAIN_STYLES + HELDOUT_STYLES)}")


# --- the identity ----------------------------------------------------------------------------------------------

def background(rng: np.random.Generator, skin) -> dict:
    u = rng.uniform
    kind = pick(rng, BACKGROUNDS)
    muted = chance(rng, 0.5)
    draw = lambda: hsv(rng, saturation=(0.0, 0.35) if muted else (0.3, 0.95), value=(0.2, 1.0))  # noqa: E731
    first = apart(draw, [skin], 60)
    second = apart(draw, [first], 40) if chance(rng, 0.6) else shade(first, u(0.5, 0.85))
    return {"kind": kind, "colours": [first, second], "angle": u(0, 180), "spacing": u(0.04, 0.2),
            "size": u(0.2, 0.6), "photo": None, "crop": [u(), u(), u(0.3, 1.0)], "seed": int(rng.integers(2**31))}


def sample_identity(rng: np.random.Generator, looks: str = "train") -> dict:
    u = rng.uniform
    family = pick(rng, style_families(looks))
    skin = skin_colour(rng)
    lips = shade(skin, u(0.6, 0.85), (u(0, 30), u(-15, 5), u(-10, 10))) if chance(rng, 0.6) else hsv(
        rng, saturation=(0.2, 0.9), value=(0.25, 0.9))
    hair = hair_colour(rng)
    chibi = chance(rng, 0.2)
    aspect = u(0.85, 1.0) if chibi else u(0.62, 0.95)

    eye_style = "anime" if chibi and chance(rng, 0.6) else pick(rng, EYE_STYLES)
    eye_size = {"anime": u(0.14, 0.2), "dots": u(0.04, 0.07)}.get(eye_style, u(0.09, 0.14)) * (1.2 if chibi else 1)
    eyes = {"style": eye_style, "spacing": u(0.26, 0.4), "height": u(-0.05, 0.08) if chibi else u(-0.16, -0.04),
            "size": eye_size, "roundness": u(0.5, 0.85) if eye_style != "anime" else u(1.1, 1.5),
            "iris": hsv(rng, saturation=(0.2, 1.0), value=(0.2, 0.9)),
            "white": hsv(rng, saturation=(0, 0.12), value=(0.85, 1.0)),
            "pupil": hsv(rng, saturation=(0, 0.5), value=(0.0, 0.15)), "lash": u(0.015, 0.04)}
    open_height = u(0.08, 0.16)
    mouth = {"shape": pick(rng, MOUTH_SHAPES), "height": u(0.42, 0.52) if chibi else u(0.48, 0.6),
             "size": u(0.12, 0.2) if chibi else u(0.15, 0.26), "open_height": open_height,
             "lip": u(0.0, 0.05) if chance(rng, 0.7) else 0.0, "line": shade(lips, u(0.4, 0.7)),
             **mouth_colours(rng, skin, lips)}
    identity = {
        "looks": "heldout" if family in HELDOUT_STYLES else "train",
        "style": sample_style(rng, family, skin),
        "skin": skin, "lips": lips, "neck": shade(skin, u(0.75, 0.9)), "ear": shade(skin, u(0.75, 0.88)),
        "face_aspect": aspect, "jaw": u(0.5, 0.98), "jaw_curve": u(1.3, 4.5), "ear_size": u(0.6, 1.3),
        "ears": chance(rng, 0.85), "neck_width": u(0.3, 0.6), "chibi": chibi,
        "body_scale": u(0.55, 0.8) if chibi else u(0.9, 1.15),
        "hair": {"style": pick(rng, HAIR_STYLES), "colour": hair, "volume": u(0.04, 0.18), "top": u(0.08, 0.3),
                 "hairline": u(-0.65, -0.45), "part": u(-0.4, 0.4)},
        "eyes": eyes,
        "brows": {"colour": shade(hair, u(0.5, 0.9)) if chance(rng, 0.7) else hsv(rng, value=(0.05, 0.6)),
                  "thickness": u(0.015, 0.07), "length": u(0.09, 0.18), "tilt": u(-15, 15), "arch": u(0.0, 0.06),
                  "lift": u(0.12, 0.24)} if chance(rng, 0.9) else None,
        "nose": {"style": pick(rng, ("button", "line", "wedge", "dot", "none")), "size": u(0.06, 0.15),
                 "height": u(0.12, 0.28) if not chibi else u(0.14, 0.22), "colour": shade(skin, u(0.7, 0.88)),
                 "tip": shade(skin, u(0.9, 1.08))},
        "mouth": mouth,
        "clothes": {"colour": hsv(rng, saturation=(0.0, 0.95), value=(0.1, 0.95)),
                    "collar": pick(rng, COLLARS), "trim": hsv(rng, saturation=(0, 0.9), value=(0.2, 1.0)),
                    "shoulder": u(1.15, 1.4), "width": u(1.8, 2.8), "drop": u(0.2, 0.5)},
        "background": background(rng, skin),
        "glasses": None, "hat": None, "beard": None,
        "blush": hsv(rng, hue=(-0.05, 0.05), saturation=(0.3, 0.7), value=(0.7, 1.0)) if chance(rng, 0.25) else None,
        "freckles": {"colour": shade(skin, u(0.6, 0.8)), "seed": int(rng.integers(2**31))} if chance(rng, 0.12)
        else None,
        "earrings": hsv(rng, value=(0.5, 1.0)) if chance(rng, 0.2) else None,
        "framing": {"face": u(*FRAMING), "dx": u(-1, 1), "dy": u(-1, 1)},
    }
    if chance(rng, 0.3):
        lens = hsv(rng, value=(0.05, 0.6)) if chance(rng, 0.2) else None
        identity["glasses"] = {"shape": pick(rng, GLASSES), "colour": hsv(rng, value=(0.0, 0.9)),
                               "width": u(0.012, 0.04), "size": u(1.3, 1.8), "lens": lens}
    if chance(rng, 0.25):
        identity["hat"] = {"style": pick(rng, HATS), "colour": hsv(rng, value=(0.1, 0.95)),
                           "trim": hsv(rng, value=(0.1, 1.0)), "tilt": u(-8, 8)}
    if chance(rng, 0.2) and not chibi:
        identity["beard"] = {"style": pick(rng, BEARDS), "colour": shade(hair, u(0.7, 1.0))}
    if identity["background"]["kind"] == "photo":
        from .images import BACKGROUND_PHOTOS

        identity["background"]["photo"] = pick(rng, sorted(BACKGROUND_PHOTOS))
    return identity
