"""The portrait's square: the centred default, a chosen box, a mask's box, and paste-back as the crop's inverse."""

import pytest
import torch

from rest_core import CropBox, paste_back, prepare_reference
from rest_core.reference import edge_mask


def test_the_default_square_is_centred_and_resized_with_its_crop_box():
    image = torch.zeros(1, 100, 160, 3)
    image[:, :, 30:130] = 1.0  # the centred 100x100 square is white
    pixels, box = prepare_reference(image, 64)
    assert (box.top, box.left, box.size) == (0, 30, 100)
    assert pixels.shape == (1, 3, 64, 64) and torch.allclose(pixels, torch.ones_like(pixels))


@pytest.mark.parametrize("image", [torch.rand(80, 80), torch.rand(80, 80, 1), torch.rand(1, 80, 80, 4),
                                   (torch.rand(80, 80, 3) * 255).to(torch.uint8)])
def test_grey_rgba_and_uint8_portraits_are_accepted(image):
    pixels, _ = prepare_reference(image, 64)
    assert pixels.shape == (1, 3, 64, 64) and pixels.min() >= -1 and pixels.max() <= 1


@pytest.mark.parametrize("image, word", [
    (torch.rand(2, 80, 80, 3), "one portrait"),
    (torch.rand(20, 80, 3), "too small"),
    (torch.rand(80, 80, 2), "C = 1, 3 or 4"),
    (torch.full((80, 80, 3), float("nan")), "NaN"),
    ("face.png", "tensor or array"),
])
def test_bad_portraits_get_clear_errors(image, word):
    with pytest.raises(ValueError, match=word):
        prepare_reference(image, 64)


def test_a_too_small_portrait_is_described_width_by_height():
    with pytest.raises(ValueError, match=r"image: 3x5000 pixels \(width x height\) is too small"):
        prepare_reference(torch.rand(5000, 3, 3), 64)


def test_a_chosen_box_is_the_square_that_is_encoded():
    image = torch.zeros(120, 200, 3)
    image[20:84, 130:194] = 1.0  # a white 64 px square off-centre
    pixels, box = prepare_reference(image, 32, CropBox(top=20, left=130, size=64))
    assert box == CropBox(top=20, left=130, size=64)
    assert torch.allclose(pixels, torch.ones_like(pixels))


@pytest.mark.parametrize("box, word", [
    (CropBox(top=100, left=0, size=64), "choose x \\+ size <= 200 and y \\+ size <= 120"),
    (CropBox(top=-1, left=0, size=64), "reaches outside the 200x120 image"),
    (CropBox(top=0, left=0, size=16), "too small; give at least 32"),
])
def test_a_box_that_does_not_fit_is_refused_with_what_fits(box, word):
    with pytest.raises(ValueError, match=word):
        prepare_reference(torch.rand(120, 200, 3), 32, box)


def test_a_mask_gives_the_smallest_square_holding_it_moved_inside_the_image():
    mask = torch.zeros(1, 120, 200)
    mask[0, 30:70, 50:110] = 1  # 40 x 60: a 60 px square centred on it
    assert CropBox.holding(mask) == CropBox(top=20, left=50, size=60)
    mask = torch.zeros(120, 200)
    mask[100:118, 185:200] = 1  # at the bottom-right corner: the 32 px minimum, moved inside
    assert CropBox.holding(mask) == CropBox(top=88, left=168, size=32)
    assert CropBox.holding(torch.ones(120, 200)) == CropBox(top=0, left=40, size=120)  # at most the short side


def test_an_empty_mask_is_refused():
    with pytest.raises(ValueError, match="empty"):
        CropBox.holding(torch.zeros(64, 64))


def test_paste_back_is_the_inverse_of_the_crop():
    source = torch.rand(120, 200, 3)
    box = CropBox(top=20, left=130, size=64)
    pixels, _ = prepare_reference(source, 64, box)
    frames = ((pixels + 1) / 2).permute(0, 2, 3, 1).expand(3, -1, -1, -1)  # the square itself, three times
    out = paste_back(frames, source, box, feather=0)
    assert out.shape == (3, 120, 200, 3)
    assert torch.allclose(out, source.expand(3, -1, -1, -1), atol=1e-6)
    changed = paste_back(torch.zeros(1, 64, 64, 3), source, box, feather=0)[0]
    assert changed[20:84, 130:194].abs().max() == 0
    assert torch.equal(changed[:20], source[:20]) and torch.equal(changed[:, :130], source[:, :130])


def test_the_edge_mask_ramps_from_the_border_to_one():
    m = edge_mask(10, 3)
    assert m[5, 5] == 1 and m[0, 5] == pytest.approx(1 / 3) and m[0, 0] == pytest.approx(1 / 3)
    assert torch.equal(m, m.flip(0)) and torch.equal(m, m.T)
    assert torch.equal(edge_mask(10, 0), torch.ones(10, 10))




def test_a_portrait_larger_than_an_h264_frame_is_refused_before_its_pixels_are_read():
    huge = torch.zeros(1, 1, 3, dtype=torch.uint8).expand(4353, 8192, 3)  # one row past 8192x4352, no memory
    with pytest.raises(ValueError, match=r"image: 8192x4353 pixels \(36 MP\) is larger than REST takes \(35\.7 MP"):
        prepare_reference(huge, 64)
    pixels, _ = prepare_reference(torch.zeros(64, 8192, 3, dtype=torch.uint8), 64)  # wide but within the limit
    assert pixels.shape == (1, 3, 64, 64)


def test_a_mouth_box_is_mapped_into_the_square_and_cut_to_it():
    from rest_core import mouth_in_square

    crop = CropBox(top=10, left=20, size=100)
    torch.testing.assert_close(mouth_in_square([30, 40, 50, 60], crop, 50), torch.tensor([[5.0, 15.0, 15.0, 25.0]]))
    torch.testing.assert_close(mouth_in_square((10, 40, 50, 60), crop, 50), torch.tensor([[0.0, 15.0, 15.0, 25.0]]))


@pytest.mark.parametrize("box, message", [
    ([130, 40, 150, 60], "lies outside the face square"),
    ([30, 40, 20, 60], "x0 < x1"),
    ([30, 40, 50], "four numbers"),
    ("mouth", "four numbers"),
    ([30, float("inf"), 50, 60], "four numbers"),
])
def test_a_mouth_box_that_is_no_box_or_misses_the_square_is_refused_with_what_to_do(box, message):
    from rest_core import mouth_in_square

    with pytest.raises(ValueError, match=message):
        mouth_in_square(box, CropBox(top=10, left=20, size=100), 50)


def test_a_references_mouth_travels_with_it_in_float32_and_tells_references_apart():
    from rest_core import Reference

    ref = Reference(torch.zeros(1, 8, 1, 2, 2), torch.zeros(1, 3, 64, 64), torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    moved = ref.to("cpu", torch.bfloat16)
    assert moved.pixels.dtype == torch.bfloat16 and moved.mouth.dtype == torch.float32
    assert ref.same_as(moved.to("cpu", torch.float32))
    assert not ref.same_as(Reference(ref.latent, ref.pixels))
    assert not ref.same_as(Reference(ref.latent, ref.pixels, torch.tensor([[1.0, 2.0, 3.0, 5.0]])))
    assert Reference(ref.latent, ref.pixels).same_as(Reference(ref.latent.clone(), ref.pixels.clone()))


def test_a_masks_bounds_are_the_box_around_its_region():
    from rest_core import mask_bounds

    mask = torch.zeros(1, 40, 50)
    mask[0, 10:20, 5:30] = 1.0
    assert mask_bounds(mask, "paint it") == (5, 10, 30, 20)
    with pytest.raises(ValueError, match="it is empty .*; paint it"):
        mask_bounds(torch.zeros(40, 50), "paint it")
