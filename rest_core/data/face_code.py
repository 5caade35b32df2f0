"""The code a coded VAE's latents carry from the data (vae_mouth.py, vae_pose.py), made from what the corpus'
sidecars say of every frame.

A clip's truth (`FaceTruth`, kept by `prepare clips` in the prepared frames' pixels): where the mouth is (its box at
rest), the mouth's opening and width per frame and, where the sidecar gives them, the head's placement per frame (the
2x3 map from head units to pixels) and the eyes' closure. A stream made of some of its frames, seen through a view
(training's zoom, cut and flip; none elsewhere), with one of its frames as the portrait, gets a `FaceCode`: the mouth's
box in the stream's pixels (hidden from the encoder), the mouth's state per frame and, for a `pose_code` VAE, the
head's move from the portrait (vae_pose.pose_from_maps) and the closure per frame, and where the portrait's head is
(its outline drawn in the stream's pixels: what the decoder's head mask is taught).

The code says how the head moved, never how the camera did: where training shows the decoder a portrait cut from a
moved window (`reference_moved`), the move is still the one from the portrait as the stream's own view shows it, and
the decoder's own flow has to undo the cut's move. With the cut's move in the code, the move applied to the whole
frame on those samples and to the head alone on the others, and the head mask learnt to cover the whole frame
(within 100 steps: every background moved with the head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..config import MOUTH_CODE_CHANNELS, POSE_CODE_CHANNELS
from ..vae_mouth import code_channels
from ..vae_pose import homogeneous, pose_channels, pose_from_maps

MOUTH_AT_REST = (0.0, 0.5)  # shut at the neutral width: the corpus' silence and first frames, and a still portrait's


def view_matrix(window: tuple[int, int, int, int], out: tuple[int, int], flip: bool = False) -> Tensor:
    """[3, 3]: positions in the clip's frames -> in the sample that the window (top, left, height, width) of them
    becomes, resized to `out` (height, width) and, with `flip`, mirrored left to right"""
    top, left, height, width = window
    sy, sx = out[0] / height, out[1] / width
    m = torch.tensor([[sx, 0, -left * sx], [0, sy, -top * sy], [0, 0, 1]], dtype=torch.float64)
    if flip:
        m = torch.tensor([[-1, 0, out[1]], [0, 1, 0], [0, 0, 1]], dtype=torch.float64) @ m
    return m


def map_box(view: Tensor, box: list[float]) -> list[float]:
    """A box [x0, y0, x1, y1] through a view (`view_matrix`: scales, shifts, flips) -> the box it becomes"""
    x0, y0, x1, y1 = box
    corners = view @ torch.tensor([[x0, x1], [y0, y1], [1.0, 1.0]], dtype=torch.float64)
    xs, ys = sorted(corners[0].tolist()), sorted(corners[1].tolist())
    return [xs[0], ys[0], xs[1], ys[1]]


def box_mask(box: list[float], size: tuple[int, int]) -> Tensor:
    """1 at the pixels of a `size` (height, width) frame whose centres lie in `box` [x0, y0, x1, y1], 0 elsewhere.
    [1, 1, 1, h, w]"""
    ys = torch.arange(size[0]) + 0.5
    xs = torch.arange(size[1]) + 0.5
    inside_y = (ys >= box[1]) & (ys < box[3])
    inside_x = (xs >= box[0]) & (xs < box[2])
    return (inside_y[:, None] & inside_x[None, :]).float()[None, None, None]


def polygon_mask(points: Tensor, size: tuple[int, int]) -> Tensor:
    """1 inside the polygon `points` [P, 2] (pixel positions x, y), 0 outside, on a `size` (height, width) frame.
    [1, 1, h, w]"""
    from PIL import Image, ImageDraw

    image = Image.new("L", (size[1], size[0]), 0)
    # PIL puts pixel (i, j)'s centre at (i, j): positions here have it at (i + 0.5, j + 0.5)
    ImageDraw.Draw(image).polygon([(float(x) - 0.5, float(y) - 0.5) for x, y in points.tolist()], fill=255)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)[None, None]


@dataclass
class FaceCode:
    """What the data says of a stream's frames, for a coded VAE (see the module docstring)."""

    in_mouth: Tensor  # [B, 1, 1, H, W]: where the mouth is (`box_mask`)
    mouth: Tensor  # [B, T, 2]: opening and width per frame, in [0, 1]
    pose: Tensor | None = None  # [B, T, 4]: the head's move from the portrait (vae_pose.pose_from_maps)
    closure: Tensor | None = None  # [B, T]: the eyes' closure, in [0, 1]
    head_region: Tensor | None = None  # [B, 1, H, W]: where the portrait's head is (what its head mask should say)

    def to(self, device) -> "FaceCode":
        return FaceCode(*(None if t is None else t.to(device) for t in self.fields()))

    def fields(self) -> tuple:
        return self.in_mouth, self.mouth, self.pose, self.closure, self.head_region

    @staticmethod
    def cat(codes: list["FaceCode"]) -> "FaceCode":
        return FaceCode(*(None if ts[0] is None else torch.cat(ts) for ts in zip(*(c.fields() for c in codes))))


@dataclass
class FaceTruth:
    """What the sidecar says of every frame of a clip, in the pixels of its (prepared) frames."""

    mouth_box: list[float]  # [x0, y0, x1, y1]: where the mouth is at rest
    mouth: Tensor  # [N, 2]: opening and width per frame (MOUTH_STATE)
    head: Tensor | None = None  # [N, 2, 3] float64: the head's map from head units to pixels per frame
    closure: Tensor | None = None  # [N]
    outline: Tensor | None = None  # [P, 2] float64: the region that moves with the head, in head units

    @classmethod
    def still(cls, mouth_box: list[float], frames: int) -> "FaceTruth":
        """A portrait held still: mouth at rest, head unmoved, eyes as they are."""
        head = torch.eye(3, dtype=torch.float64)[:2].expand(frames, 2, 3)
        return cls(mouth_box, torch.tensor([MOUTH_AT_REST]).expand(frames, 2), head, torch.zeros(frames))

    def code(self, frames: Tensor | list[int], portrait: int, size: tuple[int, int], pose: bool,
             view: Tensor | None = None, portrait_view: Tensor | None = None) -> FaceCode:
        """The code of a stream made of the clip's `frames` (indices), seen through `view` (`view_matrix`; none: as
        the clip is) at `size` (height, width), whose portrait is frame `portrait`; `pose`: with the head's move and
        the closure (a `pose_code` VAE), and where the portrait shows its head: through `portrait_view` where the
        portrait's cut was moved (the move itself is left out of the code, see the module docstring). Batch of 1."""
        frames = torch.as_tensor(frames, dtype=torch.long)
        view = torch.eye(3, dtype=torch.float64) if view is None else view
        portrait_view = view if portrait_view is None else portrait_view
        code = FaceCode(box_mask(map_box(view, self.mouth_box), size), self.mouth[frames].float()[None])
        if pose:
            if self.head is None or self.closure is None:
                raise ValueError("this VAE's latents carry the head's pose and the blinks (pose_code): the clip needs "
                                 "them per frame (`head` and `blink` in the synthetic corpus' sidecars)")
            head = homogeneous(self.head)  # [N, 3, 3]
            # the portrait's pixels -> head units -> frame t's pixels, all in the stream's view
            from_portrait = torch.linalg.inv(view @ head[portrait])
            code.pose = pose_from_maps(view @ head[frames] @ from_portrait, *size)[None]
            code.closure = self.closure[frames].float()[None]
            if self.outline is not None:
                code.head_region = self.head_region(portrait, size, portrait_view)
        return code

    def head_region(self, frame: int, size: tuple[int, int], view: Tensor | None = None) -> Tensor:
        """Where frame `frame` shows the head, seen through `view` at `size` (height, width): its outline drawn,
        [1, 1, h, w]"""
        view = torch.eye(3, dtype=torch.float64) if view is None else view
        outline = torch.cat([self.outline, torch.ones(len(self.outline), 1, dtype=torch.float64)], dim=1).T
        return polygon_mask((view @ homogeneous(self.head[frame]) @ outline)[:2].T, size)


def without_mouth(video: Tensor, in_mouth: Tensor) -> Tensor:
    """What the encoder of a `mouth_code` VAE sees: the frames after the first with the mouth box grey, so that
    its latents cannot carry the mouth (the code does).  video: [B, 3, T, H, W] in [-1, 1]; in_mouth: [B, 1, 1, H, W]"""
    hidden = torch.cat([torch.zeros_like(in_mouth), in_mouth.expand(-1, -1, video.shape[2] - 1, -1, -1)], dim=2)
    return video * (1 - hidden)


def with_code(latents: Tensor, code: FaceCode) -> Tensor:
    """A coded VAE reads the mouth (and the head's pose and the blinks) from a code the data supplies, not from its
    encoder: every latent frame after the first gets its frames' code in its first channels, the same at every cell
    (vae_mouth.code_channels, vae_pose.pose_channels). latents: [B, C, 1 + k, h, w] un-normalised, the code's
    frames 1 + 8k -> the latents with those channels replaced (a new tensor)."""
    out = latents.clone()
    out[:, :MOUTH_CODE_CHANNELS, 1:] = code_channels(code.mouth[:, 1:])[..., None, None].to(latents.dtype)
    if code.pose is not None:
        pose = pose_channels(code.pose[:, 1:], code.closure[:, 1:])
        out[:, MOUTH_CODE_CHANNELS:MOUTH_CODE_CHANNELS + POSE_CODE_CHANNELS, 1:] = pose[..., None, None].to(
            latents.dtype)
    return out


def encode_stream(vae, video: Tensor, code: FaceCode | None = None) -> Tensor:
    """A stream whose first frame is its portrait, [B, 3, 1 + 8k, H, W] in [-1, 1] -> its un-normalised latents (the
    posterior means) [B, C, 1 + k, h, w]. A coded VAE needs the stream's `code`: it is encoded without the mouth, the
    code written in."""
    portrait = video[:, :, 0]
    if not vae.config.mouth_code:
        return vae.encode_moments(video, portrait)[:, :-1]
    if code is None or vae.config.pose_code != (code.pose is not None):
        raise ValueError(f"this VAE's latents carry a code the data supplies (mouth_code, pose_code = "
                         f"{vae.config.pose_code}): give the stream's FaceCode, with the head's pose exactly where "
                         f"pose_code is on")
    return with_code(vae.encode_moments(without_mouth(video, code.in_mouth), portrait)[:, :-1], code)
