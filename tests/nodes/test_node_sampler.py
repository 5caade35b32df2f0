import base64
import io

import pytest
import torch
from PIL import Image

import comfy_stubs
from conftest import SAMPLING, audio_dict
from nodes.decode import RESTDecode
from nodes.encode import RESTSpeechEncoder
from nodes.player import jpeg
from nodes.sampler import RESTStreamingSampler, stream_options


@pytest.fixture(scope="module")
def speech(rest_model):
    torch.manual_seed(3)
    return RESTSpeechEncoder().encode(rest_model, audio_dict(torch.randn(1, 40_000) * 0.1, 16_000))[0]


def sample(model, reference, speech, live_player=True, **options):
    return RESTStreamingSampler().sample(model, reference, speech, **(SAMPLING | options), live_player=live_player,
                                         unique_id="7")[0]


def test_the_sampler_streams_the_pipelines_video(comfy, rest_model, rest_reference, speech, portrait_image):
    latent = sample(rest_model, rest_reference, speech)
    frames, fps = RESTDecode().decode(rest_model, latent)
    options = rest_model.pipe.options(steps=2, cfg=2.0, seed=0)
    expected = rest_model.pipe.generate(portrait_image, speech.speech.audio_16k, 16_000, options=options)
    assert fps == 25.0 and torch.equal(frames, expected)
    assert frames.shape[0] == speech.speech.video_frames == 63  # 2.5 s: 62.5 frames, rounded half up
    assert latent["samples"].shape == (1, 8, 9, 2, 2)  # 3 chunks of 3 latent frames


def test_the_options_a_model_decides_are_no_widgets_and_come_from_its_checkpoint(rest_model):
    widgets = RESTStreamingSampler.INPUT_TYPES()["required"]
    assert "shift" not in widgets and "context_noise" not in widgets
    own = rest_model.pipe.config.sampler
    options = stream_options(rest_model, SAMPLING)
    assert (options.shift, options.context_noise) == (own.shift, own.context_noise)


def test_progress_runs_over_chunks_times_steps_with_a_preview_per_chunk(comfy, rest_model, rest_reference, speech):
    sample(rest_model, rest_reference, speech)
    assert {total for _, _, total, _ in comfy.progress} == {3 * 2}
    assert [value for _, value, _, preview in comfy.progress if preview is None] == [1, 2, 3, 4, 5, 6]
    previews = [(value, preview) for _, value, _, preview in comfy.progress if preview is not None]
    assert [v for v, _ in previews] == [2, 4, 6]
    assert all(p[0] == "JPEG" and p[1].size == (64, 64) for _, p in previews)
    assert {node for node, *_ in comfy.progress} == {"7"}


def test_each_chunk_reaches_the_player_with_its_frames_and_audio(comfy, rest_model, rest_reference, speech):
    latent = sample(rest_model, rest_reference, speech)
    events = [data for name, data, sid in comfy.events if name == "rest.chunk"]
    assert [e["index"] for e in events] == [0, 1, 2] and [e["first_frame"] for e in events] == [0, 24, 48]
    assert [len(e["frames"]) for e in events] == [24, 24, 15]
    assert [e["final"] for e in events] == [False, False, True]
    assert {e["node"] for e in events} == {"7"} and len({e["stream"] for e in events}) == 1
    assert all(sid == "client-1" for _, _, sid in comfy.events)
    last = base64.b64decode(events[2]["frames"][14])
    assert Image.open(io.BytesIO(last)).size == (64, 64)
    assert last == jpeg(latent["rest_frames"][62])
    pcm = base64.b64decode(events[1]["audio"])
    assert len(pcm) == 24 * 640 * 2 and events[1]["audio_rate"] == 16_000


def test_without_the_player_no_chunk_is_sent(comfy, rest_model, rest_reference, speech):
    sample(rest_model, rest_reference, speech, live_player=False)
    assert comfy.events == []


def test_cancel_stops_within_a_chunk_and_leaves_nothing_behind(comfy, rest_model, rest_reference, speech):
    comfy.interrupt_after = 3  # during the second chunk
    with pytest.raises(comfy_stubs.InterruptProcessingException):
        sample(rest_model, rest_reference, speech)
    assert len([e for e in comfy.events if e[0] == "rest.chunk"]) == 1
    assert comfy.empty_cache_calls == 1
    again = sample(rest_model, rest_reference, speech)
    assert torch.equal(again["rest_frames"], sample(rest_model, rest_reference, speech)["rest_frames"])


def test_the_ablation_switches_change_the_video(comfy, rest_model, rest_reference, speech):
    full = sample(rest_model, rest_reference, speech, live_player=False)["rest_frames"]
    for switch in ("id_sink", "context_cache"):
        ablated = sample(rest_model, rest_reference, speech, live_player=False, **{switch: False})["rest_frames"]
        assert torch.equal(ablated[:24], full[:24])  # the first chunk sees the reference and no context either way
        assert not torch.equal(ablated[24:], full[24:])


def test_conditioning_on_a_model_without_text_is_refused(comfy, rest_model, rest_reference, speech):
    conditioning = [[torch.zeros(1, 4, 32), {}]]
    with pytest.raises(ValueError, match="no text cross-attention"):
        RESTStreamingSampler().sample(rest_model, rest_reference, speech, **SAMPLING, live_player=False,
                                      conditioning=conditioning)
