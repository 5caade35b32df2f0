import base64
import io

import numpy as np
import torch
from PIL import Image

from nodes.player import LivePlayer, chunk_event, jpeg, pcm16, preview_image
from rest_core import SampleBuffer, VideoChunk


def test_a_chunk_event_carries_decodable_frames_and_its_audio():
    frames = torch.rand(5, 32, 48, 3)
    audio = torch.linspace(-1, 1, 5 * 640)
    event = chunk_event("3", "abc", 2, 48, frames, audio, 25, 100, False)
    assert (event["node"], event["stream"], event["index"], event["first_frame"]) == ("3", "abc", 2, 48)
    assert (event["width"], event["height"], event["fps"], event["total_frames"]) == (48, 32, 25, 100)
    images = [Image.open(io.BytesIO(base64.b64decode(f))) for f in event["frames"]]
    assert [im.size for im in images] == [(48, 32)] * 5 and images[0].format == "JPEG"
    pcm = np.frombuffer(base64.b64decode(event["audio"]), dtype="<i2")
    assert pcm.shape == (3200,) and pcm[0] == -32767 and pcm[-1] == 32767


def test_jpeg_keeps_a_flat_colour():
    im = Image.open(io.BytesIO(jpeg(torch.full((16, 16, 3), 0.5))))
    assert np.abs(np.asarray(im, dtype=np.int16) - 128).max() <= 1


def test_pcm16_clips_out_of_range_samples():
    assert np.frombuffer(pcm16(torch.tensor([2.0, -2.0, 0.0])), dtype="<i2").tolist() == [32767, -32767, 0]


def test_the_player_sends_the_audio_under_each_chunk_silence_padded_past_the_end_and_drops_what_it_sent(comfy):
    audio = SampleBuffer()
    audio.append(torch.arange(1000, dtype=torch.float32) / 2000)
    player = LivePlayer("7", "s", audio, fps=25, total_frames=3, last_chunk=1)
    player.send(VideoChunk(0, torch.rand(1, 8, 8, 3), torch.zeros(1), first_frame=0))  # samples 0..640
    player.send(VideoChunk(1, torch.rand(2, 8, 8, 3), torch.zeros(1), first_frame=1))  # samples 640..1920
    first, second = [data for name, data, sid in comfy.events if name == "rest.chunk"]
    pcm = np.frombuffer(base64.b64decode(second["audio"]), dtype="<i2")
    expected = np.round(np.arange(640, 1000) / 2000 * 32767)
    assert pcm.shape == (1280,) and pcm[:360].tolist() == expected.tolist() and not pcm[360:].any()
    assert (first["final"], second["final"], second["total_frames"], second["node"]) == (False, True, 3, "7")
    assert audio.start == 1000  # nothing already sent is kept


def test_the_preview_is_the_middle_frame():
    frames = torch.zeros(4, 8, 8, 3)
    frames[2] = 1
    assert np.asarray(preview_image(frames)).min() == 255
