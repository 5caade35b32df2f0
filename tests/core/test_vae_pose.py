"""The pose code: chunk latents carry each frame's head move and eyelid closure, the decoder moves the portrait's head
by them where its head mask says, the mouth head paints the blink, and streaming stays exact."""

import dataclasses

import pytest
import torch

from rest_core.config import MOUTH_CODE_CHANNELS, POSE_CODE_CHANNELS
from rest_core.vae import CausalVAE
from rest_core.vae_pose import HeadMask, frame_poses, pose_channels, pose_flow

from conftest import TINY_POSE, assert_streams_as_whole, every_path_on

POSE = TINY_POSE.vae


def model(seed: int = 0) -> CausalVAE:
    return every_path_on(POSE, seed)


def portrait(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def coded(z: torch.Tensor, pose: torch.Tensor, closure: torch.Tensor) -> torch.Tensor:
    """z [1, C, 1 + k, h, w] with every chunk frame's pose [4] and closure (scalars) written in"""
    k = z.shape[2] - 1
    out = z.clone()
    channels = pose_channels(pose.expand(1, 8 * k, 4), torch.full((1, 8 * k), closure))
    out[:, MOUTH_CODE_CHANNELS:MOUTH_CODE_CHANNELS + POSE_CODE_CHANNELS, 1:] = channels[..., None, None]
    return out


def test_each_frame_reads_its_own_pose_from_the_cells_mean():
    pose, closure = torch.randn(1, 16, 4), torch.rand(1, 16)
    z = torch.randn(1, 64, 2, 2, 2)
    z[:, MOUTH_CODE_CHANNELS:MOUTH_CODE_CHANNELS + POSE_CODE_CHANNELS] = pose_channels(pose, closure)[..., None, None]
    z[:, MOUTH_CODE_CHANNELS:MOUTH_CODE_CHANNELS + POSE_CODE_CHANNELS] += torch.tensor([[0.1, -0.1], [-0.1, 0.1]])
    read_pose, read_closure = frame_poses(z)
    torch.testing.assert_close(read_pose, pose)
    torch.testing.assert_close(read_closure, closure)


def test_the_pose_flow_is_nothing_at_rest_and_moves_content_the_way_the_code_says():
    assert pose_flow(torch.zeros(2, 4), 8, 8).abs().max() == 0
    right = pose_flow(torch.tensor([[0.0, 0.0, 5 * 0.25, 0.0]]), 8, 8)  # t_x = 0.25 of half the side: 1 px
    torch.testing.assert_close(right, torch.stack([-torch.ones(8, 8), torch.zeros(8, 8)])[None])  # reads 1 px left
    turned = pose_flow(torch.tensor([[0.0, 0.5, 0.0, 0.0]]), 8, 8)  # about the centre: opposite corners opposite
    torch.testing.assert_close(turned[0, :, 0, 0], -turned[0, :, 7, 7])


def test_the_head_mask_is_a_map_at_the_finest_scale_read_from_every_scale():
    mask = HeadMask((8, 16, 16, 16))
    features = [torch.randn(1, w, 16 // s, 16 // s) for w, s in ((8, 1), (16, 2), (16, 4), (16, 8))]
    out = mask(features)
    assert out.shape == (1, 1, 16, 16) and ((out > 0) & (out < 1)).all()
    coarse = [f.clone() for f in features]
    coarse[-1] += 1  # the coarsest scale alone changes: every position hears of it
    assert (mask(coarse) - out).abs().amin() > 0


def test_a_given_head_region_decides_what_the_pose_moves():
    vae = model()
    z = torch.randn(1, 64, 3, 2, 2)
    reference = vae.reference_features(portrait())
    nowhere, everywhere = torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16)  # at the head mask's grid

    def decoded(pose: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return vae.decoder(vae.denormalize(coded(z, pose, 0.0)), reference=reference, head_region=region)

    still = torch.zeros(4)
    torch.testing.assert_close(decoded(still, nowhere), decoded(still, everywhere))  # no move: no matter where
    turned = torch.tensor([0.0, 0.3, 0.5, -0.5])
    difference = (decoded(turned, everywhere) - decoded(turned, nowhere))[:, :, 1:]
    assert difference.abs().amax(dim=(0, 1, 3, 4)).min() > 1e-3  # a move moves what the region covers


def test_the_pose_code_moves_the_decode_and_the_closure_changes_it_but_not_the_portraits_frame():
    vae = model()
    z = torch.randn(1, 64, 3, 2, 2)
    still = coded(z, torch.zeros(4), 0.0)
    with torch.no_grad():
        base = vae.decode(still, portrait())
        moved = vae.decode(coded(z, torch.tensor([0.0, 0.3, 0.5, -0.5]), 0.0), portrait())
        blinked = vae.decode(coded(z, torch.zeros(4), 1.0), portrait())
    for other in (moved, blinked):
        assert torch.equal(other[:, :, 0], base[:, :, 0])  # frame 0 is the portrait's: its latent carries no code
        assert (other[:, :, 1:] - base[:, :, 1:]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-3  # every later frame


def test_with_a_fresh_head_mask_a_still_head_decodes_as_the_mouth_code_vae():
    from rest_core.train.vae import with_code_heads

    trained = model()
    mouth_only = CausalVAE(dataclasses.replace(POSE, pose_code=False)).eval()
    mouth_only.load_state_dict({k: v[:, :2] if k == "decoder.mouth_head.modulation.weight" else v
                                for k, v in trained.state_dict().items() if "head_mask" not in k})
    vae = with_code_heads(CausalVAE(POSE), mouth_only).eval()
    z = coded(torch.randn(1, 64, 3, 2, 2), torch.zeros(4), 0.7)  # any closure: the new weight reads nothing yet
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(z, portrait()), mouth_only.decode(z, portrait()))


@pytest.mark.parametrize("split", [[1] * 4, [1, 3], [2, 2], [3, 1]])
def test_stream_decode_equals_whole_decode_with_the_pose_code(split):
    vae = model()
    z = torch.randn(1, 64, 4, 2, 2)
    z[:, MOUTH_CODE_CHANNELS:MOUTH_CODE_CHANNELS + POSE_CODE_CHANNELS, 1:] = pose_channels(
        torch.randn(1, 24, 4) * 0.5, torch.rand(1, 24))[..., None, None]
    assert_streams_as_whole(vae, z, split, portrait())


def test_a_pose_code_needs_the_mouth_code_and_room_in_the_latents():
    with pytest.raises(ValueError, match="mouth_code = true"):
        dataclasses.replace(POSE, mouth_code=False)
    with pytest.raises(ValueError, match="more than 56 latent channels"):
        dataclasses.replace(POSE, latent_channels=56)
