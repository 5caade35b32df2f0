import pytest
import torch
import torchaudio

from rest_core.resample import StreamingResampler


def resample_in_pieces(orig: int, new: int, audio: torch.Tensor, seed: int) -> torch.Tensor:
    resampler = StreamingResampler(orig, new)
    g = torch.Generator().manual_seed(seed)
    out, i = [], 0
    while i < audio.shape[0]:
        n = int(torch.randint(0, 2500, (1,), generator=g))  # empty pieces too
        out.append(resampler.push(audio[i:i + n]))
        i += n
    out.append(resampler.finish())
    return torch.cat(out)


@pytest.mark.parametrize("rate", [8_000, 11_025, 22_050, 44_100, 48_000, 96_000, 12_345])
def test_whole_clip_matches_torchaudio_resample(rate):
    torch.manual_seed(0)
    audio = torch.randn(rate + 37)
    expected = torchaudio.functional.resample(audio, rate, 16_000)
    resampler = StreamingResampler(rate, 16_000)
    got = torch.cat([resampler.push(audio), resampler.finish()])
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("rate", [8_000, 44_100, 48_000])
@pytest.mark.parametrize("seed", [0, 1])
def test_pieces_give_exactly_the_whole_clip_result(rate, seed):
    torch.manual_seed(seed)
    audio = torch.randn(2 * rate + 11)
    resampler = StreamingResampler(rate, 16_000)
    whole = torch.cat([resampler.push(audio), resampler.finish()])
    assert torch.equal(resample_in_pieces(rate, 16_000, audio, seed), whole)


def test_output_arrives_within_about_ten_milliseconds():
    resampler = StreamingResampler(48_000, 16_000)
    out = resampler.push(torch.randn(48_000))
    assert 16_000 - out.shape[0] <= 160 + 20  # one block plus the filter's reach


def test_same_rate_passes_samples_through():
    resampler = StreamingResampler(16_000, 16_000)
    audio = torch.randn(100)
    assert torch.equal(torch.cat([resampler.push(audio), resampler.finish()]), audio)


def test_a_finished_resampler_refuses_more_audio():
    resampler = StreamingResampler(44_100, 16_000)
    resampler.finish()
    with pytest.raises(ValueError, match="finished"):
        resampler.push(torch.zeros(10))
