"""The mouth code: chunk latents carry each frame's opening and width, the decoder's mouth head paints them, the
portrait's frame gets nothing from it, and streaming stays exact."""

import dataclasses

import pytest
import torch

from rest_core.config import MOUTH_CODE_CHANNELS, VAEConfig
from rest_core.data.face_code import FaceCode, with_code
from rest_core.vae import CausalVAE
from rest_core.vae_mouth import MouthShape, frame_codes

from conftest import assert_streams_as_whole, every_path_on

MOUTH = VAEConfig(latent_channels=24, block_out_channels=(8, 16, 16, 16), layers_per_block=(1, 1, 1, 1, 1),
                  decoder_block_out_channels=(8, 16, 16, 16), decoder_layers_per_block=(1, 1, 1, 1, 1),
                  reference="both", mouth_code=True)


def model(seed: int = 0) -> CausalVAE:
    return every_path_on(MOUTH, seed)


def with_mouth_code(z: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """z with the mouth's state per frame [1, frames, 2] written in"""
    return with_code(z, FaceCode(torch.zeros(1, 1, 1, 64, 64), state))


def portrait(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_each_frame_reads_its_own_code_from_the_cells_mean():
    state = torch.rand(1, 17, 2)
    coded = with_mouth_code(torch.randn(1, 24, 3, 2, 2), state)
    coded[:, :MOUTH_CODE_CHANNELS] += torch.tensor([[0.1, -0.1], [-0.1, 0.1]])  # noise that averages out
    torch.testing.assert_close(frame_codes(coded[:, :, 1:]), (state[:, 1:] * 2 - 1).transpose(1, 2))


def test_the_head_paints_the_mouth_the_code_says_and_nothing_on_the_portraits_frame():
    vae = model()
    z = torch.randn(1, 24, 3, 2, 2)
    shut, wide = (with_mouth_code(z, torch.full((1, 17, 2), value)) for value in (0.0, 1.0))
    with torch.no_grad():
        a, b = vae.decode(shut, portrait()), vae.decode(wide, portrait())
    assert torch.equal(a[:, :, 0], b[:, :, 0])  # frame 0 is the portrait's: its latent carries no code
    assert (a[:, :, 1:] - b[:, :, 1:]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-3  # every later frame follows it


def test_a_fresh_head_paints_nothing_and_the_code_reaches_it_with_a_gradient():
    torch.manual_seed(0)
    vae = CausalVAE(MOUTH)
    plain = CausalVAE(dataclasses.replace(MOUTH, mouth_code=False))
    plain.load_state_dict({k: v for k, v in vae.state_dict().items() if "mouth_head" not in k})
    z = torch.randn(1, 24, 2, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(z, portrait()), plain.decode(z, portrait()))
    vae.decode(z, portrait()).square().mean().backward()
    assert vae.decoder.mouth_head.conv_out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("split", [[1] * 4, [1, 3], [2, 2], [3, 1]])
def test_stream_decode_equals_whole_decode_with_the_mouth_code(split):
    vae = model()
    z = with_mouth_code(torch.randn(1, 24, 4, 2, 2), torch.rand(1, 25, 2))
    assert_streams_as_whole(vae, z, split, portrait())


def test_a_mouth_code_needs_the_portrait_and_room_in_the_latents():
    with pytest.raises(ValueError, match="reference-conditioned"):
        dataclasses.replace(MOUTH, reference="none")
    with pytest.raises(ValueError, match="more than 16 latent channels"):
        dataclasses.replace(MOUTH, latent_channels=16)


# --- the mouth shape: the open mouth's inside drawn where a mask from the portrait says the mouth is ---------------

SHAPE = dataclasses.replace(MOUTH, mouth_shape=True)


def shape_with_mask(box: tuple[int, int, int, int] | None, grid: int = 16) -> MouthShape:
    """A fresh MouthShape whose mask is 1 inside `box` (x0, y0, x1, y1 in cells of a grid x grid map) and 0 elsewhere
    (None: nowhere)"""
    torch.manual_seed(0)
    shape = MouthShape((8, 16))
    logits = torch.full((1, 1, grid, grid), -30.0)
    if box is not None:
        x0, y0, x1, y1 = box
        logits[..., y0:y1, x0:x1] = 30.0
    shape.logits = lambda features: logits
    return shape


def drawn_inside(shape: MouthShape, opening: float, width: float = 0.5) -> torch.Tensor:
    """Where the ellipse is in the one frame of the code (opening, width in [0, 1]), [64, 64] in [0, 1]: a white
    portrait with the inside made black"""
    with torch.no_grad():
        shape.lightness.fill_(-30.0)
        code = torch.tensor([[[opening * 2 - 1], [width * 2 - 1]]])
        white = torch.ones(1, 3, 64, 64)
        drawn = shape(shape.place(white, []), white, code)  # [1, 3, 1, 64, 64]: black (-1) minus the portrait's 1
    return -drawn[0, 0, 0] / 2


def test_the_mouth_shape_draws_an_ellipse_at_the_masks_middle_as_tall_as_the_opening_says():
    shape = shape_with_mask((6, 8, 10, 12))  # cells 4 px wide: pixels x 24..40, y 32..48, middle (32, 40)
    half_open, wide_open = drawn_inside(shape, 0.5), drawn_inside(shape, 1.0)
    for inside in (half_open, wide_open):
        assert inside[40, 32] > 0.9 and inside[:20].amax() < 1e-3 and inside[:, :20].amax() < 1e-3
        ys, xs = torch.nonzero(inside > 0.5, as_tuple=True)
        assert abs(ys.float().mean() + 0.5 - 40) < 1 and abs(xs.float().mean() + 0.5 - 32) < 1
    rows = lambda inside: (inside > 0.5).any(dim=1).sum().item()  # noqa: E731 - the drawn height in pixels
    assert rows(wide_open) > 1.6 * rows(half_open)
    columns = lambda inside: (inside > 0.5).any(dim=0).sum().item()  # noqa: E731
    assert columns(drawn_inside(shape, 1.0, width=1.0)) > columns(drawn_inside(shape, 1.0, width=0.0))


def test_the_mouth_shape_draws_nothing_for_a_shut_mouth_or_where_no_mouth_is_found():
    assert drawn_inside(shape_with_mask((6, 8, 10, 12)), 0.0).amax() < 1e-6
    assert drawn_inside(shape_with_mask(None), 1.0).amax() < 1e-6


def test_the_inside_is_the_portraits_colour_under_the_mask_darkened():
    shape = shape_with_mask((6, 8, 10, 12))
    portrait = torch.full((1, 3, 64, 64), -1.0)
    portrait[:, :, 32:48, 24:40] = torch.tensor([0.6, 0.2, -0.2])[:, None, None]  # the colour under the mask
    with torch.no_grad():
        drawn = shape(shape.place(portrait, []), portrait, torch.ones(1, 2, 1))  # wide open: [1, 3, 1, 64, 64]
    inside = (portrait[:, :, None] + drawn)[0, :, 0, 40, 32]
    around = (torch.tensor([0.6, 0.2, -0.2]) + 1) / 2
    torch.testing.assert_close((inside + 1) / 2, around * MouthShape.MAX_LIGHTNESS * 0.5)  # lightness logit 0


def test_the_mouth_shapes_proportions_and_darkness_learn_from_the_frames_and_its_mask_does_not():
    torch.manual_seed(0)
    shape = MouthShape((8, 16))
    features = [torch.randn(1, 8, 16, 16), torch.randn(1, 16, 8, 8)]
    with torch.no_grad():
        shape.out.bias.fill_(3.0)  # a mask over the whole grid
    portrait = torch.rand(1, 3, 64, 64)
    shape(shape.place(portrait, features), portrait, torch.ones(1, 2, 3)).square().sum().backward()
    assert shape.size.grad.abs().sum() > 0 and shape.lightness.grad.abs() > 0
    assert shape.out.weight.grad is None  # where the mouth is comes from the mouth boxes alone (train/vae.py)


def test_the_mouth_shape_changes_later_frames_only_and_the_stream_decodes_as_the_whole():
    vae = every_path_on(SHAPE)
    with torch.no_grad():
        vae.decoder.mouth_shape.out.bias.fill_(3.0)  # a mouth everywhere: the ellipse is drawn
    z = torch.randn(1, 24, 3, 2, 2)
    shut, wide = (with_mouth_code(z, torch.full((1, 17, 2), value)) for value in (0.0, 1.0))
    without = CausalVAE(MOUTH).eval()
    without.load_state_dict({k: v for k, v in vae.state_dict().items() if "mouth_shape" not in k})
    with torch.no_grad():
        a, b, c = vae.decode(shut, portrait()), vae.decode(wide, portrait()), without.decode(wide, portrait())
    assert torch.equal(a[:, :, 0], b[:, :, 0])
    torch.testing.assert_close(a, without.decode(shut, portrait()))  # a shut mouth: nothing drawn
    assert (b[:, :, 1:] - c[:, :, 1:]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-2  # every later frame drawn on
    assert_streams_as_whole(vae, with_mouth_code(torch.randn(1, 24, 4, 2, 2), torch.rand(1, 25, 2)), [1, 2, 1],
                            portrait())


def test_a_stream_reads_the_portrait_once_and_decodes_its_chunks_without_the_masks():
    vae = every_path_on(dataclasses.replace(SHAPE, pose_code=True, latent_channels=64))
    with torch.no_grad():
        vae.decoder.mouth_shape.out.bias.fill_(3.0)  # a mouth everywhere: the ellipse is drawn
    z = with_mouth_code(torch.randn(1, 64, 3, 2, 2), torch.rand(1, 17, 2))
    with torch.no_grad():
        whole = vae.decode(z, portrait())
        state = vae.decode_start(portrait())
        assert state.reading.head.shape == (1, 1, 64, 64) and state.reading.mouth.presence.item() == 1.0

        def unread(*args):
            raise AssertionError("a chunk read the portrait again")

        vae.decoder.mouth_shape.logits = vae.decoder.head_mask.forward = unread
        outs = [vae.decode_stream(z[:, :, i:i + 1], state)[0] for i in range(3)]
    torch.testing.assert_close(torch.cat(outs, dim=2), whole, atol=5e-5, rtol=1e-5)


def test_a_mouth_box_places_the_mouth_where_it_says_with_the_colour_inside_it():
    portrait = torch.full((1, 3, 64, 64), -1.0)
    portrait[:, :, 30:40, 20:36] = torch.tensor([0.6, 0.2, -0.2])[:, None, None]
    place = MouthShape.place_at(portrait, torch.tensor([[20.0, 30.0, 36.0, 40.0]]))  # x0, y0, x1, y1
    torch.testing.assert_close(place.centre, torch.tensor([[35.0, 28.0]]))  # (y, x)
    torch.testing.assert_close(place.half, torch.tensor([[5.0, 8.0]]))
    torch.testing.assert_close(place.around, (torch.tensor([[0.6, 0.2, -0.2]]) + 1) / 2)
    assert place.presence.tolist() == [1.0]


def test_a_stream_given_the_mouth_opens_it_there_where_the_mask_finds_none():
    vae = every_path_on(SHAPE)  # a fresh mouth shape: its mask finds no mouth (presence 0)
    z = with_mouth_code(torch.randn(1, 24, 3, 2, 2), torch.full((1, 17, 2), 1.0))  # wide open throughout
    outs = []
    for mouth in (None, torch.tensor([[8.0, 36.0, 24.0, 48.0]])):
        with torch.no_grad():
            state = vae.decode_start(portrait(), mouth)
            outs.append(torch.cat([vae.decode_stream(z[:, :, i:i + 1], state)[0] for i in range(3)], dim=2))
    drawn = (outs[1] - outs[0])[0].abs().amax(dim=0)  # [frames, 64, 64]: what the given mouth drew
    assert drawn[0].amax() == 0  # the portrait's frame: nothing
    drawn = drawn[1:].amax(dim=0)
    ys, xs = torch.nonzero(drawn > 0.5 * drawn.amax(), as_tuple=True)
    assert drawn.amax() > 0.3 and abs(ys.float().mean() - 42) < 3 and abs(xs.float().mean() - 16) < 3


@pytest.mark.parametrize("config, mouth, message", [
    (MOUTH, [[8.0, 36.0, 24.0, 48.0]], "does not draw the mouth's shape"),
    (SHAPE, [[8.0, 36.0, 80.0, 48.0]], "inside the 64x64 portrait"),
    (SHAPE, [[8.0, 36.0, 8.5, 48.0]], "at least a pixel apart"),
    (SHAPE, [[float("nan"), 36.0, 24.0, 48.0]], "x0 < x1"),
    (SHAPE, [8.0, 36.0, 24.0, 48.0], "expected shape"),
])
def test_a_mouth_box_the_model_cannot_use_is_refused_at_the_streams_start(config, mouth, message):
    with pytest.raises(ValueError, match=message):
        CausalVAE(config).decode_start(portrait(), torch.tensor(mouth))


def test_a_mouth_shape_needs_the_mouth_code():
    with pytest.raises(ValueError, match="mouth_shape needs the mouth code"):
        dataclasses.replace(SHAPE, mouth_code=False)
