"""The mouth-opening expert: its crops, its indifference to palette, and the shipped expert on held-out styles."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from rest_core.data.faces import HELDOUT_STYLES
from rest_core.data.synth import render_clip, write_clip
from rest_core.data.heldout import load_clip
from rest_core.eval.metrics import pearson
from rest_core.eval.mouth_expert import CROP, SHIPPED, MouthExpert, load_expert, mouth_crops, normalise, read_openness

pytestmark = pytest.mark.tools("espeak-ng")  # the synthetic clips speak with it


def test_a_crop_is_the_box_resampled():
    frame = torch.zeros(1, 64, 64, 3)
    frame[0, 16:32, 8:24] = torch.tensor([1.0, 0.5, 0.25])  # a 16 px square
    crop = mouth_crops(frame, [8, 16, 24, 32], size=16)
    assert crop.shape == (1, 3, 16, 16)
    assert torch.allclose(crop[0, :, 2:-2, 2:-2], torch.tensor([1.0, 0.5, 0.25])[:, None, None], atol=1e-5)
    shifted = mouth_crops(frame, [16, 16, 32, 32], size=16)  # half off the square: its right half is background
    assert shifted[0, 0, 8, :6].mean() > 0.9 and shifted[0, 0, 8, 10:].max() < 0.1


def test_crops_take_uint8_frames_and_boxes_past_the_edge():
    frames = torch.randint(0, 256, (3, 40, 50, 3), dtype=torch.uint8)
    crop = mouth_crops(frames, [-10.5, 30.2, 20.5, 61.2])
    assert crop.shape == (3, 3, CROP, CROP) and 0 <= crop.min() and crop.max() <= 1
    with pytest.raises(ValueError, match="empty"):
        mouth_crops(frames, [5, 5, 5, 5])


def test_the_expert_does_not_see_palette_or_brightness():
    torch.manual_seed(0)
    expert = MouthExpert().eval()
    reference, crops = torch.rand(2, 4, 3, CROP, CROP) * 0.5 + 0.2

    def recolour(x):
        return x * 0.6 + torch.tensor([0.3, -0.1, 0.05])[None, :, None, None]

    assert torch.allclose(normalise(reference, crops), normalise(recolour(reference), recolour(crops)), atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(expert(reference, crops), expert(recolour(reference), recolour(crops)), atol=1e-4)


def test_a_file_that_is_not_an_expert_is_refused(tmp_path):
    save_file({"x": torch.zeros(1)}, str(tmp_path / "x.safetensors"), metadata={"part": "dit"})
    with pytest.raises(ValueError, match="not a mouth expert"):
        load_expert(tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="not found"):
        load_expert(tmp_path / "missing.safetensors")


def test_shipped_expert_is_small():
    assert SHIPPED.stat().st_size < 4 * 1024 * 1024


@pytest.fixture(scope="module")
def held_out_clips(tmp_path_factory):
    """One clip of every held-out style family, written to mp4 and read back as eval does: face-cropped at 128 px
    and whole at 256 px (where the mouth box is a third to a half as wide)."""
    folder = tmp_path_factory.mktemp("held-out-styles")
    clips = []
    for i, family in enumerate(HELDOUT_STYLES):
        path, _ = write_clip(render_clip(6_000_000 + i, 4.0, size=256, looks=family), folder / family)
        clips += [load_clip(path, 128, crop="face"), load_clip(path, 256, crop="full")]
    return clips


def test_shipped_expert_reads_the_mouth_of_held_out_style_families(held_out_clips):
    expert = load_expert()
    readings = []
    for clip in held_out_clips:
        read = read_openness(expert, clip.frames, clip.mouth_box, clip.frames[0])
        readings.append(pearson(read, clip.mouth_open))
    assert np.mean(readings) >= 0.9, readings
    assert min(readings) >= 0.8, readings


def test_the_portrait_reads_as_itself_and_open_mouths_read_above_shut_ones(held_out_clips):
    expert = load_expert()
    for clip in held_out_clips:
        read = read_openness(expert, clip.frames, clip.mouth_box, clip.frames[0])
        shut, wide = read[clip.mouth_open == 0], read[clip.mouth_open > 0.6]
        assert len(shut) and len(wide)
        assert wide.mean() - shut.mean() > 0.35, clip.name
        assert abs(read_openness(expert, clip.frames[:1], clip.mouth_box, clip.frames[0])[0]) < 0.1
