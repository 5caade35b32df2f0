import json

import numpy as np
import pytest
import torch

from rest_core import CropBox, prepare_reference
from rest_core.config import MOUTH_CODE_CHANNELS, POSE_CODE_CHANNELS
from rest_core.data.face_code import encode_stream, without_mouth
from rest_core.data.prepare import (ClipSet, SegmentSet, crop_resize, crop_square, find_videos, prepare_clips,
                                    prepare_segments, read_frames_25fps, segment_starts, sidecar_head,
                                    sidecar_mouth_state, stream_runs, to_video)
from rest_core.data.synth import render_clip, write_clip
from rest_core.speech import speech_features
from rest_core.speech_ae import SpeechAE
from rest_core.vae import CausalVAE
from rest_core.vae_mouth import frame_codes
from rest_core.vae_pose import frame_poses
from rest_core.whisper import WhisperEncoder

from conftest import TINY_POSE, TINY_REST

pytestmark = pytest.mark.tools("espeak-ng")  # the synthetic clips speak with it


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    clips = {}
    for seed in (3, 4):
        clip = render_clip(seed, seconds=4.0, size=96)
        write_clip(clip, folder / f"clip_{seed}")
        clips[f"clip_{seed}"] = clip
    return folder, clips


@pytest.fixture(scope="module")
def whisper():
    torch.manual_seed(0)
    return WhisperEncoder(layers=1).eval()


@pytest.fixture(scope="module")
def data(corpus, whisper, tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    prepare_clips(corpus[0], out, TINY_REST, whisper)
    return out


def test_videos_are_found_recursively_and_an_empty_folder_is_explained(tmp_path, corpus):
    assert [p.name for p in find_videos(corpus[0])] == ["clip_3.mp4", "clip_4.mp4"]
    with pytest.raises(ValueError, match="holds no videos"):
        find_videos(tmp_path)


def test_frames_are_read_at_25_fps_and_match_the_rendered_ones(corpus):
    folder, clips = corpus
    frames = read_frames_25fps(folder / "clip_3.mp4")
    assert frames.shape == clips["clip_3"].frames.shape
    rendered = clips["clip_3"].frames.astype(float)
    # H.264 at crf 18 (fine coloured patterns lose some colour to 4:2:0 chroma) ...
    assert np.abs(frames - rendered).mean() < 8
    # ... and every decoded frame is its own rendered frame, not a neighbour
    error = np.abs(frames[1:-1, None] - np.stack([rendered[:-2], rendered[1:-1], rendered[2:]], 1)).mean((2, 3, 4))
    assert (error.argmin(1) == 1).mean() > 0.9


def test_a_50_fps_video_is_resampled_to_25_by_timestamp(tmp_path):
    from rest_core.media import VideoWriter

    writer = VideoWriter(tmp_path / "fast.mp4", 50)
    ramp = torch.arange(100, dtype=torch.float32)[:, None, None, None].expand(-1, 32, 32, 3) / 100
    writer.write(ramp)
    writer.close()
    frames = read_frames_25fps(tmp_path / "fast.mp4")
    assert len(frames) == 50
    assert np.allclose(frames[:, 16, 16, 0], np.arange(0, 100, 2) * 255 / 100, atol=4)  # every other frame


def test_the_crop_is_the_centred_square_or_the_sidecars_face_box(tmp_path, corpus):
    folder, clips = corpus
    x0, y0, x1, _ = clips["clip_3"].truth["face_box"]
    face = CropBox(round(y0), round(x0), min(round(x1) - round(x0), 96))
    assert crop_square(folder / "clip_3.mp4", 96, 96, "face") == face
    assert crop_square(folder / "clip_3.mp4", 96, 96) == CropBox(0, 0, 96)  # "full", the default
    assert crop_square(tmp_path / "plain.mp4", 90, 160, "face") == CropBox(0, 35, 90)  # no sidecar
    (tmp_path / "bad.json").write_text(json.dumps({"face_box": [80, 0, 200, 120]}))
    with pytest.raises(ValueError, match="inside the"):
        crop_square(tmp_path / "bad.mp4", 96, 96, "face")
    with pytest.raises(ValueError, match="choose one of full, face"):
        crop_square(tmp_path / "bad.mp4", 96, 96, "head")


def test_training_frames_are_cut_exactly_as_a_portrait_is():
    frames = np.random.default_rng(0).integers(0, 255, (3, 90, 120, 3), dtype=np.uint8)
    box = CropBox(top=10, left=20, size=64)
    out = crop_resize(frames, box, 32)
    assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8
    reference, _ = prepare_reference(torch.from_numpy(frames[1]), 32, box)  # [1, 3, 32, 32] in [-1, 1]
    as_bytes = ((reference[0].permute(1, 2, 0) + 1) / 2 * 255).round().to(torch.uint8).numpy()
    assert np.abs(as_bytes.astype(int) - out[1]).max() <= 1  # the same pixels, up to the [-1, 1] round trip


def test_clips_hold_cropped_frames_and_the_streaming_speech_windows(data, corpus, whisper):
    clips = ClipSet(data)
    assert len(clips) == 2 and clips.index["resolution"] == 64
    entry = clips.clips[0]
    assert entry["frames"] == 100
    assert clips.frames(0).shape == (100, 64, 64, 3)
    assert torch.equal(clips.frames(0, 10, 5), clips.frames(0)[10:15])
    from rest_core.media import read_audio
    audio, rate = read_audio(corpus[0] / "clip_3.mp4")
    expected = speech_features(whisper, audio, rate, 8, 8)
    assert clips.windows(0).shape == expected.shape == (13, 32, 384)
    torch.testing.assert_close(clips.windows(0), expected, rtol=1e-3, atol=1e-3)  # batched, stored as float16


def test_clips_keep_the_sidecars_mouth_opening_and_width_per_frame(data, corpus, tmp_path):
    clips = ClipSet(data)
    truth = corpus[1]["clip_3"].truth
    state = clips.mouth_state(0, 10, 5)
    assert state.shape == (5, 2)
    torch.testing.assert_close(state[:, 0], torch.tensor(truth["mouth_open"][10:15]), atol=1e-3, rtol=0)
    torch.testing.assert_close(state[:, 1], torch.tensor(truth["mouth_width"][10:15]), atol=1e-3, rtol=0)
    assert sidecar_mouth_state(tmp_path / "plain.mp4", 10) is None  # no sidecar: no state
    (tmp_path / "slow.json").write_text(json.dumps({"fps": 30, "mouth_open": [0] * 10, "mouth_width": [0] * 10}))
    with pytest.raises(ValueError, match="fps 25"):
        sidecar_mouth_state(tmp_path / "slow.mp4", 10)


def test_the_sidecars_head_pose_and_blink_are_read_and_kept_in_the_prepared_frames_pixels(corpus, data, tmp_path):
    folder, _ = corpus
    truth = json.loads((folder / "clip_3.json").read_text())
    maps, closure, outline = sidecar_head(folder / "clip_3.mp4", 20)
    assert maps.shape == (20, 2, 3) and closure.shape == (20,) and outline.shape[1] == 2
    np.testing.assert_allclose(closure, truth["blink"][:20], atol=1e-4)
    mouth = np.array([0.0, truth["identity"]["mouth"]["height"], 1.0])  # the mouth's centre, in head units
    np.testing.assert_allclose(maps @ mouth, truth["mouth_centre"][:20], atol=0.02)
    clips = ClipSet(data)
    i = [c["name"] for c in clips.clips].index("clip_3")
    head = clips.face_truth(i).head  # [T, 2, 3] into the prepared 64 px frames (96 px cut and resized)
    torch.testing.assert_close(clips.face_truth(i).outline, torch.from_numpy(outline), atol=1e-4, rtol=0)
    expected = np.array(truth["mouth_centre"][:20]) * 64 / 96
    np.testing.assert_allclose((head @ torch.tensor(mouth)).numpy()[:20], expected, atol=0.02)
    assert sidecar_head(tmp_path / "plain.mp4", 10) is None  # no sidecar: no head
    (tmp_path / "short.json").write_text(json.dumps({**truth, "blink": truth["blink"][:5]}))
    with pytest.raises(ValueError, match="blink must give every one"):
        sidecar_head(tmp_path / "short.mp4", 10)


def test_segment_starts_fit_k_chunks_after_the_reference():
    assert segment_starts(100, chunks=3, chunk_latents=3, stride=1) == [1, 2, 3]  # 8m + 72 <= 100
    assert segment_starts(80, chunks=3, chunk_latents=3, stride=1) == [1]
    assert segment_starts(79, chunks=3, chunk_latents=3, stride=1) == []


def test_stream_runs_group_overlapping_segments_up_to_the_most_latents_at_once():
    assert stream_runs([1, 2, 3, 4, 5, 6], span=9, most=16) == [[1, 2, 3, 4, 5, 6]]  # latents 1 .. 14
    assert stream_runs([1, 3, 5, 7, 9], span=9, most=12) == [[1, 3], [5, 7], [9]]
    assert stream_runs([1, 2], span=9, most=4) == [[1], [2]]  # a segment longer than `most` still gets encoded


@pytest.mark.parametrize("stream_latents", [16, 7])
def test_segments_are_the_clips_first_frame_and_windows_of_its_latent_stream(data, stream_latents):
    """The reference of every segment is the clip's first frame, as the portrait is at inference; the chunks'
    latents are the clip's stream from frame 8 encoded against it ([frame 0] + frames 8, 9, ...), sliced at the
    segment, or (where a long clip is encoded in pieces) the piece's stream from the piece's first segment."""
    torch.manual_seed(0)
    vae, speech_ae = CausalVAE(TINY_REST.vae).eval(), SpeechAE.from_config(TINY_REST).eval()
    index = prepare_segments(data, vae, speech_ae, TINY_REST, chunks=2, stride=2, stream_latents=stream_latents)
    segments, clips = SegmentSet(data), ClipSet(data)
    starts = segment_starts(100, 2, 3, 2)
    assert starts == [1, 3, 5]
    assert index["segments"] == len(segments) == 2 * len(starts)
    assert segments.latents.shape[1:] == (8, 7, 2, 2)
    assert segments.speech.shape[1:] == (6, 2, 16)
    i = int(segments.clip[1])
    assert [int(s) for s in segments.start[:3]] == [8, 24, 40]  # the chunks' first frame, 8m
    first = 1 if stream_latents == 16 else 3  # stream_latents 7: each segment (6 latents) is its own piece
    with torch.no_grad():
        portrait = to_video(clips.frames(i, 0, 1))[:, :, 0]
        ref = vae.encode_image(portrait)
        video = to_video(torch.cat([clips.frames(i, 0, 1), clips.frames(i, 8 * first, 8 * (3 + 6 - first))]))
        stream = vae.encode_video(video, portrait)[:, :, 1:]
        speech = speech_ae.encode(clips.windows(i)[3:3 + 6])
    torch.testing.assert_close(segments.latents[1, :, :1], ref[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(segments.latents[1, :, 1:], stream[0, :, 3 - first:], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(segments.speech[1], speech, rtol=1e-4, atol=1e-5)


def test_segments_of_a_coded_vae_carry_the_clips_mouth_and_pose_code(data):
    torch.manual_seed(0)
    vae, speech_ae = CausalVAE(TINY_POSE.vae).eval(), SpeechAE.from_config(TINY_POSE).eval()
    prepare_segments(data, vae, speech_ae, TINY_POSE, chunks=2, stride=2)
    segments, clips = SegmentSet(data), ClipSet(data)
    i, start = int(segments.clip[1]), int(segments.start[1])
    truth = clips.face_truth(i)
    raw = vae.denormalize(segments.latents[1:2])[0]  # [C, 1 + 6, h, w]
    torch.testing.assert_close(frame_codes(raw[None, :, 1:])[0], clips.mouth_state(i, start, 48).T * 2 - 1,
                               atol=1e-5, rtol=1e-4)
    code = truth.code([0, *range(start, start + 48)], 0, (TINY_POSE.resolution,) * 2, pose=True)
    pose, closure = frame_poses(raw[None, :, 1:])
    torch.testing.assert_close(pose, code.pose[:, 1:], atol=1e-5, rtol=1e-4)  # the move from the clip's first frame
    torch.testing.assert_close(closure, code.closure[:, 1:], atol=1e-5, rtol=1e-4)
    end = MOUTH_CODE_CHANNELS + POSE_CODE_CHANNELS
    with torch.no_grad():  # the encoder saw the chunks without the mouth
        video = to_video(torch.cat([clips.frames(i, 0, 1), clips.frames(i, 8, 8 * 10)]))
        stream = vae.encode_moments(without_mouth(video, code.in_mouth), video[:, :, 0])[:, :-1]
    torch.testing.assert_close(raw[end:, 1:], stream[0, end:, 3:9], atol=1e-4, rtol=1e-4)
    assert not torch.equal(raw[:2, :1], torch.zeros_like(raw[:2, :1]))  # z_R keeps the encoder's own channels


@pytest.fixture
def own_data(data, tmp_path):
    """A copy of the prepared clips whose segments folder a test may stop, spoil and resume."""
    import shutil

    shutil.copytree(data / "clips", tmp_path / "clips")
    return tmp_path


class Stopped(Exception):
    """The machine going away in the middle of a pass."""


def _counting_encodes(monkeypatch, stop_after: int | None = None) -> list:
    """Counts the clip streams prepare_segments encodes; with stop_after, the pass is stopped at the next one."""
    from rest_core.data import prepare

    calls = []

    def counted(*args, **kwargs):
        if stop_after is not None and len(calls) == stop_after:
            raise Stopped
        calls.append(1)
        return encode_stream(*args, **kwargs)

    monkeypatch.setattr(prepare, "encode_stream", counted)
    return calls


def test_a_stopped_latents_pass_resumes_after_its_last_clip_and_matches_an_unstopped_one(data, own_data,
                                                                                       monkeypatch):
    torch.manual_seed(0)
    vae, speech_ae = CausalVAE(TINY_REST.vae).eval(), SpeechAE.from_config(TINY_REST).eval()
    options = dict(chunks=2, stride=2, shard_segments=1)  # a shard at every clip's end
    _counting_encodes(monkeypatch, stop_after=1)  # each clip is one stream: stopped in the second clip
    with pytest.raises(Stopped):
        prepare_segments(own_data, vae, speech_ae, TINY_REST, **options)
    assert not (own_data / "segments" / "index.json").exists()  # unfinished, so not readable as finished
    with pytest.raises(ValueError, match="prepare latents"):
        SegmentSet(own_data)
    assert json.loads((own_data / "segments" / "progress.json").read_text())["clips_done"] == 1

    calls = _counting_encodes(monkeypatch)
    prepare_segments(own_data, vae, speech_ae, TINY_REST, **options)
    assert len(calls) == 1  # only the second clip
    assert not (own_data / "segments" / "progress.json").exists()
    monkeypatch.undo()
    prepare_segments(data, vae, speech_ae, TINY_REST, **options)
    resumed, whole = SegmentSet(own_data), SegmentSet(data)
    for key in ("latents", "speech", "clip", "start"):
        assert torch.equal(getattr(resumed, key), getattr(whole, key)), key


def test_a_latents_pass_from_other_weights_starts_again_and_a_finished_one_from_the_same_is_kept(own_data,
                                                                                               monkeypatch):
    torch.manual_seed(0)
    first, speech_ae = CausalVAE(TINY_REST.vae).eval(), SpeechAE.from_config(TINY_REST).eval()
    second = CausalVAE(TINY_REST.vae).eval()
    _counting_encodes(monkeypatch, stop_after=1)
    with pytest.raises(Stopped):
        prepare_segments(own_data, first, speech_ae, TINY_REST, chunks=2, stride=2, shard_segments=1)
    calls = _counting_encodes(monkeypatch)
    prepare_segments(own_data, second, speech_ae, TINY_REST, chunks=2, stride=2, shard_segments=1)
    assert len(calls) == 2  # both clips again: the stopped pass's shard was made by other weights
    made = SegmentSet(own_data)
    assert made.latents.shape[0] == 6 and sorted(set(made.clip.tolist())) == [0, 1]
    assert len(list((own_data / "segments").glob("shard-*.safetensors"))) == 2

    prepare_segments(own_data, second, speech_ae, TINY_REST, chunks=2, stride=2, shard_segments=1)
    assert len(calls) == 2  # finished from the same sources: nothing encoded again
    tuned = CausalVAE(TINY_REST.vae).eval()
    tuned.load_state_dict(second.state_dict())
    with torch.no_grad():
        tuned.decoder.conv_out.conv.weight.add_(1.0)  # its decoder tuned: the same latents
    prepare_segments(own_data, tuned, speech_ae, TINY_REST, chunks=2, stride=2, shard_segments=1)
    assert len(calls) == 2
    prepare_segments(own_data, second, speech_ae, TINY_REST, chunks=2, stride=1, shard_segments=1)
    assert len(calls) == 4  # other options: made again
    assert SegmentSet(own_data).latents.shape[0] == 2 * len(segment_starts(100, 2, 3, 1))


def test_latents_for_another_resolution_are_refused(data):
    from dataclasses import replace

    other = replace(TINY_REST, resolution=128)
    with pytest.raises(ValueError, match="same preset"):
        prepare_segments(data, CausalVAE(other.vae), SpeechAE.from_config(other), other)


def test_missing_prepared_data_says_which_pass_to_run(tmp_path):
    with pytest.raises(ValueError, match="prepare clips"):
        ClipSet(tmp_path)
    with pytest.raises(ValueError, match="prepare latents"):
        SegmentSet(tmp_path)


def test_clips_prepared_by_two_worker_processes_equal_those_of_one(corpus, whisper, data, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "whisper.safetensors"
    save_file({k: v.contiguous() for k, v in whisper.state_dict().items()}, str(path))
    index = prepare_clips(corpus[0], tmp_path / "two", TINY_REST, path, shard_clips=1, workers=2)
    one, two = ClipSet(data), ClipSet(tmp_path / "two")
    assert [c["name"] for c in index["clips"]] == [c["name"] for c in one.clips]
    assert [c["shard"] for c in index["clips"]] == [0, 1] and len(index["shards"]) == 2  # one clip per shard
    for i in range(len(one)):
        assert torch.equal(two.frames(i), one.frames(i))
        torch.testing.assert_close(two.windows(i), one.windows(i), atol=2e-3, rtol=1e-2)  # float16, 1 thread vs 2
    with pytest.raises(ValueError, match="give its file"):
        prepare_clips(corpus[0], tmp_path / "three", TINY_REST, whisper, shard_clips=1, workers=2)
