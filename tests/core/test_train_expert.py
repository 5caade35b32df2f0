"""The mouth-expert stage on a tiny case: it renders its stills once, trains, validates on held-out styles."""

import json

import numpy as np
import pytest
import torch

from rest_core.__main__ import main
from rest_core.data.faces import HELDOUT_STYLES, TRAIN_STYLES
from rest_core.eval.mouth_expert import CROP, load_expert
from rest_core.train import expert as stage

pytestmark = pytest.mark.tools("espeak-ng")  # the synthetic clips speak with it


def test_stills_hold_the_mouth_box_and_the_asked_opening():
    crops, opening, family = stage.render_identity((3, "train", 5))
    assert crops.shape == (5, stage.STORED, stage.STORED, 3) and crops.dtype == np.uint8
    assert opening.shape == (5,) and 0 <= opening.min() and opening.max() <= 1
    assert stage.FAMILIES[family] in TRAIN_STYLES
    again = stage.render_identity((3, "train", 5))
    assert np.array_equal(again[0], crops) and np.array_equal(again[1], opening)


def test_augmentation_recolours_the_pair_alike():
    crops = torch.from_numpy(stage.render_identity((4, "train", 8))[0])
    ref, frame = stage.augment(crops, crops, torch.Generator().manual_seed(0))
    again = stage.augment(crops, crops, torch.Generator().manual_seed(1))
    assert ref.shape == frame.shape == (8, 3, CROP, CROP) and 0 <= frame.min() and frame.max() <= 1
    assert (frame - again[1]).abs().mean() > 0.01
    # the same stills: the pair differs only by placement, blur and noise, not by colour
    colour_gap = (ref.mean(dim=(2, 3)) - frame.mean(dim=(2, 3))).abs().mean()
    assert colour_gap < 0.05


def test_softening_keeps_a_crop_when_asked_for_none_and_blurs_it_otherwise():
    x = stage.place(torch.from_numpy(stage.render_identity((5, "train", 8))[0]), None, jitter=False)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(stage.soften(x, g, 0.0), x, atol=1e-4)

    def sharpness(y):
        return (y[:, :, 1:] - y[:, :, :-1]).abs().mean()

    assert sharpness(stage.soften(x, g, 1.8)) < 0.9 * sharpness(x)


def test_pairs_are_two_different_stills_of_one_identity():
    data = {"openness": torch.arange(12, dtype=torch.float32)}
    a, b, truth = stage.pairs(data, 4, torch.tensor([0, 1, 2, 2, 1]), torch.Generator().manual_seed(0))
    assert torch.equal(a // 4, torch.tensor([0, 1, 2, 2, 1])) and torch.equal(b // 4, a // 4)
    assert (a != b).all() and torch.equal(truth, (b - a).float())


@pytest.mark.slow
def test_the_stage_trains_validates_on_held_out_families_and_reuses_its_stills(tmp_path, capsys):
    config = tmp_path / "expert.toml"
    config.write_text("[train]\nsteps = 4\nbatch = 8\nlr = 1e-3\nwarmup = 1\ncheckpoint_every = 2\n"
                      "[expert]\nidentities = 6\nposes = 2\nheldout_identities = 8\nclips_per_family = 1\n"
                      "workers = 1\n")
    args = ["train", "expert", "--config", str(config), "--data", str(tmp_path / "data"),
            "--out", str(tmp_path / "run"), "--device", "cpu"]
    assert main(args) == 0
    validation = json.loads((tmp_path / "run" / "validation.json").read_text())
    assert validation["stills"]["pairs"] == 8
    assert set(validation["stills"]) - {"r", "mae", "pairs"} <= set(HELDOUT_STYLES)
    assert set(validation["clips"]) == set(HELDOUT_STYLES) | {"mean"}
    assert all(validation["clips"][f]["clips"] == 1 for f in HELDOUT_STYLES)
    expert = load_expert(tmp_path / "run" / "mouth_expert.safetensors")
    assert expert(torch.rand(2, 3, CROP, CROP), torch.rand(2, 3, CROP, CROP)).shape == (2,)
    stamp = (tmp_path / "data" / "train.safetensors").stat().st_mtime_ns
    (tmp_path / "run" / "state.safetensors").unlink()
    assert main(args) == 0
    assert (tmp_path / "data" / "train.safetensors").stat().st_mtime_ns == stamp


def test_unknown_expert_settings_are_refused(tmp_path, capsys):
    config = tmp_path / "expert.toml"
    config.write_text("[expert]\nfaces = 3\n")
    assert main(["train", "expert", "--config", str(config), "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "unknown [expert] setting 'faces'" in capsys.readouterr().err
