import pytest
import torch

from rest_core import RESTConfig
from rest_core.config import SpeechConfig
from rest_core.speech import speech_features
from rest_core.speech_ae import SpeechAE
from rest_core.whisper import WhisperEncoder
from rest_core.whisper_import import default_whisper_encoder

SMALL = SpeechConfig(hidden=64, depth=1, heads=4)


def test_presets_match_the_dit_speech_shapes():
    for name in ("rest-2b", "rest-demo"):
        cfg = RESTConfig.preset(name)
        ae = SpeechAE.from_config(cfg)
        windows = torch.randn(5, cfg.speech.window, 384)
        e = ae.encode(windows)
        assert e.shape == (5, cfg.dit.speech_tokens, cfg.dit.speech_dim)
        assert ae.decode(e).shape == (5, 16, 384)


def test_one_speech_latent_group_per_latent_frame_of_real_windows():
    torch.manual_seed(0)
    windows = speech_features(WhisperEncoder().eval(), torch.randn(16_000 + 99) * 0.1, 16_000, 8, 8)
    e = SpeechAE(SMALL, tokens=3, dim=24).encode(windows)
    assert e.shape == (4, 3, 24)  # 1.006 s -> 25 video frames -> 4 latent frames


def test_each_latent_frame_is_encoded_on_its_own():
    torch.manual_seed(0)
    ae = SpeechAE(SMALL, tokens=3, dim=24).eval()
    windows = torch.randn(6, 32, 384)
    with torch.no_grad():
        torch.testing.assert_close(ae.encode(windows)[2:3], ae.encode(windows[2:3]), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def real_windows(speak):
    audio, rate = speak("Speech autoencoders compress what was said into a few tokens per latent frame.")
    return speech_features(default_whisper_encoder(), audio, rate, SMALL.context_left, SMALL.context_right)


def test_speech_ae_learns_to_reconstruct_a_small_batch_of_real_speech(real_windows):
    torch.manual_seed(0)
    ae = SpeechAE(SMALL, tokens=4, dim=32)
    optimiser = torch.optim.AdamW(ae.parameters(), lr=2e-3)
    with torch.no_grad():
        first = ae.loss(real_windows).item()
    for _ in range(150):
        loss = ae.loss(real_windows)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.5 * first, (first, loss.item())
    assert loss.item() < 0.5 * ae.centre(real_windows).var().item()  # far better than predicting the mean


def test_the_reconstruction_target_is_the_frames_own_features():
    ae = SpeechAE(SpeechConfig(context_left=5, context_right=3, hidden=64, depth=1, heads=4), tokens=2, dim=8)
    windows = torch.arange(24.0)[None, :, None].expand(1, 24, 384)
    assert ae.centre(windows)[0, :, 0].tolist() == list(range(5, 21))


@pytest.mark.parametrize("shape, word", [((2, 31, 384), "H_w=32"), ((2, 32, 80), "feature_dim=384")])
def test_bad_windows_are_rejected(shape, word):
    with pytest.raises(ValueError, match=word):
        SpeechAE(SMALL, tokens=2, dim=8).encode(torch.zeros(shape))


def test_nan_windows_are_rejected():
    windows = torch.zeros(1, 32, 384)
    windows[0, 3, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        SpeechAE(SMALL, tokens=2, dim=8).encode(windows)
