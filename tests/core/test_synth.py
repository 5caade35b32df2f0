"""The procedural corpus: determinism, layout, mouth versus speech, the style split, and the command."""

import colorsys
import json
import subprocess
import sys

import numpy as np
import pytest
from rest_core.__main__ import main
from rest_core.data import drawing, faces, synth

from conftest import ROOT

pytestmark = pytest.mark.tools("espeak-ng")  # the synthetic clips speak with it

SIZE = 192  # not the default, so that size is really honoured


@pytest.fixture(scope="module")
def clip():
    return synth.render_clip(7, 3.0, size=SIZE)


@pytest.fixture(scope="module")
def decoded(clip, tmp_path_factory):
    """The clip through write_clip and back: (frames decoded from the mp4, its audio stream, the sidecar)."""
    import av

    base = tmp_path_factory.mktemp("roundtrip") / "clip"
    video, sidecar = synth.write_clip(clip, base)
    with av.open(str(video)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        audio = container.streams.audio[0]
        rate, channels = audio.codec_context.sample_rate, audio.codec_context.channels
    return frames, (rate, channels), json.loads(sidecar.read_text())


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])


def frame_rms(clip) -> np.ndarray:
    pieces = synth.frame_slices(clip.audio, clip.sample_rate, len(clip.frames))
    return np.array([np.sqrt(np.mean(p.astype(np.float64) ** 2)) for p in pieces])


def test_same_seed_gives_identical_frames_audio_and_sidecar():
    a, b = synth.render_clip(3, 2.0), synth.render_clip(3, 2.0)
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.audio, b.audio)
    assert json.dumps(a.truth, sort_keys=True) == json.dumps(b.truth, sort_keys=True)


def test_different_seeds_give_different_identities():
    clips = [synth.render_clip(seed, 0.2) for seed in range(5)]
    for i in range(len(clips)):
        for j in range(i + 1, len(clips)):
            a, b = clips[i].truth["identity"], clips[j].truth["identity"]
            assert a["skin"] != b["skin"] or a["hair"]["colour"] != b["hair"]["colour"]
            difference = np.abs(clips[i].frames[0].astype(int) - clips[j].frames[0].astype(int)).mean()
            assert difference > 10, (i, j, difference)


def test_clip_has_the_asked_length_size_and_sidecar_fields(clip):
    t = clip.truth
    frames = round(3.0 * 25)
    assert clip.frames.shape == (frames, SIZE, SIZE, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.dtype == np.float32 and clip.audio.shape == (frames * clip.sample_rate // 25,)
    assert (t["fps"], t["frames"], t["size"], t["sample_rate"], t["seed"]) == (25, frames, SIZE, clip.sample_rate, 7)
    assert t["looks"] == "train" and t["identity"]["style"]["family"] in faces.TRAIN_STYLES
    assert t["text"] and t["voice"].startswith("en")
    for per_frame in (t["mouth_open"], t["mouth_width"], t["blink"], t["mouth_centre"], *t["head"].values()):
        assert len(per_frame) == frames
    for name in ("mouth_open", "mouth_width", "blink"):
        assert 0 <= min(t[name]) and max(t[name]) <= 1, name


def test_face_box_is_square_inside_the_frame_and_holds_the_head(clip):
    x0, y0, x1, y1 = clip.truth["face_box"]
    side = x1 - x0
    assert side == pytest.approx(y1 - y0, abs=0.02)
    assert 0 <= x0 and 0 <= y0 and x1 <= SIZE and y1 <= SIZE
    framing = clip.truth["identity"]["framing"]["face"]
    assert side == pytest.approx(framing * SIZE, abs=0.02)
    for x, y in clip.truth["mouth_centre"]:
        assert x0 < x < x1 and y0 < y < y1
    # the whole head outline (face, ears, hair above the chin), moved as in every frame
    identity = clip.truth["identity"]
    maps = drawing.transforms(clip.truth["head"], np.array(identity["face_centre"]), identity["unit_px"])
    points = np.concatenate([drawing.apply(m, drawing.head_extent(identity)) for m in maps])
    assert points[:, 0].min() >= x0 - 0.1 and points[:, 0].max() <= x1 + 0.1
    assert points[:, 1].min() >= y0 - 0.1 and points[:, 1].max() <= y1 + 0.1


def test_mouth_opens_with_speech_energy_and_closes_in_silence(clip):
    opening, rms = np.array(clip.truth["mouth_open"]), frame_rms(clip)
    assert pearson(opening, rms) > 0.8
    silent = np.convolve(rms, np.ones(3), mode="same") == 0  # the frame and both neighbours are silent
    assert silent.sum() >= 2
    assert np.all(opening[silent] == 0)
    assert (opening > 0.5).mean() > 0.2  # and it does open wide while speaking
    width = np.array(clip.truth["mouth_width"])[opening > 0.3]
    assert width.std() > 0.05  # wide and rounded shapes both occur


def test_the_mp4_round_trip_keeps_frames_audio_and_sidecar(clip, decoded):
    frames, (rate, channels), sidecar = decoded
    assert frames.shape == clip.frames.shape
    assert (rate, channels) == (clip.sample_rate, 1)
    assert sidecar == json.loads(json.dumps(clip.truth))
    assert np.abs(frames.astype(int) - clip.frames.astype(int)).mean() < 4  # crf 18


def test_mouth_box_holds_the_mouth_at_every_frame(clip):
    x0, y0, x1, y1 = clip.truth["mouth_box"]
    unit = clip.truth["identity"]["unit_px"]
    assert x1 - x0 == pytest.approx(synth.MOUTH_BOX * unit, abs=0.02) == pytest.approx(y1 - y0, abs=0.02)
    mouth = clip.truth["identity"]["mouth"]
    half_width = mouth["size"] * 1.18 + mouth["lip"]  # the widest the lips get
    for x, y in clip.truth["mouth_centre"]:
        assert x0 + 0.5 * half_width * unit < x < x1 - 0.5 * half_width * unit and y0 < y < y1


def test_the_mouth_region_is_what_changes_with_the_speech(clip):
    x0, y0, x1, y1 = (int(round(v)) for v in clip.truth["mouth_box"])
    opening = np.array(clip.truth["mouth_open"])
    shut, wide = int(np.argmin(opening)), int(np.argmax(opening))
    change = np.abs(clip.frames[wide].astype(int) - clip.frames[shut].astype(int)).sum(-1)
    inside = change[y0:y1, x0:x1].mean()
    assert inside > 3 * change.mean()


def test_training_looks_never_draw_a_held_out_style_family():
    seen = {looks: set() for looks in ("train", "heldout")}
    for seed in range(400):
        for looks in seen:
            identity = faces.sample_identity(np.random.default_rng(seed), looks)
            seen[looks].add(identity["style"]["family"])
            assert identity["looks"] == looks
    assert seen["train"] == set(faces.TRAIN_STYLES)
    assert seen["heldout"] == set(faces.HELDOUT_STYLES)
    assert not set(faces.TRAIN_STYLES) & set(faces.HELDOUT_STYLES)


def test_identities_vary_along_every_axis():
    identities = [faces.sample_identity(np.random.default_rng(seed)) for seed in range(300)]
    for key, options in (("hair", faces.HAIR_STYLES), ("eyes", faces.EYE_STYLES), ("mouth", faces.MOUTH_SHAPES)):
        field = "shape" if key == "mouth" else "style"
        assert {i[key][field] for i in identities} == set(options), key
    assert {i["background"]["kind"] for i in identities} == set(faces.BACKGROUNDS)
    for accessory, kinds in (("glasses", faces.GLASSES), ("hat", faces.HATS), ("beard", faces.BEARDS)):
        worn = [i[accessory] for i in identities if i[accessory] is not None]
        assert 0.1 < len(worn) / len(identities) < 0.5
        assert {w["shape" if accessory == "glasses" else "style"] for w in worn} == set(kinds)
    assert any(i["chibi"] for i in identities) and not all(i["chibi"] for i in identities)
    framing = [i["framing"]["face"] for i in identities]
    assert min(framing) < 0.5 and max(framing) > 0.8


def test_no_colour_is_reserved_for_the_mouth():
    interiors, skins = [], []
    for seed in range(300):
        identity = faces.sample_identity(np.random.default_rng(seed))
        interiors.append(identity["mouth"]["interior"])
        skins.append(identity["skin"])
    hues = {int(colorsys.rgb_to_hsv(*(np.array(c) / 255))[0] * 6) for c in interiors}
    assert len(hues) == 6  # every sixth of the hue circle is some mouth's interior
    assert len({tuple(c) for c in interiors}) > 290
    # yet each mouth stands out from its own face, in colour and in tone
    apart = [faces.distance(m, s) >= 90 and abs(faces.luminance(m) - faces.luminance(s)) >= 45
             for m, s in zip(interiors, skins)]
    assert np.mean(apart) > 0.97
    assert min(faces.luminance(s) for s in skins) < 60 and any(abs(s[1] - s[0]) > 60 for s in skins)  # non-human


@pytest.mark.parametrize("family", faces.TRAIN_STYLES + faces.HELDOUT_STYLES)
def test_every_style_family_draws_a_moving_face(family):
    c = synth.render_clip(11, 0.6, size=96, looks=family)
    assert c.frames.shape == (15, 96, 96, 3)
    assert c.truth["identity"]["style"]["family"] == family
    assert c.truth["looks"] == family
    assert np.abs(np.diff(c.frames.astype(int), axis=0)).sum() > 0  # the head moves
    assert c.frames.std() > 10  # not a blank


def test_held_out_looks_give_another_person_for_the_same_seed():
    a, b = synth.render_clip(5, 0.08, 96), synth.render_clip(5, 0.08, 96, looks="heldout")
    assert a.truth["identity"]["skin"] != b.truth["identity"]["skin"]
    assert b.truth["identity"]["style"]["family"] in faces.HELDOUT_STYLES


def test_blinks_happen_and_the_head_moves_smoothly(clip):
    blink = np.array(clip.truth["blink"])
    runs, length = [], 0
    for value in list(blink) + [0]:
        if value > 0:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    assert runs, "no blink in 3 s"
    assert all(4 <= n <= 6 for n in runs[:-1]) and 1 <= runs[-1] <= 6
    assert blink.max() == 1
    head = {k: np.array(v) for k, v in clip.truth["head"].items()}
    assert np.ptp(head["dx"]) > 0.3 or np.ptp(head["dy"]) > 0.3
    assert np.abs(np.diff(head["dx"])).max() < 0.01 * SIZE
    assert np.abs(np.diff(head["dy"])).max() < 0.01 * SIZE
    assert np.abs(head["angle"]).max() <= 5 and np.abs(np.diff(head["angle"])).max() < 0.5
    assert np.abs(head["scale"] - 1).max() <= 0.03 and np.abs(np.diff(head["scale"])).max() < 0.005
    # second differences far below first ones: curves, not jitter
    for name in ("dx", "angle"):
        assert np.abs(np.diff(head[name], 2)).max() < 0.25 * np.abs(np.diff(head[name])).max()


@pytest.mark.slow
def test_command_writes_clips_and_a_rerun_skips_them(tmp_path, capsys):
    out = tmp_path / "corpus"
    root = ROOT
    done = subprocess.run([sys.executable, "-m", "rest_core", "synth", "--out", str(out), "--count", "2",
                           "--first-seed", "40", "--seconds", "2", "--size", "128", "--workers", "2"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["clip_0000040.json", "clip_0000040.mp4", "clip_0000041.json", "clip_0000041.mp4"]
    assert "2/2 clips" in done.stderr
    sidecar = json.loads((out / "clip_0000041.json").read_text())
    assert (sidecar["seed"], sidecar["frames"], sidecar["size"]) == (41, 50, 128)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    assert main(["synth", "--out", str(out), "--count", "2", "--first-seed", "40", "--seconds", "2"]) == 0
    assert "2 of 2 clips already" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


@pytest.mark.parametrize("args, message", [(["--count", "0"], "--count"), (["--size", "101"], "--size"),
                                           (["--seconds", "0"], "--seconds"), (["--workers", "0"], "--workers"),
                                           (["--looks", "cubist"], "--looks")])
def test_command_rejects_bad_arguments(tmp_path, capsys, args, message):
    assert main(["synth", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_command_says_how_to_get_espeak_when_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    assert main(["synth", "--out", str(tmp_path / "corpus"), "--count", "1"]) == 2
    assert "apt-get install espeak-ng" in capsys.readouterr().err


def test_a_portrait_still_is_the_clips_speaker_at_rest_and_needs_no_speech(clip):
    picture, box = synth.render_portrait(7, size=SIZE)
    again, _ = synth.render_portrait(7, size=SIZE)
    other, _ = synth.render_portrait(8, size=SIZE)
    assert picture.shape == (SIZE, SIZE, 3) and picture.dtype == np.uint8
    assert np.array_equal(picture, again) and not np.array_equal(picture, other)
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
    # the same identity as the clip's: the backdrop, drawn from it, is the clip's where the head is not
    assert np.abs(picture[:4, :4].astype(int) - clip.frames[0][:4, :4].astype(int)).mean() < 8
