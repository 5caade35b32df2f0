"""The shipped demo model (models/rest-demo.safetensors): what `make demo` and the workflows load out of the box."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rest_core import RESTPipeline, metrics
from rest_core.data.prepare import crop_resize
from rest_core.data.synth import mouth_openness, render_clip

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "rest-demo.safetensors"
HELD_OUT_SEED = 3_000_001  # training used seeds below 1,000,000


@pytest.fixture(scope="module")
def pipe():
    return RESTPipeline.from_pretrained(MODEL, device="cpu")


@pytest.fixture(scope="module")
def talking(pipe):
    """A held-out synthetic speaker: its first frame is the portrait, the rest its ground truth for 4 s."""
    clip = render_clip(HELD_OUT_SEED, seconds=4.04, size=256)
    x0, y0, x1, y1 = (round(v) for v in clip.truth["face_box"])
    crops = crop_resize(clip.frames, (y0, x0, min(x1 - x0, y1 - y0)), pipe.config.resolution)
    truth = torch.from_numpy(crops).float() / 255
    per_frame = clip.sample_rate // 25
    audio = torch.from_numpy(clip.audio[per_frame:])[None]  # the speech under frames 1.., as the eval cuts it
    video = pipe.generate(truth[0], audio, clip.sample_rate, seed=0)
    return video, truth[1:], np.asarray(clip.truth["mouth_open"][1:])


def test_demo_model_fits_the_repository_limit():
    assert MODEL.stat().st_size <= 40 * 1024 * 1024


def test_demo_model_defaults_match_the_example_workflow(pipe):
    workflow = json.loads((ROOT / "workflows" / "api" / "talking_head.json").read_text())
    sampler = next(n["inputs"] for n in workflow.values() if n["class_type"] == "RESTStreamingSampler")
    assert (pipe.config.name, pipe.config.sampler.steps, pipe.config.sampler.cfg) == \
        ("rest-demo", sampler["steps"], sampler["cfg"])


def test_demo_model_opens_the_mouth_with_the_speech(talking):
    video, _, mouth_open = talking
    assert metrics.pearson(mouth_openness(video.numpy()), mouth_open[:len(video)]) > 0.4


def test_demo_model_keeps_the_portraits_identity(talking):
    video, truth, _ = talking
    assert video.shape == truth.shape
    assert metrics.psnr(video, truth) > 18
