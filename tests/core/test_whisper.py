import pytest
import torch
import torchaudio
import whisper
from whisper.audio import mel_filters as openai_mel_filters

from rest_core.whisper import WhisperEncoder, log_mel_spectrogram, mel_filters


@pytest.fixture(scope="module")
def speech_16k(speak):
    audio, rate = speak("The quick brown fox jumps over the lazy dog, and then it takes a nap.")
    return torchaudio.functional.resample(audio[0], rate, 16_000)


def test_mel_filters_match_whispers_shipped_bank():
    torch.testing.assert_close(mel_filters(80), openai_mel_filters("cpu", 80), atol=1e-6, rtol=0)


def test_log_mel_matches_openai_whisper_on_speech(speech_16k):
    expected = whisper.log_mel_spectrogram(speech_16k)
    got = log_mel_spectrogram(speech_16k)
    assert got.shape == expected.shape == (80, speech_16k.shape[0] // 160)
    assert (got - expected).abs().max() < 1e-4


def test_log_mel_matches_openai_whisper_on_noise_silence_and_a_batch():
    torch.manual_seed(0)
    clips = torch.randn(3, 16_000 * 2 + 77) * torch.tensor([[0.5], [1e-3], [0.0]])
    expected = torch.stack([whisper.log_mel_spectrogram(c) for c in clips])
    assert (log_mel_spectrogram(clips) - expected).abs().max() < 1e-4


def test_log_mel_rejects_audio_shorter_than_its_padding():
    with pytest.raises(ValueError, match="at least 201 samples"):
        log_mel_spectrogram(torch.zeros(100))


def test_encoder_matches_openai_audio_encoder_with_the_same_weights():
    torch.manual_seed(0)
    reference = whisper.model.AudioEncoder(n_mels=80, n_ctx=1500, n_state=384, n_head=6, n_layer=4).eval()
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if "ln" in name:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.normal_(0, 0.1)
    ours = WhisperEncoder().eval()
    ours.load_state_dict(reference.state_dict())
    mel = torch.randn(2, 80, 3000)
    with torch.no_grad():
        torch.testing.assert_close(ours(mel), reference(mel), atol=2e-5, rtol=1e-5)


def test_tiny_encoder_has_whispers_parameter_count():
    assert sum(p.numel() for p in WhisperEncoder().parameters()) == 7_632_384


def test_encoder_on_a_short_window_uses_the_start_of_the_positional_table():
    torch.manual_seed(0)
    encoder = WhisperEncoder().eval()
    mel = torch.randn(1, 80, 64)
    with torch.no_grad():
        out = encoder(mel)
        encoder.positional_embedding[32:] = 0  # positions past the window must not matter
        torch.testing.assert_close(encoder(mel), out, atol=0, rtol=0)
    assert out.shape == (1, 32, 384)


@pytest.mark.parametrize("shape, word", [((1, 64, 100), "n_mels=80"), ((1, 80, 3002), "split longer audio")])
def test_encoder_rejects_bad_mel_with_a_clear_message(shape, word):
    with pytest.raises(ValueError, match=word):
        WhisperEncoder()(torch.zeros(shape))
