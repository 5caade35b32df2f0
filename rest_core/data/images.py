"""Public-domain photographs that travel inside scikit-image's wheel (`skimage/data/`), read from its installed
files with Pillow: nothing is downloaded. Each file is checked against its SHA-256 before use, and each entry says
where the picture comes from and under which terms (from scikit-image's own `skimage.data` documentation).
A greyscale picture comes back as three equal channels.

`BACKGROUND_PHOTOS` are crops behind the corpus' faces; `PORTRAITS` are the evaluation's photographs of people,
never used in training. scikit-image is a dependency of training and evaluation only (the `test` extra), never of
the plugin.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

@dataclass(frozen=True)
class Photo:
    file: str  # in skimage/data
    sha256: str
    source: str  # who made it, and under which terms
    face_box: tuple[int, int, int, int] | None = None  # portraits: the square to animate [x0, y0, x1, y1]
    mouth_box: tuple[int, int, int, int] | None = None  # portraits: where the mouth expert reads the mouth


BACKGROUND_PHOTOS = {
    "coffee": Photo("coffee.png", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
                    "a cup of coffee, photograph by Rachel Michetti, CC0"),
    "chelsea": Photo("chelsea.png", "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
                     "Chelsea the cat, photograph by Stefan van der Walt, CC0"),
    "rocket": Photo("rocket.jpg", "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
                    "a SpaceX Falcon 9 rocket, photograph by SpaceX, released into the public domain"),
    "hubble": Photo("hubble_deep_field.jpg", "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
                    "the Hubble eXtreme Deep Field, NASA, public domain"),
    "brick": Photo("brick.png", "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
                   "a brick wall, CC0Textures (Bricks25), CC0"),
    "grass": Photo("grass.png", "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
                   "grass, by linolafett on DeviantArt, CC0"),
    "gravel": Photo("gravel.png", "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
                    "gravel, CC0Textures (Gravel04), CC0"),
}
# The boxes were placed by hand on the pictures (512 x 512 both).
PORTRAITS = {
    "astronaut": Photo("astronaut.png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
                       "astronaut Eileen Collins, NASA Great Images database, public domain",
                       face_box=(114, 8, 338, 232), mouth_box=(195, 118, 253, 176)),
    "camera": Photo("camera.png", "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
                    "a man with a film camera, in profile, greyscale, photograph by Lav Varshney, CC0",
                    face_box=(145, 65, 295, 215), mouth_box=(212, 166, 256, 210)),
}


def skimage_data() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise ValueError("scikit-image is not installed; its bundled public-domain photographs are used by the "
                         "corpus and the evaluation: pip install scikit-image (the project's `test` extra has it)")
    return Path(spec.origin).parent / "data"


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """A named photograph as uint8 RGB [H, W, 3], read once and shared: the array is read-only."""
    from PIL import Image

    entry = BACKGROUND_PHOTOS.get(name) or PORTRAITS.get(name)
    if entry is None:
        raise ValueError(f"unknown photograph {name!r}; known: {sorted(BACKGROUND_PHOTOS) + sorted(PORTRAITS)}")
    path = skimage_data() / entry.file
    if not path.is_file():
        raise ValueError(f"{path} is missing from the installed scikit-image; reinstall it")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry.sha256:
        raise ValueError(f"{path}: SHA-256 {digest} is not the recorded {entry.sha256}; this scikit-image carries "
                         f"another picture under that name")
    with Image.open(path) as image:
        picture = np.array(image.convert("RGB"))
    picture.setflags(write=False)
    return picture
