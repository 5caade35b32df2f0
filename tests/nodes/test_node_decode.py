import pytest
import torch

from conftest import SAMPLING, audio_dict
from nodes.decode import RESTDecode, RESTPasteBack
from nodes.encode import RESTSpeechEncoder
from nodes.sampler import RESTStreamingSampler


@pytest.fixture(scope="module")
def latent(rest_model, rest_reference):
    torch.manual_seed(4)
    speech, _ = RESTSpeechEncoder().encode(rest_model, audio_dict(torch.randn(1, 30_000) * 0.1, 16_000))
    return RESTStreamingSampler().sample(rest_model, rest_reference, speech, **SAMPLING, live_player=False)[0]


def test_decode_reuses_the_frames_the_stream_made(comfy, rest_model, latent):
    frames, fps = RESTDecode().decode(rest_model, latent)
    assert frames is latent["rest_frames"] and fps == 25.0
    assert comfy.loaded == []  # nothing decoded, nothing loaded


def test_decode_of_changed_latents_decodes_them_exactly_as_the_stream_did(comfy, rest_model, latent):
    copy = dict(latent, samples=latent["samples"].clone())  # what a latent-editing node passes on
    frames, _ = RESTDecode().decode(rest_model, copy)
    assert frames is not latent["rest_frames"] and torch.equal(frames, latent["rest_frames"])
    assert frames.shape[0] == latent["rest_video_frames"] == 47


def test_a_latent_from_elsewhere_is_refused(comfy, rest_model):
    with pytest.raises(ValueError, match="not made by REST Streaming Sampler"):
        RESTDecode().decode(rest_model, {"samples": torch.zeros(1, 4, 8, 8)})
    with pytest.raises(ValueError, match="not made by REST Streaming Sampler"):  # a bare z_R, as older versions kept
        RESTDecode().decode(rest_model, {"samples": torch.zeros(1, 8, 3, 2, 2), "rest_video_frames": 24,
                                         "rest_reference": torch.zeros(1, 8, 1, 2, 2)})


def test_paste_back_puts_the_frames_into_the_source_at_the_crop(comfy, rest_reference, portrait_image):
    frames = torch.rand(5, 64, 64, 3)
    out, = RESTPasteBack().paste(frames, rest_reference, feather=0)
    assert out.shape == (5, 90, 70, 3)
    box = rest_reference.crop  # rows 10..80, all 70 columns
    assert torch.equal(out[:, :box.top], portrait_image.expand(5, -1, -1, -1)[:, :box.top])
    assert torch.equal(out[:, box.top + box.size:], portrait_image.expand(5, -1, -1, -1)[:, box.top + box.size:])
    inside = out[:, box.top:box.top + box.size]
    resized = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2), size=(70, 70), mode="bilinear",
                                              antialias=True).permute(0, 2, 3, 1).clamp(0, 1)
    assert torch.allclose(inside, resized, atol=1e-6)


def test_feathering_blends_the_border_and_keeps_the_centre(comfy, rest_reference):
    frames = torch.ones(1, 64, 64, 3)
    hard, = RESTPasteBack().paste(frames, rest_reference, feather=0)
    soft, = RESTPasteBack().paste(frames, rest_reference, feather=8)
    assert torch.equal(soft[0, 45, 35], hard[0, 45, 35])  # centre
    assert not torch.equal(soft[0, 10, 35], hard[0, 10, 35])  # the crop's top edge


def test_paste_back_refuses_non_image_input(comfy, rest_reference):
    with pytest.raises(ValueError, match="IMAGE frames"):
        RESTPasteBack().paste(torch.rand(64, 64, 3), rest_reference, feather=0)


def test_paste_back_that_the_machine_cannot_hold_is_refused_before_it_starts(comfy, rest_reference, monkeypatch):
    import rest_core.checks

    monkeypatch.setattr(rest_core.checks, "available_memory", lambda: 2**20)
    with pytest.raises(ValueError, match=r"REST Paste Back: 50 frames of 70x90 pixels .* scale the portrait down"):
        RESTPasteBack().paste(torch.zeros(50, 64, 64, 3), rest_reference, 0)


def test_the_sampler_refuses_frames_the_machine_cannot_hold_before_the_first_step(comfy, rest_model, rest_reference,
                                                                                monkeypatch):
    import rest_core.checks

    speech, _ = RESTSpeechEncoder().encode(rest_model, audio_dict(torch.randn(1, 32_000) * 0.1, 16_000))
    monkeypatch.setattr(rest_core.checks, "available_memory", lambda: 2**20)
    with pytest.raises(ValueError, match="REST Streaming Sampler: 50 frames .* use REST Render Video"):
        RESTStreamingSampler().sample(rest_model, rest_reference, speech, **SAMPLING, live_player=False)
