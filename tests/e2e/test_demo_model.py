"""The shipped demo model (models/rest-demo.safetensors): what `make demo` and the workflows load out of the box."""

import json

import pytest

from rest_core import RESTPipeline
from rest_core.data.synth import render_clip, write_clip
from rest_core.data.heldout import load_clip
from rest_core.eval.evaluate import measure, streamed
from rest_core.eval.mouth_expert import load_expert

from conftest import ROOT

pytestmark = pytest.mark.tools("espeak-ng")  # the synthetic clips speak with it

MODEL = ROOT / "models" / "rest-demo.safetensors"
HELD_OUT_SEED = 3_000_001  # training used seeds below 1,000,000


@pytest.fixture(scope="module")
def pipe():
    return RESTPipeline.from_pretrained(MODEL, device="cpu")


@pytest.fixture(scope="module")
def talking(pipe, tmp_path_factory):
    """A held-out synthetic speaker, written, read back, generated and measured as `eval` does: its first frame is
    the portrait, the next 4 s its ground truth."""
    folder = tmp_path_factory.mktemp("held-out")
    video_path, _ = write_clip(render_clip(HELD_OUT_SEED, seconds=4.04), folder / "speaker")
    clip = load_clip(video_path, pipe.config.resolution)
    video = streamed(pipe, clip, len(clip.frames) - 1)
    return video, clip, measure(video, clip, pipe.config.frames_per_chunk, load_expert())


def test_demo_model_fits_the_repository_limit():
    assert MODEL.stat().st_size <= 60 * 1024 * 1024  # the 256x256 model with its conditioned VAE: 41.5 MB


def test_demo_model_defaults_match_the_example_workflow(pipe):
    workflow = json.loads((ROOT / "workflows" / "api" / "talking_head.json").read_text())
    sampler = next(n["inputs"] for n in workflow.values() if n["class_type"] == "RESTStreamingSampler")
    assert (pipe.config.name, pipe.config.sampler.steps, pipe.config.sampler.cfg) == \
        ("rest-demo", sampler["steps"], sampler["cfg"])


def test_demo_model_opens_the_mouth_with_the_speech(talking):
    _, _, row = talking
    assert row["lipsync"] > 0.4, row


def test_demo_model_keeps_the_portraits_identity(talking):
    video, clip, row = talking
    assert video.shape == clip.frames[1:].shape
    assert row["psnr"] > 18
