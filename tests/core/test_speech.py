import numpy as np
import pytest
import torch
import torchaudio

from rest_core.speech import (SAMPLES_PER_LATENT, SpeechWindows, latent_frames, prepare_audio, speech_features,
                              video_frames)
from rest_core.whisper import WhisperEncoder, log_mel_spectrogram


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return WhisperEncoder().eval()


@pytest.fixture(scope="module")
def speech_16k(speak):
    audio, rate = speak("Streaming speech must give the same features as the whole clip.")
    return torchaudio.functional.resample(audio[0], rate, 16_000)


def push_in_random_pieces(stream: SpeechWindows, audio: torch.Tensor, seed: int, largest: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out, i = [], 0
    while i < audio.shape[-1]:
        n = int(torch.randint(1, largest, (1,), generator=g))
        out.append(stream.push(audio[..., i:i + n]))
        i += n
    out.append(stream.finish())
    return torch.cat(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_in_random_pieces_equals_offline_exactly(encoder, speech_16k, seed):
    offline = speech_features(encoder, speech_16k, 16_000, 8, 8)
    streamed = push_in_random_pieces(SpeechWindows(encoder, 8, 8), speech_16k, seed, largest=4000)
    assert streamed.shape == offline.shape == (latent_frames(speech_16k.shape[0]), 32, 384)
    assert torch.equal(streamed, offline)


@pytest.mark.parametrize("rate, channels", [(48_000, 2), (44_100, 6), (8_000, 1)])
def test_streaming_equals_offline_at_any_rate_and_channel_count(encoder, speech_16k, rate, channels):
    audio = prepare_audio(speech_16k[:30_000], 16_000)
    waveform = torch.stack([audio * (0.5 + c / channels) for c in range(channels)])  # [C, N] at 16 kHz
    waveform = torchaudio.functional.resample(waveform, 16_000, rate)
    offline = speech_features(encoder, waveform, rate, 8, 8)
    streamed = push_in_random_pieces(SpeechWindows(encoder, 8, 8, sample_rate=rate), waveform, 3, largest=5000)
    assert streamed.shape[0] == latent_frames(-(-waveform.shape[1] * 16_000 // rate))
    assert torch.equal(streamed, offline)


def test_batched_windows_match_one_at_a_time_within_float16_rounding(encoder, speech_16k):
    one_at_a_time = speech_features(encoder, speech_16k, 16_000, 8, 8)
    for batch in (3, 64):  # 3 leaves a ragged last batch
        batched = speech_features(encoder, speech_16k, 16_000, 8, 8, batch=batch)
        assert batched.shape == one_at_a_time.shape
        torch.testing.assert_close(batched, one_at_a_time, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("batch", [0, -1, 2.0, True])
def test_a_batch_that_is_not_a_positive_count_is_refused(encoder, batch):
    with pytest.raises(ValueError, match="batch"):
        SpeechWindows(encoder, 8, 8, batch=batch)


@pytest.mark.parametrize("left, right", [(0, 0), (3, 1), (16, 0), (5, 2)])
def test_streaming_equals_offline_for_any_context(encoder, speech_16k, left, right):
    audio = speech_16k[:40_000]
    offline = speech_features(encoder, audio, 16_000, left, right)
    assert offline.shape[1] == 16 + left + right
    assert torch.equal(push_in_random_pieces(SpeechWindows(encoder, left, right), audio, 7, largest=900), offline)


def test_a_window_is_whispers_encoding_of_its_own_log_mel(encoder, speech_16k):
    """Away from the clip's edges, with the running max already at the clip's max, window j is Whisper's
    front end and encoder on mel frames [32 j - 16, 32 j + 48)."""
    loud = torch.cat([torch.full((800,), 0.9) * torch.sin(torch.arange(800.0)), speech_16k])  # max comes first
    windows = speech_features(encoder, loud, 16_000, 8, 8)
    mel = log_mel_spectrogram(loud)  # [80, T]
    for j in (2, 5):
        with torch.no_grad():
            expected = encoder(mel[None, :, 32 * j - 16:32 * j + 48])[0]
        torch.testing.assert_close(windows[j], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("num_samples", [1, 300, 641, 5119, 5120, 5121, 16_000 + 13, 3 * SAMPLES_PER_LATENT + 333])
def test_one_window_per_latent_frame_for_any_length(encoder, num_samples):
    audio = torch.randn(num_samples) * 0.1
    frames = video_frames(num_samples)
    assert frames == max(1, round(num_samples / 640))
    assert latent_frames(num_samples) == -(-frames // 8)
    assert speech_features(encoder, audio, 16_000, 8, 8).shape[0] == latent_frames(num_samples)


def test_silence_gives_finite_features_and_lookahead_is_162_5_ms(encoder):
    windows = speech_features(encoder, torch.zeros(16_000), 16_000, 8, 8)
    assert windows.shape[0] == 4 and torch.isfinite(windows).all()
    assert SpeechWindows(encoder, 8, 8).lookahead_samples == 2600  # 162.5 ms at 16 kHz
    assert SpeechWindows(encoder, 8, 0).lookahead_samples == 40  # half a mel window past the frame


def test_a_window_is_emitted_as_soon_as_its_lookahead_arrives(encoder):
    stream = SpeechWindows(encoder, 8, 8)
    needed = SAMPLES_PER_LATENT + stream.lookahead_samples
    assert stream.push(torch.zeros(needed - 1)).shape[0] == 0
    assert stream.push(torch.zeros(1)).shape[0] == 1


def test_empty_stream_and_bad_pieces_are_rejected(encoder):
    stream = SpeechWindows(encoder, 8, 8)
    with pytest.raises(ValueError, match="NaN or Inf"):
        stream.push(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="one clip at a time"):
        stream.push(torch.zeros(2, 2, 100))
    with pytest.raises(ValueError, match="empty"):
        stream.finish()
    stream = SpeechWindows(encoder, 8, 8)
    stream.push(torch.zeros(10))
    stream.finish()
    with pytest.raises(ValueError, match="finished"):
        stream.push(torch.zeros(10))


@pytest.mark.parametrize("rate", [8_000, 16_000, 22_050, 44_100, 48_000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_any_rate_and_channel_count_becomes_16k_mono(rate, channels):
    seconds = 1.3
    t = torch.arange(int(rate * seconds)) / rate
    waveform = torch.sin(2 * torch.pi * 440 * t).repeat(channels, 1) * 0.5
    audio = prepare_audio(waveform[None], rate)  # ComfyUI AUDIO layout [1, C, N]
    assert audio.dtype == torch.float32 and audio.dim() == 1
    assert abs(audio.shape[0] - 16_000 * seconds) <= 1
    spectrum = torch.fft.rfft(audio).abs()
    assert abs(int(spectrum.argmax()) / seconds - 440) < 2  # the tone survives resampling


def test_integer_pcm_is_scaled_and_channels_averaged():
    pcm = torch.tensor([[16384, -32768], [0, 0]], dtype=torch.int16)
    torch.testing.assert_close(prepare_audio(pcm, 16_000), torch.tensor([0.25, -0.5]))
    torch.testing.assert_close(prepare_audio(torch.tensor([192, 0], dtype=torch.uint8), 16_000),
                               torch.tensor([0.5, -1.0]))


def test_numpy_samples_and_sample_rates_are_accepted():
    audio = prepare_audio(np.zeros((2, 4410), dtype=np.float32), np.int64(44_100))
    assert audio.shape == (1600,) and audio.dtype == torch.float32


@pytest.mark.parametrize("waveform, rate, word", [
    (torch.zeros(0), 16_000, "empty"),
    (torch.zeros(2, 0), 16_000, "empty"),
    (torch.tensor([0.0, float("nan")]), 16_000, "NaN or Inf"),
    (torch.tensor([0.0, float("inf")]), 44_100, "NaN or Inf"),
    (torch.zeros(2, 1, 100), 16_000, "one clip at a time"),
    (torch.zeros(48_000, 2), 48_000, "transpose"),
    (torch.zeros(100), 0, "sample_rate"),
    (torch.zeros(100), 16_000.0, "sample_rate"),
    (torch.zeros(1, 1, 1, 100), 16_000, "expected shape"),
    ("speech.wav", 16_000, "tensor or array"),
])
def test_bad_audio_gets_a_clear_error(waveform, rate, word):
    with pytest.raises(ValueError, match=word):
        prepare_audio(waveform, rate)


def test_audio_shorter_than_a_video_frame_still_gives_one_latent_frame(encoder):
    audio = prepare_audio(torch.randn(1, 30) * 0.1, 48_000)
    assert audio.shape[0] == 10
    assert speech_features(encoder, audio, 16_000, 8, 8).shape == (1, 32, 384)


def test_finish_can_pad_to_whole_chunks_with_silence(encoder):
    audio = torch.randn(16_000) * 0.1  # 25 video frames -> 4 latent frames
    stream = SpeechWindows(encoder, 8, 8)
    windows = torch.cat([stream.push(audio), stream.finish(multiple=3)])
    assert windows.shape[0] == 6
    assert torch.equal(windows[:4], speech_features(encoder, audio, 16_000, 8, 8))
    silence = speech_features(encoder, torch.zeros(16_000 * 3), 16_000, 8, 8)
    assert torch.equal(windows[5], silence[5])  # far enough past the end to see nothing but silence


@pytest.mark.parametrize("rate", [1, 3_999, 192_001, 384_000])
def test_a_sample_rate_speech_is_never_recorded_at_is_refused_with_the_range(encoder, rate):
    with pytest.raises(ValueError, match=rf"{rate} Hz is not a rate speech is recorded at; give audio sampled at "
                                         rf"4000 to 192000 Hz"):
        SpeechWindows(encoder, 8, 8, sample_rate=rate)


@pytest.mark.parametrize("rate", [4_000, 192_000])
def test_the_ends_of_the_speech_rate_range_are_accepted(encoder, rate):
    assert speech_features(encoder, torch.randn(rate // 2) * 0.1, rate, 8, 8).shape[0] == latent_frames(8_000)
