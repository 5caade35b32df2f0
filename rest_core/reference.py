"""The portrait's square: where it is cut from the source image, how it becomes the model's reference, and how the
generated frames go back into the source.

The square is the largest centred one unless the caller chooses it: a box (top, left, size in source pixels) or the
smallest square holding a mask's region. The model was trained on squares whose face fills roughly 40-85 % of the
side, so a box around the head with some margin works best. Paste-back is the inverse of the crop: the frames are
resized to the box and blended into the source over a feathered border.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import as_tensor, unbatch

MIN_IMAGE_SIDE = 32
# The largest portrait taken: H.264's largest frame (level 6.2, e.g. 8192x4352), since the face is pasted back into
# the whole portrait and written into an mp4; larger ones are refused before any pixel of them is touched.
MAX_IMAGE_PIXELS = 8192 * 4352


@dataclass(frozen=True)
class CropBox:
    """The square of the source image the reference is taken from, in source pixels."""

    top: int
    left: int
    size: int

    @classmethod
    def centred(cls, height: int, width: int) -> "CropBox":
        size = min(height, width)
        return cls(top=(height - size) // 2, left=(width - size) // 2, size=size)

    @classmethod
    def holding(cls, mask: Tensor) -> "CropBox":
        """The smallest square holding the mask's region (values > 0.5), moved inside the image where it would
        cross its border, and no larger than the image's short side.  mask: [H, W] or [1, H, W]"""
        left, top, right, bottom = mask_bounds(mask, "paint the face, or disconnect the mask to use the centred "
                                                     "square")
        height, width = as_tensor("mask", mask, "[H, W]").shape[-2:]
        size = min(max(bottom - top, right - left, MIN_IMAGE_SIDE), height, width)
        centre_y, centre_x = (top + bottom) // 2, (left + right) // 2
        top = min(max(centre_y - size // 2, 0), height - size)
        left = min(max(centre_x - size // 2, 0), width - size)
        return cls(top=top, left=left, size=size)

    def map(self, box, resolution: int) -> list[float]:
        """A box [x0, y0, x1, y1] in source pixels -> in the pixels of this square resized to `resolution`."""
        scale = resolution / self.size
        x0, y0, x1, y1 = box
        return [(x0 - self.left) * scale, (y0 - self.top) * scale, (x1 - self.left) * scale,
                (y1 - self.top) * scale]

    def check(self, height: int, width: int) -> "CropBox":
        """This box, if it lies inside a height x width image; else a ValueError that says what fits."""
        if self.size < MIN_IMAGE_SIDE:
            raise ValueError(f"face box: size {self.size} is too small; give at least {MIN_IMAGE_SIDE} pixels")
        if self.top < 0 or self.left < 0 or self.top + self.size > height or self.left + self.size > width:
            raise ValueError(f"face box x={self.left}, y={self.top}, size={self.size} reaches outside the "
                             f"{width}x{height} image; choose x + size <= {width} and y + size <= {height}")
        return self


def mask_bounds(mask, empty_hint: str) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1, in pixels, x1 and y1 past the last) of a mask's region (values > 0.5).
    mask: [H, W] or [1, H, W]; empty_hint: what to do about an empty mask"""
    mask = unbatch("mask", as_tensor("mask", mask, "[H, W]"), 3, "give one mask")
    if mask.dim() != 2:
        raise ValueError(f"mask: expected [H, W], got {list(mask.shape)}")
    rows, cols = (mask > 0.5).any(dim=1).nonzero(), (mask > 0.5).any(dim=0).nonzero()
    if not len(rows):
        raise ValueError(f"mask: it is empty (no value above 0.5); {empty_hint}")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def mouth_in_square(box, crop: CropBox, resolution: int) -> Tensor:
    """Where the portrait's mouth is, a box [x0, y0, x1, y1] in the source image's pixels -> [1, 4] in the pixels
    of the model's square (the crop resized to `resolution`), cut to the square; a ValueError that says what to do
    when it is no box or lies outside the square."""
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[2] <= values[0] or \
            values[3] <= values[1]:
        raise ValueError(f"mouth box {box!r}: give four numbers x0, y0, x1, y1 in the portrait's pixels, with "
                         f"x0 < x1 and y0 < y1")
    x0, y0, x1, y1 = (min(max(v, 0.0), float(resolution)) for v in crop.map(values, resolution))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(f"mouth box {values}: it lies outside the face square (x={crop.left}, y={crop.top}, "
                         f"size={crop.size}); give a box around the mouth inside it")
    return torch.tensor([[x0, y0, x1, y1]])


@dataclass(frozen=True)
class Reference:
    """A stream's portrait as the model holds it: z_R, the ID sink's latent, and the square it was encoded from,
    which a reference-conditioned VAE's decoder copies the look from (a plain VAE's ignores it); and, where the user
    says, where its mouth is (else the decoder finds it)."""

    latent: Tensor  # [1, C, 1, h, w]
    pixels: Tensor  # [1, 3, R, R] in [-1, 1]
    mouth: Tensor | None = None  # [1, 4] x0, y0, x1, y1 in the square's pixels (`mouth_in_square`), float32

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Reference":
        mouth = None if self.mouth is None else self.mouth.to(device)  # positions keep float32
        return Reference(self.latent.to(device, dtype), self.pixels.to(device, dtype), mouth)

    def same_as(self, other: "Reference") -> bool:
        """The same portrait, latent and mouth, value for value (a stream that goes on must keep them)."""
        def same(a: Tensor | None, b: Tensor | None) -> bool:
            return (a is None) == (b is None) and (a is None or (a.shape == b.shape and torch.equal(a, b)))

        return same(self.latent, other.latent) and same(self.pixels, other.pixels) and same(self.mouth, other.mouth)


def portrait_pixels(image) -> Tensor:
    """Any portrait `prepare_reference` accepts -> [H, W, 3] float in [0, 1]."""
    image = as_tensor("image", image, "[H, W, C]")
    x = unbatch("image", image, 4, "give one portrait (pick one with ImageFromBatch)")
    if x.dim() == 2:
        x = x[..., None]
    if x.dim() != 3 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image: expected [H, W, C] with C = 1, 3 or 4 channels, got {list(image.shape)}")
    if min(x.shape[:2]) < MIN_IMAGE_SIDE:
        raise ValueError(f"image: {x.shape[1]}x{x.shape[0]} pixels (width x height) is too small; give a portrait "
                         f"of at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    if x.shape[0] * x.shape[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f"image: {x.shape[1]}x{x.shape[0]} pixels ({x.shape[0] * x.shape[1] / 1e6:.0f} MP) is larger "
                         f"than REST takes ({MAX_IMAGE_PIXELS / 1e6:.1f} MP, e.g. 8192x4352: the largest frame an "
                         f"H.264 video holds, since the face is pasted back into the whole portrait); scale the "
                         f"portrait down")
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if not torch.isfinite(x).all():
        raise ValueError("image contains NaN or Inf values")
    return x[..., :3] if x.shape[-1] >= 3 else x.expand(-1, -1, 3)


def prepare_reference(image, resolution: int, box: CropBox | None = None) -> tuple[Tensor, CropBox]:
    """A portrait -> [1, 3, resolution, resolution] in [-1, 1] and its crop box.

    image: [H, W, C] or [1, H, W, C] (ComfyUI IMAGE), float in [0, 1] or uint8; C = 1 (grey), 3, or 4 (alpha is
    dropped). The box (default: the largest centred square) is cut and resized (antialiased) to the resolution.
    """
    return cut_square(portrait_pixels(image), resolution, box)


def cut_square(x: Tensor, resolution: int, box: CropBox | None = None) -> tuple[Tensor, CropBox]:
    """`prepare_reference` of pixels `portrait_pixels` already checked: [H, W, 3] float in [0, 1]."""
    box = CropBox.centred(*x.shape[:2]) if box is None else box.check(*x.shape[:2])
    return square_pixels(x[None], box, resolution) * 2 - 1, box


def square_pixels(images: Tensor, box: CropBox, resolution: int) -> Tensor:
    """The box of images [N, H, W, 3] (uint8, or float in [0, 1]) at resolution x resolution, antialiased ->
    [N, 3, R, R] float in [0, 1]. Portraits and training frames (data/prepare.py) are cut by this one rule."""
    x = images[:, box.top:box.top + box.size, box.left:box.left + box.size]
    x = (x.float() / 255 if x.dtype == torch.uint8 else x.float()).permute(0, 3, 1, 2)
    if box.size != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1)


def edge_mask(size: int, feather: int) -> Tensor:
    """[size, size] weights: 1 inside, falling linearly to 0 over `feather` pixels at the square's border."""
    if feather <= 0:
        return torch.ones(size, size)
    d = torch.arange(size, dtype=torch.float32)
    ramp = (torch.minimum(d, size - 1 - d) + 1).div(feather).clamp(max=1)
    return torch.minimum(ramp[:, None], ramp[None, :])


def paste_back(frames: Tensor, source: Tensor, box: CropBox, feather: int) -> Tensor:
    """Generated frames [n, R, R, 3] -> the source [H, W, 3] with each frame resized into the box and blended over
    `feather` source pixels at its border (at most half the box).  -> [n, H, W, 3] float in [0, 1]

    Frame by frame into the output: beside it, only one box-sized frame is ever held, however large the source."""
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"images: expected IMAGE frames [N, H, W, 3], got {list(frames.shape)}")
    weight = edge_mask(box.size, min(feather, box.size // 2))[:, :, None]  # [S, S, 1]
    rows, cols = slice(box.top, box.top + box.size), slice(box.left, box.left + box.size)
    behind = (1 - weight) * source[rows, cols]  # [S, S, 3], the same for every frame
    out = torch.empty(frames.shape[0], *source.shape)
    for frame, pasted in zip(frames, out):
        square = F.interpolate(frame.permute(2, 0, 1)[None].float(), size=(box.size, box.size), mode="bilinear",
                               antialias=True, align_corners=False)[0].permute(1, 2, 0).clamp_(0, 1)
        pasted.copy_(source)
        torch.addcmul(behind, weight, square, out=pasted[rows, cols])
    return out
