"""mp4 output: frames of any size reach the encoder with even sides, and the audio ends with the video."""

import av
import numpy as np
import torch

from rest_core import VideoWriter, even_size


def test_even_size_repeats_an_odd_sides_last_row_and_column_once():
    frames = torch.rand(2, 5, 7, 3)
    out = even_size(frames)
    assert out.shape == (2, 6, 8, 3)
    assert torch.equal(out[:, :5, :7], frames)
    assert torch.equal(out[:, 5, :7], frames[:, 4]) and torch.equal(out[:, :5, 7], frames[:, :, 6])
    assert even_size(out) is out


def test_an_odd_sized_video_is_written_with_its_audio(tmp_path):
    path = tmp_path / "odd.mp4"
    writer = VideoWriter(path, 25, audio_rate=22_050, audio_channels=1)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 159), torch.linspace(0, 1, 101), indexing="ij")
    frames = torch.stack([ys, xs, (ys + xs) / 2], dim=-1).expand(30, -1, -1, -1)  # smooth: H.264 keeps it
    writer.write(frames[:24])
    writer.write(frames[24:])
    writer.close(torch.randn(1, 22_050) * 0.1)
    writer.close()  # a second close does nothing
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
    assert len(decoded) == 30 and decoded[0].shape == (160, 102, 3)
    first = (frames[0].numpy() * 255).round()
    assert np.abs(decoded[0][:159, :101].astype(float) - first).mean() < 2
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.sample_rate == 22_050
        assert abs(sum(f.samples for f in container.decode(audio)) / 22_050 - 30 / 25) < 0.05
