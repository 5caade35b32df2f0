import pytest
import torch

from conftest import audio_dict
from nodes.encode import RESTReferenceEncoder, RESTSpeechEncoder
from rest_core.pipeline import CropBox


def test_the_reference_keeps_its_crop_and_source_for_paste_back(rest_model, rest_reference, portrait_image):
    assert rest_reference.latent.shape == (1, 8, 1, 2, 2)  # 64 px / 32
    assert rest_reference.crop == CropBox(top=10, left=0, size=70)
    assert torch.equal(rest_reference.source, portrait_image[0])
    assert torch.equal(rest_reference.latent, rest_model.pipe.encode_reference(portrait_image)[0])


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
    assert speech.audio_16k.shape[0] == -(-samples * 16_000 // rate)


@pytest.mark.parametrize("audio, message", [
    ({"waveform": torch.zeros(1, 1, 0), "sample_rate": 16_000}, "empty"),
    ({"waveform": torch.full((1, 1, 100), float("inf")), "sample_rate": 16_000}, "NaN or Inf"),
    ({"waveform": torch.zeros(1, 1, 100), "sample_rate": 0}, "sample_rate"),
    (torch.zeros(1, 1, 100), "ComfyUI AUDIO"),
])
def test_bad_audio_is_refused_with_what_to_do(comfy, rest_model, audio, message):
    with pytest.raises(ValueError, match=message):
        RESTSpeechEncoder().encode(rest_model, audio)
