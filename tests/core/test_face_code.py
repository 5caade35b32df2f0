"""The code a coded VAE's latents carry from the data: the mouth's and the head's, written per frame into the
channels, in the coordinates of whatever view of the clip the stream is."""

import math

import pytest
import torch

from rest_core.config import MOUTH_CODE_CHANNELS, POSE_CODE_CHANNELS
from rest_core.data.face_code import (FaceCode, FaceTruth, box_mask, encode_stream, map_box, view_matrix, with_code,
                                      without_mouth)
from rest_core.vae import CausalVAE
from rest_core.vae_pose import frame_poses, pose_flow

from conftest import TINY_MOUTH, TINY_POSE


def head_maps(frames: int, seed: int = 0) -> torch.Tensor:
    """A head that turns, grows and wanders, as the corpus' does: [frames, 2, 3] head units -> pixels"""
    g = torch.Generator().manual_seed(seed)
    angle = torch.randn(frames, generator=g, dtype=torch.float64) * math.radians(3)
    scale = 20 * (1 + 0.03 * torch.randn(frames, generator=g, dtype=torch.float64))
    shift = torch.tensor([40.0, 36.0], dtype=torch.float64) + 3 * torch.randn(frames, 2, generator=g,
                                                                               dtype=torch.float64)
    c, s = torch.cos(angle) * scale, torch.sin(angle) * scale
    return torch.stack([torch.stack([c, -s, shift[:, 0]], -1), torch.stack([s, c, shift[:, 1]], -1)], 1)


SQUARE = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)  # head units


def truth(frames: int = 17) -> FaceTruth:
    g = torch.Generator().manual_seed(1)
    return FaceTruth([30.0, 44.0, 50.0, 56.0], torch.rand(frames, 2, generator=g), head_maps(frames),
                     torch.rand(frames, generator=g), SQUARE)


def test_a_box_mask_marks_the_pixels_whose_centres_lie_in_the_box():
    mask = box_mask([2.0, 1.0, 5.0, 3.0], (4, 6))
    expected = torch.zeros(4, 6)
    expected[1:3, 2:5] = 1  # rows 1, 2 and columns 2, 3, 4
    assert mask.shape == (1, 1, 1, 4, 6) and torch.equal(mask[0, 0, 0], expected)
    assert box_mask([20.0, 1.0, 25.0, 3.0], (4, 6)).sum() == 0  # a box outside the frame


def test_a_view_maps_a_box_through_its_cut_zoom_and_flip():
    view = view_matrix((10, 20, 40, 40), (80, 80), flip=True)  # rows 10.., columns 20.., zoomed 2x, mirrored
    assert map_box(view, [30.0, 20.0, 40.0, 30.0]) == pytest.approx([40.0, 20.0, 60.0, 40.0])


def test_the_code_writes_each_frames_mouth_and_pose_into_every_cell_after_the_first_latent_frame():
    latents = torch.randn(1, 64, 3, 2, 2)  # [B, C, 1 + k, h, w]
    code = truth().code(range(17), 0, (64, 64), pose=True)
    coded = with_code(latents, code)
    assert torch.equal(coded[:, :, :1], latents[:, :, :1])  # the reference's latent carries no code
    end = MOUTH_CODE_CHANNELS + POSE_CODE_CHANNELS
    assert torch.equal(coded[:, end:], latents[:, end:])
    torch.testing.assert_close(coded[0, 3, 2], torch.full((2, 2), code.mouth[0, 1 + 8 + 3, 0].item() * 2 - 1))
    torch.testing.assert_close(coded[0, 8 + 5, 1], torch.full((2, 2), code.mouth[0, 1 + 5, 1].item() * 2 - 1))
    pose, closure = frame_poses(coded[:, :, 1:])
    torch.testing.assert_close(pose, code.pose[:, 1:])
    torch.testing.assert_close(closure, code.closure[:, 1:])
    mouth_only = with_code(latents, FaceCode(code.in_mouth, code.mouth))
    assert torch.equal(mouth_only[:, MOUTH_CODE_CHANNELS:], latents[:, MOUTH_CODE_CHANNELS:])


@pytest.mark.parametrize("flip", [False, True])
def test_the_pose_codes_flow_takes_each_frame_pixel_back_to_where_the_portrait_shows_that_point(flip):
    """Whatever the cut, zoom and flip, the pose code is the head's move from the portrait as the stream's view shows
    both: its flow at a pixel of the frame points at the portrait position that shows the same point of the head."""
    t = truth()
    view = view_matrix((6, 9, 48, 48), (64, 64), flip)
    code = t.code(range(17), 5, (64, 64), pose=True, view=view)
    homogeneous = torch.cat([t.head, torch.tensor([0, 0, 1.0], dtype=torch.float64).expand(17, 1, 3)], 1)
    flows = pose_flow(code.pose[0], 64, 64).double()  # [17, 2, 64, 64]
    rows, cols = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    centres = torch.stack([cols.flatten() + 0.5, rows.flatten() + 0.5, torch.ones(64 * 64)]).double()  # [3, N]
    for frame in (0, 9, 16):
        # frame pixel -> the clip's frame -> head units -> the portrait, in the clip -> in the view
        back = view @ homogeneous[5] @ torch.linalg.inv(view @ homogeneous[frame])
        expected = (back @ centres)[:2]
        torch.testing.assert_close(centres[:2] + flows[frame].flatten(1), expected, atol=1e-3, rtol=0)
    assert code.pose[0, 5].abs().max() < 1e-5 < code.pose[0, 4].abs().max()  # the portrait's own frame: no move


def test_the_head_region_is_the_portraits_head_outline_where_the_portrait_shows_it():
    t = truth()
    head = torch.tensor([[10.0, 0.0, 30.0], [0.0, 10.0, 20.0]], dtype=torch.float64)  # a 20 px square at (30, 20)
    t.head = head.expand(17, 2, 3).clone()
    region = t.code(range(17), 0, (64, 64), pose=True).head_region
    expected = torch.zeros(64, 64)
    expected[10:30, 20:40] = 1
    assert region.shape == (1, 1, 64, 64) and (region[0, 0] - expected).abs().sum() <= 80  # up to its edge pixels
    moved = view_matrix((0, 8, 64, 64), (64, 64))  # the portrait cut 8 px further right: its head 8 px left
    shifted = t.code(range(17), 0, (64, 64), pose=True, portrait_view=moved).head_region
    assert torch.equal(shifted[..., :-8], region[..., 8:])
    assert FaceTruth(t.mouth_box, t.mouth, t.head, t.closure).code(range(3), 0, (64, 64), True).head_region is None


def test_a_still_portrait_has_no_move_and_the_mouth_at_rest():
    code = FaceTruth.still([10.0, 40.0, 30.0, 50.0], 9).code(range(9), 0, (64, 64), pose=True)
    assert code.head_region is None  # nothing says where a photograph's head is
    assert torch.equal(code.pose, torch.zeros(1, 9, 4)) and torch.equal(code.closure, torch.zeros(1, 9))
    assert torch.equal(code.mouth[0], torch.tensor([[0.0, 0.5]]).expand(9, 2))


def test_a_pose_code_needs_the_heads_truth():
    bare = FaceTruth([10.0, 40.0, 30.0, 50.0], torch.rand(9, 2))
    assert bare.code(range(9), 0, (64, 64), pose=False).pose is None
    with pytest.raises(ValueError, match="head"):
        bare.code(range(9), 0, (64, 64), pose=True)


def test_the_encoder_of_a_coded_vae_sees_the_frames_after_the_first_without_the_mouth():
    video = torch.rand(1, 3, 9, 64, 64) * 2 - 1
    hidden = without_mouth(video, box_mask([16.0, 40.0, 48.0, 64.0], (64, 64)))
    assert torch.equal(hidden[:, :, 0], video[:, :, 0])  # the portrait's frame keeps its mouth
    assert hidden[:, :, 1:, 40:, 16:48].abs().max() == 0  # grey
    assert torch.equal(hidden[:, :, 1:, :40], video[:, :, 1:, :40])


def test_a_stream_is_encoded_only_with_the_code_its_vae_reads():
    torch.manual_seed(0)
    video = torch.rand(1, 3, 17, 64, 64) * 2 - 1
    mouth, pose = (CausalVAE(c.vae).eval() for c in (TINY_MOUTH, TINY_POSE))
    code = truth().code(range(17), 0, (64, 64), pose=True)
    with torch.no_grad():
        z = encode_stream(pose, video, code)
        torch.testing.assert_close(frame_poses(z[:, :, 1:])[0], code.pose[:, 1:])
        for vae, wrong in ((mouth, code), (pose, FaceCode(code.in_mouth, code.mouth)), (pose, None)):
            with pytest.raises(ValueError, match="FaceCode"):
                encode_stream(vae, video, wrong)
