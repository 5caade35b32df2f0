import os

import numpy as np
import pytest
import torch

import comfy_stubs
from conftest import audio_dict
import folder_paths
from nodes.encode import RESTReferenceEncoder, RESTSpeechEncoder
from PIL import Image

from rest_core import CropBox


def test_the_reference_keeps_its_crop_and_source_for_paste_back(rest_model, rest_reference, portrait_image):
    assert rest_reference.ref.latent.shape == (1, 8, 1, 2, 2)  # 64 px / 32
    assert rest_reference.crop == CropBox(top=10, left=0, size=70)
    assert torch.equal(rest_reference.source, portrait_image[0])
    assert torch.equal(rest_reference.ref.latent, rest_model.pipe.encode_reference(portrait_image)[0].latent)


def test_the_face_box_chooses_the_square_and_the_node_shows_it(comfy, rest_model):
    image = torch.rand(1, 120, 200, 3)
    out = RESTReferenceEncoder().encode(rest_model, image, face_x=130, face_y=20, face_size=64)
    reference, crop = out["result"]
    assert reference.crop == CropBox(top=20, left=130, size=64)
    assert torch.equal(reference.ref.pixels, rest_model.pipe.encode_reference(image, CropBox(20, 130, 64))[0].pixels)
    expected = torch.nn.functional.interpolate(image[0, 20:84, 130:194].permute(2, 0, 1)[None], size=64,
                                               mode="bilinear", antialias=True).permute(0, 2, 3, 1)
    assert crop.shape == (1, 64, 64, 3) and torch.allclose(crop, expected.clamp(0, 1), atol=1e-6)
    shown, = out["ui"]["images"]
    assert shown["type"] == "temp"
    preview = Image.open(os.path.join(folder_paths.get_temp_directory(), shown["subfolder"], shown["filename"]))
    assert preview.size == (200, 120)
    pixels = torch.from_numpy(np.asarray(preview, dtype=np.float32) / 255)
    assert pixels[60, 160].sub(image[0, 60, 160]).abs().max() < 0.01  # inside the box: the portrait
    assert (pixels[60, 40] < image[0, 60, 40] * 0.4 + 0.01).all()  # outside: darkened


def test_a_huge_portraits_preview_is_scaled_down_with_its_box(comfy, rest_model):
    image = torch.rand(1, 3000, 4000, 3)
    out = RESTReferenceEncoder().encode(rest_model, image, face_x=2000, face_y=1000, face_size=1000)
    shown, = out["ui"]["images"]
    preview = np.asarray(Image.open(os.path.join(folder_paths.get_temp_directory(), shown["filename"])))
    assert preview.shape == (384, 512, 3)
    assert tuple(preview[128, 320]) == (255, 204, 0)  # the box's top edge, at 1000 / 7.8125 = 128 rows
    assert preview[200:250, 260:380].mean() > 2 * preview[200:250, 20:120].mean()  # inside bright, outside dark


def test_a_face_mask_sets_the_box_and_overrides_the_numbers(comfy, rest_model):
    mask = torch.zeros(1, 120, 200)
    mask[0, 30:70, 50:110] = 1
    out = RESTReferenceEncoder().encode(rest_model, torch.rand(1, 120, 200, 3), face_x=5, face_y=5, face_size=40,
                                        face_mask=mask)
    assert out["result"][0].crop == CropBox(top=20, left=50, size=60)


def test_a_face_box_outside_the_portrait_is_refused_before_the_model_loads(comfy, rest_model):
    with pytest.raises(ValueError, match="reaches outside the 70x90 image"):
        RESTReferenceEncoder().encode(rest_model, torch.rand(1, 90, 70, 3), face_x=30, face_size=64)
    with pytest.raises(ValueError, match="face_mask is 200x120 but the image is 70x90"):
        RESTReferenceEncoder().encode(rest_model, torch.rand(1, 90, 70, 3), face_mask=torch.ones(1, 120, 200))
    assert comfy.loaded == []


@pytest.fixture(scope="module")
def shape_model(tiny_checkpoint):
    """A tiny REST_MODEL whose VAE draws the mouth's shape (as rest-demo's does)."""
    import dataclasses

    from conftest import TINY_POSE
    from nodes.model import DEFAULT_WHISPER, RESTModelLoader
    from rest_core import RESTPipeline, WhisperEncoder

    path = tiny_checkpoint.parent / "tiny-shape.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        config = dataclasses.replace(TINY_POSE, vae=dataclasses.replace(TINY_POSE.vae, mouth_shape=True))
        RESTPipeline.from_config(config, whisper=WhisperEncoder(layers=1)).save_pretrained(path, include_whisper=True)
    return RESTModelLoader().load(path.name, DEFAULT_WHISPER, "auto", "auto")[0]


def test_a_mouth_mask_says_where_the_mouth_is_in_the_square(comfy, shape_model):
    mask = torch.zeros(1, 120, 200)
    mask[0, 80:90, 60:100] = 1  # the lips, in the portrait's pixels
    out = RESTReferenceEncoder().encode(shape_model, torch.rand(1, 120, 200, 3), face_x=50, face_y=20,
                                        face_size=100, mouth_mask=mask)
    scale = shape_model.pipe.config.resolution / 100
    torch.testing.assert_close(out["result"][0].ref.mouth, torch.tensor([[10.0, 60.0, 50.0, 70.0]]) * scale)
    shown, = out["ui"]["images"]
    preview = np.asarray(Image.open(os.path.join(folder_paths.get_temp_directory(), shown["filename"])))
    assert tuple(preview[80, 75]) == (0, 230, 255) and tuple(preview[89, 60]) == (0, 230, 255)  # the mouth's box
    assert tuple(preview[20, 75]) == (255, 204, 0)  # the face box's top edge


def test_a_mouth_mask_that_is_empty_of_another_size_or_for_a_model_without_the_mouth_shape_is_refused(comfy,
                                                                                                      rest_model):
    portrait = torch.rand(1, 90, 70, 3)
    with pytest.raises(ValueError, match="mouth_mask is 200x120 but the image is 70x90"):
        RESTReferenceEncoder().encode(rest_model, portrait, mouth_mask=torch.ones(1, 120, 200))
    with pytest.raises(ValueError, match="paint over the mouth, or disconnect mouth_mask"):
        RESTReferenceEncoder().encode(rest_model, portrait, mouth_mask=torch.zeros(1, 90, 70))
    above = torch.zeros(1, 90, 70)
    above[0, 2:8, 20:50] = 1  # above the face square (y 10 .. 80)
    with pytest.raises(ValueError, match="lies outside the face square"):
        RESTReferenceEncoder().encode(rest_model, portrait, face_x=0, face_y=10, face_size=70, mouth_mask=above)
    assert comfy.loaded == []  # refused before the model loads
    mask = torch.zeros(1, 90, 70)
    mask[0, 60:70, 20:50] = 1
    with pytest.raises(ValueError, match="does not draw the mouth's shape"):
        RESTReferenceEncoder().encode(rest_model, portrait, mouth_mask=mask)


@pytest.mark.parametrize("image, message", [
    (torch.rand(2, 64, 64, 3), "one portrait"),
    (torch.rand(1, 16, 16, 3), "too small"),
    (torch.full((1, 64, 64, 3), float("nan")), "NaN"),
])
def test_bad_portraits_are_refused_with_what_to_do(comfy, rest_model, image, message):
    with pytest.raises(ValueError, match=message):
        RESTReferenceEncoder().encode(rest_model, image)


@pytest.mark.parametrize("rate, samples", [(44_100, 50_000), (16_000, 16_005), (8_000, 2_000)])
def test_speech_gives_the_frame_count_and_the_audio_fitted_to_it(comfy, rest_model, rate, samples):
    waveform = torch.randn(2, samples) * 0.1
    speech, fitted = RESTSpeechEncoder().encode(rest_model, audio_dict(waveform, rate))
    frames = max(1, round(samples / rate * 25))
    assert speech.speech.video_frames == frames
    assert speech.speech.latents.shape[1] % rest_model.pipe.config.chunk_latents == 0
    assert fitted["sample_rate"] == rate and fitted["waveform"].shape == (1, 2, round(frames * rate / 25))
    n = min(samples, fitted["waveform"].shape[-1])
    assert torch.equal(fitted["waveform"][0, :, :n], waveform[:, :n])
    assert speech.speech.audio_16k.shape[0] == -(-samples * 16_000 // rate)


@pytest.mark.parametrize("audio, message", [
    ({"waveform": torch.zeros(1, 1, 0), "sample_rate": 16_000}, "empty"),
    ({"waveform": torch.full((1, 1, 100), float("inf")), "sample_rate": 16_000}, "NaN or Inf"),
    ({"waveform": torch.zeros(1, 1, 100), "sample_rate": 0}, "sample_rate"),
    ({"waveform": torch.zeros(1, 1, 100), "sample_rate": 1}, "1 Hz is not a rate speech is recorded at"),
    ({"waveform": torch.zeros(1, 1, 100), "sample_rate": 384_000}, "give audio sampled at 4000 to 192000 Hz"),
    (torch.zeros(1, 1, 100), "ComfyUI AUDIO"),
])
def test_bad_audio_is_refused_with_what_to_do(comfy, rest_model, audio, message):
    with pytest.raises(ValueError, match=message):
        RESTSpeechEncoder().encode(rest_model, audio)


def test_speech_encoding_reports_progress_and_stops_when_cancelled(comfy, rest_model):
    audio = audio_dict(torch.randn(1, 40_000) * 0.1, 16_000)  # 2.5 s: three seconds' pieces
    RESTSpeechEncoder().encode(rest_model, audio, unique_id="4")
    assert [(node, done, total) for node, done, total, _ in comfy.progress] == [("4", 1, 3), ("4", 2, 3), ("4", 3, 3)]
    comfy.reset()
    comfy.interrupt_after = 1
    with pytest.raises(comfy_stubs.InterruptProcessingException):
        RESTSpeechEncoder().encode(rest_model, audio, unique_id="4")
    assert len(comfy.progress) == 1  # stopped after its first second


def prompt_feeding(consumer: str) -> dict:
    """A queued prompt whose node "5" (the speech encoder) feeds `consumer`'s speech input."""
    return {"5": {"class_type": "RESTSpeechEncoder", "inputs": {}},
            "6": {"class_type": consumer, "inputs": {"speech": ["5", 0]}}}


def test_speech_for_the_image_path_that_the_machine_cannot_hold_is_refused_before_it_is_encoded(comfy, rest_model,
                                                                                               monkeypatch):
    import rest_core.checks

    monkeypatch.setattr(rest_core.checks, "available_memory", lambda: 64 * 2**20)  # 64 MiB free
    class Encoding(Exception):
        pass

    def encode_speech(*args, **kwargs):
        raise Encoding  # reached: the speech would be encoded now

    monkeypatch.setattr(rest_model.pipe, "encode_speech", encode_speech)
    audio = audio_dict(torch.zeros(1, 8000 * 60), 8000)  # a minute of speech: 1500 frames
    with pytest.raises(ValueError, match=r"REST Streaming Sampler: 1500 frames of 64x64 pixels \(1\.0 minutes\) held "
                                         r"whole take about 0\.2 GiB, more than the 0\.1 GiB free here; for long "
                                         r"speech use REST Render Video \(the long_audio workflow\)"):
        RESTSpeechEncoder().encode(rest_model, audio, unique_id="5", prompt=prompt_feeding("RESTStreamingSampler"))
    with pytest.raises(Encoding):  # the same speech for REST Render Video, which keeps memory flat, is encoded
        RESTSpeechEncoder().encode(rest_model, audio, unique_id="5", prompt=prompt_feeding("RESTRenderVideo"))
