"""mp4 output: frames of any size reach the encoder with even sides, and the audio ends with the video."""

import av
import numpy as np
import pytest
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
    tone = 0.3 * torch.sin(torch.arange(44_100) * (2 * torch.pi * 440 / 22_050))[None]  # 2 s: cut to 1.2 s
    writer.close(tone)
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
        heard = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio)])
    assert abs(len(heard) / 22_050 - 30 / 25) < 0.05
    start = np.argmax(np.correlate(heard[:4096], tone[0, 1024:2048].numpy(), "valid"))  # the encoder's delay
    said = heard[start:start + 20_000]
    assert np.corrcoef(said, tone[0, 1024:1024 + len(said)].numpy())[0, 1] > 0.95  # across the 1 s blocks


def test_frames_become_uint8_rounded_to_nearest_and_clamped():
    from rest_core.media import to_uint8

    frames = torch.tensor([[-0.5, 0.0, 0.5 / 255, 0.49 / 255, 127.5 / 255, 1.0, 1.7]])
    assert to_uint8(frames).tolist() == [[0, 0, 0, 0, 128, 255, 255]]
    assert to_uint8(frames).dtype == torch.uint8


@pytest.mark.parametrize("height, width", [(76, 92), (160, 160), (300, 200)])
def test_the_same_frames_make_the_same_file_at_sizes_where_x264_was_not_repeatable(tmp_path, height, width):
    t = torch.linspace(0, 1, 40)[:, None, None, None]
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pattern = torch.stack([torch.sin(xx / 7), torch.cos(yy / 5), torch.sin((xx + yy) / 9)], dim=-1)[None]
    frames = (torch.sin(pattern * 3 + t * 6) + 1) / 2  # [40, H, W, 3]: smooth, moving
    files = []
    for i in range(5):
        path = tmp_path / f"{i}.mp4"
        writer = VideoWriter(path, 25)
        for chunk in frames.split(8):
            writer.write(chunk)
        writer.close()
        files.append(path.read_bytes())
        torch.randn(300, 300) @ torch.randn(300, 300)  # other work between the writes, as in a server
    assert all(f == files[0] for f in files)
