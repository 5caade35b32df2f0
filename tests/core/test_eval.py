"""`python -m rest_core eval` on a tiny case: a random tiny model, one held-out clip, one short "long stream", two
held-out style families and the photographs."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from rest_core.__main__ import main
from rest_core.data.faces import FRAMING
from rest_core.data.images import PORTRAITS, photo
from rest_core.data.synth import render_clip, write_clip
from rest_core.data.heldout import HeldOutClip
from rest_core.data.face_code import FaceTruth, encode_stream
from rest_core.eval.evaluate import SHEET_SUFFIX, photo_square, reconstructed
from rest_core.reference import CropBox
from rest_core.pipeline import RESTPipeline
from rest_core.checkpoint import save_part
from rest_core.vae import CausalVAE
from rest_core.whisper import WhisperEncoder

from conftest import TINY_MOUTH, TINY_POSE, TINY_REST

# The random model evaluated below has a plain VAE: a reference-conditioned one shows half the portrait before any
# training (its output merge starts as the identity, half open), so "a random model is far from the truth" is a
# calibration of the measures only without it.
RANDOM_PLAIN = dataclasses.replace(TINY_REST, vae=dataclasses.replace(TINY_REST.vae, reference="none"))

pytestmark = pytest.mark.tools("espeak-ng")  # the synthetic clips speak with it


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    for folder, seed, seconds, looks in (("clips", 1_000_001, 3.2, "train"), ("streams", 2_000_001, 4.0, "train"),
                                         ("families", 4_000_001, 4.0, "halftone"),
                                         ("families", 4_000_002, 4.0, "pixel")):
        (root / folder).mkdir(exist_ok=True)
        write_clip(render_clip(seed, seconds=seconds, size=128, looks=looks), root / folder / f"clip_{seed}")
    torch.manual_seed(0)
    pipe = RESTPipeline.from_config(RANDOM_PLAIN, whisper=WhisperEncoder(layers=1))
    pipe.save_pretrained(root / "model.safetensors", include_whisper=True)
    save_part(root / "teacher.safetensors", "dit", pipe.dit, RANDOM_PLAIN)
    save_part(root / "noasd.safetensors", "dit", pipe.dit, RANDOM_PLAIN)
    args = ["eval", "--checkpoint", root / "model.safetensors", "--clips", root / "clips", "--streams",
            root / "streams", "--families", root / "families", "--photos", "--teacher", root / "teacher.safetensors",
            "--no-asd", root / "noasd.safetensors", "--drift-seconds", "1", "--out", root / "docs"]
    assert main([str(a) for a in args]) == 0
    return root / "docs"


def test_a_conditioned_vaes_reconstruction_is_the_clip_decoded_with_its_first_frame_as_the_portrait():
    torch.manual_seed(0)
    vae = CausalVAE(TINY_REST.vae).eval()
    frames = torch.rand(17, 64, 64, 3)
    clip = HeldOutClip("c", frames, torch.zeros(1, 16_000), 16_000, np.zeros(17), [20, 40, 44, 56])
    made = reconstructed(vae, clip, 16, chunk_latents=1)  # streamed chunk by chunk
    video = frames.permute(3, 0, 1, 2)[None] * 2 - 1
    with torch.no_grad():
        whole = vae.decode(vae.encode_video(video, video[:, :, 0]), video[:, :, 0])
    expected = ((whole[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0)[1:]
    assert made.shape == (16, 64, 64, 3)
    torch.testing.assert_close(made, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model", [TINY_MOUTH, TINY_POSE], ids=["mouth", "pose"])
def test_a_coded_vaes_reconstruction_is_given_the_clips_true_code_and_a_still_portraits_at_rest(model):
    torch.manual_seed(0)
    vae = CausalVAE(model.vae).eval()
    with torch.no_grad():
        vae.decoder.mouth_head.conv_out.weight.normal_(0, 0.1)  # a head that paints
    frames, box = torch.rand(17, 64, 64, 3), [20, 40, 44, 56]
    state = np.stack([np.linspace(0, 1, 17), np.full(17, 0.5)], axis=1).astype(np.float32)
    shift = np.linspace(0, 3, 17)  # the head drifts 3 px right and blinks once
    head = np.stack([np.array([[10.0, 0, 30 + d], [0, 10.0, 30]]) for d in shift])
    closure = np.abs(np.sin(np.arange(17) / 5)).astype(np.float32)
    clip = HeldOutClip("c", frames, torch.zeros(1, 16_000), 16_000, state[:, 0], box, mouth_state=state, head=head,
                       closure=closure)
    video = frames.permute(3, 0, 1, 2)[None] * 2 - 1
    pose = model.vae.pose_code
    truth = FaceTruth(box, torch.from_numpy(state), torch.from_numpy(head), torch.from_numpy(closure))
    with torch.no_grad():
        z = encode_stream(vae, video, truth.code(range(17), 0, (64, 64), pose))
        whole = vae.decode(vae.normalize(z), video[:, :, 0])
    torch.testing.assert_close(reconstructed(vae, clip, 16, chunk_latents=1),
                               ((whole[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0)[1:], atol=1e-5, rtol=1e-5)
    still = HeldOutClip("photo", frames[:1], torch.zeros(1, 16_000), 16_000, state[:, 0], box)
    with torch.no_grad():
        z = encode_stream(vae, video[:, :, :1].expand(-1, -1, 17, -1, -1),
                          FaceTruth.still(box, 17).code(range(17), 0, (64, 64), pose))
        whole = vae.decode(vae.normalize(z), video[:, :, 0])
    torch.testing.assert_close(reconstructed(vae, still, 16, chunk_latents=1),
                               ((whole[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0)[1:], atol=1e-5, rtol=1e-5)
    clip.mouth_state = None
    with pytest.raises(ValueError, match="render the clip again"):
        reconstructed(vae, clip, 16, chunk_latents=1)


@pytest.mark.slow
def test_results_name_every_variant_in_both_tables(report):
    results = json.loads((report / "results" / "results.json").read_text())
    short, long = results["training_window"], results["long_streams"]
    variants = {"full", "no ID sink", "no context cache", "student without ASD"}
    assert variants | {"teacher (non-streaming)", "ground truth", "VAE reconstruction"} == set(short)
    assert variants | {"ground truth", "VAE reconstruction"} == set(long)
    assert results["setup"]["short_frames"] == 72 and results["setup"]["stream_frames"] == 96
    text = (report / "RESULTS.md").read_text()
    assert "python -m rest_core eval --checkpoint" in text and "| teacher (non-streaming) |" in text


@pytest.mark.slow
def test_ground_truth_rows_validate_the_measurements(report):
    results = json.loads((report / "results" / "results.json").read_text())
    sections = [results["training_window"], results["long_streams"], *results["families"].values()]
    for rows in sections:
        truth = rows["ground truth"]
        assert truth["lipsync"] > 0.8  # the mouth expert reads the true mouth back, even at 64 px
        assert 0.5 < truth["seam"] < 2.0  # real video has no seams
        assert truth["ssim"] == pytest.approx(1.0) and truth["psnr"] > 90
        assert truth["mouth_motion"] == pytest.approx(1.0)
        assert truth["fidelity"] > 20  # the true video keeps its own look: only blinks and the head's turns differ
    assert results["long_streams"]["ground truth"]["drift"] == pytest.approx(1.0)  # zero error: 1 by convention


@pytest.mark.slow
def test_held_out_families_and_photographs_get_their_own_tables(report):
    results = json.loads((report / "results" / "results.json").read_text())
    assert set(results["families"]) == {"halftone", "pixel"}
    assert set(results["families"]["pixel"]) == {"ground truth", "VAE reconstruction", "full", "no ID sink",
                                                 "no context cache"}
    assert set(results["photographs"]) == {"astronaut", "camera"}
    photo = results["photographs"]["astronaut"]["full"]
    assert {"fidelity", "lipsync", "seam", "drift"} <= set(photo) and "psnr" not in photo  # no true video
    text = (report / "RESULTS.md").read_text()
    assert "## Held-out style family: halftone" in text and "## Photograph: astronaut" in text
    assert "| halftone: appearance fidelity >= 26 dB | full:" in text
    assert "| astronaut: appearance fidelity >= 24 dB | full:" in text
    names = {p.stem for p in (report / "results").glob("*" + SHEET_SUFFIX)}
    assert {"family_halftone_full", "family_pixel_no_id_sink", "photo_astronaut_full"} <= names


def test_a_model_that_draws_the_mouth_is_also_measured_on_the_photographs_with_their_mouths_given(report):
    root = report.parent
    torch.manual_seed(0)
    shape = dataclasses.replace(TINY_POSE, vae=dataclasses.replace(TINY_POSE.vae, mouth_shape=True))
    RESTPipeline.from_config(shape, whisper=WhisperEncoder(layers=1)).save_pretrained(
        root / "shape.safetensors", include_whisper=True)
    args = ["eval", "--checkpoint", root / "shape.safetensors", "--families", root / "families", "--photos",
            "--drift-seconds", "1", "--out", root / "shape"]
    assert main([str(a) for a in args]) == 0
    results = json.loads((root / "shape" / "results" / "results.json").read_text())
    for name, rows in results["photographs"].items():
        assert set(rows) == {"full", "no ID sink", "no context cache", "full, mouth given"}
        assert rows["full, mouth given"] != rows["full"]  # a fresh mouth shape finds no mouth; given, it is drawn
    assert "full, mouth given" not in results["families"]["pixel"]  # the families' rows are the model's alone
    assert (root / "shape" / "results" / f"photo_astronaut_full_mouth_given{SHEET_SUFFIX}").exists()


@pytest.mark.slow
def test_a_random_model_is_far_from_the_truth(report):
    results = json.loads((report / "results" / "results.json").read_text())
    full = results["training_window"]["full"]
    assert full["psnr"] < 20 and abs(full["lipsync"]) < 0.6
    assert results["families"]["halftone"]["full"]["fidelity"] < 15
    assert results["photographs"]["astronaut"]["full"]["fidelity"] < 15


@pytest.mark.slow
def test_a_contact_sheet_per_variant(report):
    names = {p.stem for p in (report / "results").glob("*" + SHEET_SUFFIX)}
    assert {"full", "no_id_sink", "no_context_cache", "student_without_asd", "teacher_non-streaming"} <= names


def test_clips_without_ground_truth_are_refused(tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    clip = render_clip(5, seconds=3.2, size=96)
    write_clip(clip, tmp_path / "clips" / "clip")
    (tmp_path / "clips" / "clip.json").unlink()
    torch.manual_seed(0)
    RESTPipeline.from_config(TINY_REST, whisper=WhisperEncoder(layers=1)).save_pretrained(
        tmp_path / "m.safetensors", include_whisper=True)
    assert main(["eval", "--checkpoint", str(tmp_path / "m.safetensors"), "--clips", str(tmp_path / "clips"),
                 "--out", str(tmp_path / "out")]) == 2
    assert "ground truth" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "m.safetensors"), "--out", str(tmp_path / "out")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_leaves_grad_mode_alone(report):
    assert torch.is_grad_enabled()


def test_targets_hold_each_ablation_to_the_metric_it_hurts():
    from rest_core.eval.evaluate import acceptance

    short = {"full": {"lipsync": 0.7, "seam": 1.1}, "student without ASD": {"lipsync": 0.5, "seam": 1.0}}
    long = {"full": {"lipsync": 0.65, "seam": 1.2, "drift": 1.1},
            "no ID sink": {"lipsync": 0.7, "seam": 1.1, "drift": 1.5},
            "no context cache": {"lipsync": 0.6, "seam": 1.1, "drift": 1.0}}
    met = {target: ok for target, _, ok in acceptance(short, long)}
    assert met == {"lip-sync r >= 0.6": True, "identity drift <= 1.2": True, "seam ratio <= 1.3": True,
                   "no ID sink drifts more": True, "no context cache has worse seams": False,
                   "student without ASD has worse lip-sync": True}
    long["full"]["drift"] = 1.6
    met = {target: ok for target, _, ok in acceptance(short, long)}
    assert not met["identity drift <= 1.2"] and not met["no ID sink drifts more"]
    families = {"pixel": {"full": {"fidelity": 26.5, "lipsync": 0.5, "drift": 1.1, "seam": 1.2},
                          "VAE reconstruction": {"psnr": 27.0}}}
    photographs = {"camera": {"full": {"fidelity": 24.5}}}
    met = {target: ok for target, _, ok in acceptance({}, {}, families, photographs)}
    assert met == {"pixel: appearance fidelity >= 26 dB": True, "pixel: VAE reconstruction PSNR >= 28 dB": False,
                   "pixel: lip-sync r >= 0.55": False, "pixel: identity drift <= 1.2": True,
                   "pixel: seam ratio <= 1.3": True, "camera: appearance fidelity >= 24 dB": True}


@pytest.mark.slow
def test_results_list_the_targets(report):
    text = (report / "RESULTS.md").read_text()
    assert "## Targets" in text and "| lip-sync r >= 0.6 | full:" in text


@pytest.mark.parametrize("name", sorted(PORTRAITS))
def test_a_photographs_full_square_frames_its_face_as_the_corpus_frames_faces(name):
    x0, y0, x1, y1 = PORTRAITS[name].face_box
    assert photo_square(name, "face") == CropBox(y0, x0, x1 - x0)
    square = photo_square(name, "full")
    top, left, size = square.top, square.left, square.size
    height, width = photo(name).shape[:2]
    assert 0 <= top and 0 <= left and top + size <= height and left + size <= width
    assert top <= y0 and left <= x0 and y1 <= top + size and x1 <= left + size
    assert FRAMING[0] < (x1 - x0) / size < FRAMING[1]


@pytest.mark.slow
def test_a_vae_stage_is_measured_alone_as_the_whole_model_eval_measures_its_vae(report, capsys):
    root = report.parent
    pipe = RESTPipeline.from_pretrained(root / "model.safetensors")
    save_part(root / "vae.safetensors", "vae", pipe.vae, RANDOM_PLAIN)
    args = ["eval", "--vae", root / "vae.safetensors", "--families", root / "families", "--photos",
            "--vae-frames", "96", "--out", root / "vae-only"]
    assert main([str(a) for a in args]) == 0
    groups = json.loads((root / "vae-only" / "results" / "vae.json").read_text())["groups"]
    assert set(groups) == {"halftone", "pixel"} | {f"photo {name}" for name in PORTRAITS}
    whole = json.loads((report / "results" / "results.json").read_text())["families"]
    for family in ("halftone", "pixel"):  # 4 s clips: 96 frames after the portrait, as the long-stream table
        for key in ("psnr", "lipsync", "mouth_motion"):
            assert groups[family][key] == pytest.approx(whole[family]["VAE reconstruction"][key], abs=1e-4)
    assert (root / "vae-only" / "results" / "vae_halftone.jpg").is_file()
    assert "vae photo" in capsys.readouterr().out


def test_eval_takes_a_checkpoint_or_a_vae(tmp_path, capsys):
    assert main(["eval", "--out", str(tmp_path)]) == 2
    assert "give --checkpoint (the whole model) or --vae" in capsys.readouterr().err
    for frames in ("97", "0"):  # a VAE is measured over whole latent frames
        assert main(["eval", "--vae", "vae.safetensors", "--vae-frames", frames, "--out", str(tmp_path)]) == 2
        assert f"--vae-frames {frames}: give a multiple of 8" in capsys.readouterr().err


def test_eval_runs_the_model_in_the_dtype_asked_and_says_so(report):
    root = report.parent
    args = ["eval", "--checkpoint", root / "model.safetensors", "--streams", root / "streams", "--dtype", "bfloat16",
            "--drift-seconds", "1", "--out", root / "bf16"]
    assert main([str(a) for a in args]) == 0
    results = json.loads((root / "bf16" / "results" / "results.json").read_text())
    assert results["setup"]["dtype"] == "bfloat16"
    whole = json.loads((report / "results" / "results.json").read_text())["long_streams"]
    for name, row in results["long_streams"].items():  # the same model and seed: close to float32's, not equal
        assert math.isfinite(row["psnr"]) and row["psnr"] == pytest.approx(whole[name]["psnr"], abs=1.5)
    assert results["long_streams"]["full"] != whole["full"]
    # the reconstruction row stays in float32 from the checkpoint's own weights
    assert results["long_streams"]["VAE reconstruction"] == whole["VAE reconstruction"]
