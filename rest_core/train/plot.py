"""Loss curves as a PNG, drawn with Pillow (no plotting library needed): one panel per logged term, log-scale y,
the raw values faint and a running mean on top."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PANEL_W, PANEL_H, MARGIN = 420, 220, 48
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
SKIP = {"step", "lr", "seconds"}


def running_mean(y: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or len(y) < 2:
        return y
    kernel = np.ones(min(width, len(y))) / min(width, len(y))
    padded = np.concatenate([np.full(len(kernel) - 1, y[0]), y])
    return np.convolve(padded, kernel, mode="valid")


def plot_losses(csv_path: str | Path, png_path: str | Path, title: str = ""):
    rows = list(csv.DictReader(Path(csv_path).open()))
    if not rows:
        return
    steps = np.array([float(r["step"]) for r in rows])
    names = [k for k in rows[0] if k not in SKIP]
    cols = 2 if len(names) > 1 else 1
    grid_rows = math.ceil(len(names) / cols)
    image = Image.new("RGB", (cols * PANEL_W, grid_rows * PANEL_H + 24), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 6), f"{title}  (steps {int(steps[0])}-{int(steps[-1])})", fill="black")
    for i, name in enumerate(names):
        y = np.array([float(r[name]) if r[name] else math.nan for r in rows])  # empty: not logged at that step
        x0, y0 = (i % cols) * PANEL_W, 24 + (i // cols) * PANEL_H
        logged = np.isfinite(y)
        panel(draw, (x0, y0), steps[logged], y[logged], name, COLOURS[i % len(COLOURS)])
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    image.save(png_path)


def panel(draw: ImageDraw.ImageDraw, origin, steps: np.ndarray, y: np.ndarray, name: str, colour):
    x0, y0 = origin
    left, top, right, bottom = x0 + MARGIN, y0 + 16, x0 + PANEL_W - 12, y0 + PANEL_H - 24
    draw.rectangle([left, top, right, bottom], outline=(180, 180, 180))
    draw.text((left, y0 + 2), name, fill="black")
    positive = y[y > 0]
    if len(positive) == 0:
        return
    log = np.log10(np.clip(y, positive.min(), None))
    lo, hi = np.floor(log.min()), np.ceil(log.max())
    hi = hi if hi > lo else lo + 1
    span = max(steps[-1] - steps[0], 1)

    def to_xy(s, v):
        return (left + (s - steps[0]) / span * (right - left), bottom - (v - lo) / (hi - lo) * (bottom - top))

    for decade in range(int(lo), int(hi) + 1):
        _, gy = to_xy(steps[0], decade)
        draw.line([left, gy, right, gy], fill=(235, 235, 235))
        draw.text((x0 + 4, gy - 6), f"1e{decade}", fill=(90, 90, 90))
    draw.text((left, bottom + 6), f"{int(steps[0])}", fill=(90, 90, 90))
    draw.text((right - 40, bottom + 6), f"{int(steps[-1])}", fill=(90, 90, 90))
    faint = tuple(int(c + (255 - c) * 0.7) for c in colour)
    draw.line([to_xy(s, v) for s, v in zip(steps, log)], fill=faint, width=1)
    smooth = running_mean(log, max(1, len(log) // 50))
    draw.line([to_xy(s, v) for s, v in zip(steps, smooth)], fill=colour, width=2)
