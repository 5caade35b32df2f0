"""REST Render Video: the stream pasted back and encoded chunk by chunk into one mp4, the same video the IMAGE
path makes, with its soundtrack; a cancelled render leaves no file."""

import os

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import comfy_stubs
import folder_paths
import nodes.render
from conftest import SAMPLING, audio_dict
from nodes.decode import RESTDecode, RESTPasteBack
from nodes.encode import RESTReferenceEncoder, RESTSpeechEncoder
from nodes.render import SUBFOLDER, RESTRenderVideo
from nodes.sampler import RESTStreamingSampler
from rest_core import VideoWriter
from rest_core.media import even_size
from rest_core.eval.metrics import psnr


@pytest.fixture(scope="module")
def odd_reference(rest_model):
    coarse = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(5))  # smooth: the encoder loses little
    image = F.interpolate(coarse, size=(91, 75), mode="bilinear").permute(0, 2, 3, 1)
    return RESTReferenceEncoder().encode(rest_model, image, face_x=3, face_y=20, face_size=66)["result"][0]


@pytest.fixture(scope="module")
def speech(rest_model):
    torch.manual_seed(6)
    return RESTSpeechEncoder().encode(rest_model, audio_dict(torch.randn(2, 60_000) * 0.1, 24_000))


def decoded(path) -> tuple[np.ndarray, int, int]:
    """(frames [n, H, W, 3] uint8, audio rate, audio channels)"""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])
        audio = container.streams.audio[0].codec_context
        return frames, audio.sample_rate, audio.channels


def render(model, reference, speech, **kwargs):
    return RESTRenderVideo().render(model, reference, speech, **SAMPLING, feather=8, live_player=False,
                                    unique_id="9", **kwargs)


def test_the_render_is_the_image_paths_video_written_as_it_streams(comfy, odd_reference, speech, monkeypatch):
    from nodes.model import DEFAULT_WHISPER, RESTModelLoader

    # float32 whatever `auto` picks here: the two paths' frames are compared bit for bit
    rest_model = RESTModelLoader().load("tiny.safetensors", DEFAULT_WHISPER, "auto", "float32")[0]
    rest_speech, fitted = speech
    written = []

    class RecordingWriter(VideoWriter):
        def write(self, frames):
            written.append(frames)
            super().write(frames)

    monkeypatch.setattr(nodes.render, "VideoWriter", RecordingWriter)
    out = render(rest_model, odd_reference, rest_speech, audio=fitted)
    video, = out["result"]
    shown, = out["ui"]["images"]
    assert out["ui"]["animated"] == (True,) and shown["type"] == "temp" and shown["subfolder"] == SUBFOLDER
    path = video.get_stream_source()
    assert path == os.path.join(folder_paths.get_temp_directory(), SUBFOLDER, shown["filename"])

    latent, = RESTStreamingSampler().sample(rest_model, odd_reference, rest_speech, **SAMPLING, live_player=False)
    frames, _ = RESTDecode().decode(rest_model, latent)
    pasted, = RESTPasteBack().paste(frames, odd_reference, feather=8)
    assert all(len(f) == 1 for f in written)  # one source-sized frame at a time
    assert torch.equal(even_size(torch.cat(written)), pasted)  # Paste Back's IMAGE is the size the writer encodes

    # The file against the frames, not against a second encode of them, which may differ (VideoWriter says why)
    got, rate, channels = decoded(path)
    assert got.shape == (rest_speech.speech.video_frames, 92, 76, 3)  # 91 x 75 with a row and a column repeated
    assert psnr(torch.from_numpy(got) / 255, pasted) > 22  # 24.2 dB; the same frames one step late: 20.6 dB
    assert (rate, channels) == (24_000, 2)


def test_without_an_audio_input_the_soundtrack_is_the_speech_the_model_heard(comfy, rest_model, odd_reference,
                                                                            speech):
    video, = render(rest_model, odd_reference, speech[0])["result"]
    _, rate, channels = decoded(video.get_stream_source())
    assert (rate, channels) == (16_000, 1)


@pytest.mark.parametrize("updates", [0, 3])  # before the first frame is written, inside the second chunk
def test_a_cancelled_render_raises_and_leaves_no_file(comfy, rest_model, odd_reference, speech, updates):
    folder = os.path.join(folder_paths.get_temp_directory(), SUBFOLDER)
    before = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    comfy.interrupt_after = updates
    with pytest.raises(comfy_stubs.InterruptProcessingException):
        render(rest_model, odd_reference, speech[0])
    assert set(os.listdir(folder)) == before
    assert comfy.empty_cache_calls == 1
