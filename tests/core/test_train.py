"""The training stages on tiny data: each loss goes down, runs resume exactly, parts join into a checkpoint that
generates, and torchrun runs a stage on two processes."""

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rest_core.__main__ import main
from rest_core.data.prepare import SegmentSet, prepare_clips
from rest_core.data.synth import render_clip, write_clip
from rest_core.dit import A2VDiT
from rest_core.pipeline import RESTPipeline
from rest_core.train.dit import (DiTOptions, chunk_noise_times, contrastive_loss, mouth_window, noisy_batch,
                                 second_difference, smoothness_loss)
from rest_core.train.loop import read_settings
from rest_core.checkpoint import load_part, part_info
from rest_core.whisper import WhisperEncoder

from conftest import ROOT, TINY_MOUTH, TINY_POSE, TINY_REST

pytestmark = pytest.mark.tools("espeak-ng")  # the synthetic clips speak with it


def model_table(config=TINY_REST) -> str:
    """A config (TINY_REST) as a TOML [model] table."""
    lines = [f'name = "{config.name}"', f"resolution = {config.resolution}"]
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            for k, v in values.items():
                lines.append(f"{section}.{k} = {json.dumps(v).lower() if isinstance(v, bool) else json.dumps(v)}")
    return "[model]\n" + "\n".join(lines).replace("null", '"none"') + "\n"


def write_config(folder: Path, stage: str, steps: int, batch: int, lr: float, extra: str = "",
                 model=TINY_REST) -> Path:
    path = folder / f"{stage}.toml"
    path.write_text(model_table(model).replace('"none"', "0") +
                    f"\n[train]\nsteps = {steps}\nbatch = {batch}\nlr = {lr}\nwarmup = 0\nema = 0.9\n"
                    f"checkpoint_every = 5\nthreads = 2\n{extra}")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    corpus, out = tmp_path_factory.mktemp("corpus"), tmp_path_factory.mktemp("data")
    for seed in (11, 12):
        write_clip(render_clip(seed, seconds=4.0, size=80), corpus / f"clip_{seed}")
    torch.manual_seed(0)
    prepare_clips(corpus, out, TINY_REST, WhisperEncoder(layers=1).eval())
    return out


def losses(run: Path, column: str = "loss") -> list[float]:
    return [float(r[column]) for r in csv.DictReader((run / "losses.csv").open())]


def falls(values: list[float], k: int = 5) -> bool:
    return sum(values[-k:]) / k < 0.8 * sum(values[:k]) / k


def cli(*args) -> int:
    return main([str(a) for a in args])


def run_stage(folder: Path, stage: str, data: Path, *args, **config) -> Path:
    """Train a stage on the CPU from a tiny config; returns its run folder."""
    path = write_config(folder, stage, **config)
    assert cli("train", stage, "--config", path, "--data", data, "--out", folder / "run", "--device", "cpu",
               *args) == 0
    return folder / "run"


@pytest.fixture(scope="module")
def vae_run(data, tmp_path_factory):
    return run_stage(tmp_path_factory.mktemp("vae"), "vae", data, steps=40, batch=2, lr=2e-3,
                     extra="[vae]\nframes = 9\nstats_clips = 2\nmissed_motion = 0.01\n")


@pytest.fixture(scope="module")
def speechae_run(data, tmp_path_factory):
    return run_stage(tmp_path_factory.mktemp("speechae"), "speechae", data, steps=40, batch=16, lr=2e-3)


@pytest.fixture(scope="module")
def segments(data, vae_run, speechae_run):
    assert cli("prepare", "latents", "--data", data, "--vae", vae_run / "vae.safetensors", "--speech-ae",
               speechae_run / "speech_ae.safetensors", "--chunks", "2", "--device", "auto") == 0  # as in the recipe
    return data


@pytest.fixture(scope="module")
def teacher_run(segments, tmp_path_factory):
    return run_stage(tmp_path_factory.mktemp("teacher"), "teacher", segments, steps=40, batch=4, lr=2e-3)


def test_vae_reconstruction_loss_goes_down_and_the_part_carries_latent_statistics(vae_run):
    assert falls(losses(vae_run)), losses(vae_run)
    vae, config = load_part(vae_run / "vae.safetensors", "vae")
    assert config == TINY_REST
    assert not torch.equal(vae.latents_std, torch.ones_like(vae.latents_std))
    assert (vae_run / "losses.png").stat().st_size > 1000


def test_speechae_reconstruction_loss_goes_down(speechae_run):
    assert falls(losses(speechae_run)), losses(speechae_run)


def test_prepared_latents_are_near_unit_scale(segments):
    z = SegmentSet(segments).latents[:, :, 1:]
    assert 0.3 < float(z.std()) < 3


def test_teacher_flow_matching_loss_goes_down(teacher_run):
    assert falls(losses(teacher_run)), losses(teacher_run)
    assert part_info(teacher_run / "dit.safetensors")["stage"] == "teacher"


def test_a_latent_window_holds_the_mouth_wherever_it_is_drawn():
    z = torch.arange(64.0).reshape(8, 8).expand(2, 3, 8, 8)  # [C, F, h, w]: each cell holds y * 8 + x
    g = torch.Generator().manual_seed(0)
    box = [130, 170, 180, 200]  # pixels: cells 4.06 .. 5.63 across, 5.31 .. 6.25 down
    corners = set()
    for _ in range(50):
        window = mouth_window(z, box, 4, g)
        assert window.shape == (2, 3, 4, 4)
        cells = window[0, 0].long()
        xs, ys = cells % 8, cells // 8
        assert xs.min() <= 4 and xs.max() >= 5 and ys.min() <= 5 and ys.max() >= 6
        corners.add((int(ys.min()), int(xs.min())))
    assert len(corners) > 3  # anywhere that holds it, not one fixed window
    with pytest.raises(ValueError, match="choose at most 8"):
        mouth_window(z, box, 9, g)


def test_latent_windows_need_their_steps():
    with pytest.raises(ValueError, match="give both"):
        DiTOptions(crop=4)


def test_a_teacher_learns_on_latent_windows_then_on_whole_frames(segments, tmp_path):
    run = run_stage(tmp_path, "teacher", segments, steps=30, batch=4, lr=2e-3,
                    extra="[teacher]\ncrop = 1\ncrop_steps = 20\n")
    values = losses(run)
    assert falls(values[:20]), values  # 1x1-cell windows of the 2x2 grid
    assert len(values) == 30 and all(v == v for v in values[20:])  # then whole frames, another shape
    assert part_info(run / "dit.safetensors")["stage"] == "teacher"


@pytest.mark.slow
def test_a_compiled_bfloat16_teacher_learns_and_saves_float32_weights_under_their_names(segments, tmp_path):
    run = run_stage(tmp_path, "teacher", segments, steps=30, batch=4, lr=2e-3,  # no dropout: one shape, one compile
                    extra='precision = "bfloat16"\n[teacher]\ncompile = true\ncfg_dropout = 0.0\n')
    assert falls(losses(run)), losses(run)
    dit, _ = load_part(run / "dit.safetensors", "dit")
    assert {p.dtype for p in dit.parameters()} == {torch.float32}
    assert set(dit.state_dict()) == set(A2VDiT(TINY_REST.dit).state_dict())


def test_student_with_asd_starts_from_the_teacher_and_logs_every_term(segments, teacher_run, tmp_path):
    teacher = teacher_run / "dit.safetensors"
    run = run_stage(tmp_path, "student", segments, "--init", teacher, "--teacher", teacher, steps=10, batch=4,
                    lr=5e-4, extra="[student]\ncon = 0.1\nsmo = 1.0\n")
    rows = list(csv.DictReader((run / "losses.csv").open()))
    assert {"loss", "fm", "con", "smo"} <= set(rows[0])
    # the student starts as the teacher: its first loss is the teacher's own loss level, not a random model's
    assert float(rows[0]["fm"]) < losses(teacher_run)[0]


def test_a_low_rank_student_changes_its_matrices_by_low_rank_and_exports_as_the_change(vae_run, speechae_run,
                                                                                        segments, teacher_run,
                                                                                        tmp_path):
    from safetensors import safe_open
    from rest_core.train.export import export

    teacher = teacher_run / "dit.safetensors"
    run = run_stage(tmp_path, "student", segments, "--init", teacher, "--teacher", teacher, steps=6, batch=4,
                    lr=1e-2, extra='[student]\ntrainable = "low_rank"\nrank = 2\n')
    before, _ = load_part(teacher, "dit")
    after, _ = load_part(run / "dit.safetensors", "dit")  # merged: the usual names
    assert set(after.state_dict()) == set(before.state_dict())
    time_names = {n for n, p in before.named_parameters() if any(p is q for q in before.time_parameters())}
    old, new = before.state_dict(), after.state_dict()
    changed = {n for n in old if not torch.equal(old[n], new[n])}
    matrices = {n for n in changed if n.startswith(("transformer_blocks.", "adaln_single.")) and n.endswith(".weight")
                and old[n].dim() == 2}  # the linear layers' weights (a block's scale_shift_table is a table)
    assert matrices and changed <= time_names | matrices
    for n in matrices:
        assert torch.linalg.matrix_rank(new[n] - old[n], rtol=1e-4) <= 2, n
    out = export(vae_run / "vae.safetensors", speechae_run / "speech_ae.safetensors", run / "dit.safetensors",
                 tmp_path / "model.safetensors", dtype="float32", context_noise=0.05, dit_from=teacher)
    with safe_open(str(out), "pt") as f:
        factors = [k for k in f.keys() if k.startswith("delta.") and k.endswith(".up")]
    assert len(factors) == len(matrices)
    pipe = RESTPipeline.from_pretrained(out, whisper=WhisperEncoder(layers=1))
    assert pipe.config.sampler.context_noise == 0.05
    for n, value in new.items():
        torch.testing.assert_close(pipe.dit.state_dict()[n], value, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="trainable"):
        DiTOptions(trainable="time")


def test_student_with_asd_but_no_teacher_is_refused(segments, tmp_path, capsys):
    config = write_config(tmp_path, "student", steps=2, batch=2, lr=1e-3)
    assert cli("train", "student", "--config", config, "--data", segments, "--out", tmp_path / "run") == 2
    assert "--teacher" in capsys.readouterr().err


def test_an_interrupted_run_resumes_to_the_same_weights(segments, tmp_path, monkeypatch):
    import rest_core.train.dit as dit_stage

    config = write_config(tmp_path, "teacher", steps=10, batch=2, lr=1e-3)
    assert cli("train", "teacher", "--config", config, "--data", segments, "--out", tmp_path / "straight",
               "--device", "cpu") == 0

    real = dit_stage.noisy_batch
    calls = []

    def crash_at_step_8(*args, **kw):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(dit_stage, "noisy_batch", crash_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        cli("train", "teacher", "--config", config, "--data", segments, "--out", tmp_path / "resumed",
            "--device", "cpu")
    monkeypatch.setattr(dit_stage, "noisy_batch", real)
    assert cli("train", "teacher", "--config", config, "--data", segments, "--out", tmp_path / "resumed",
               "--device", "cpu") == 0  # resumes at step 5, the last state written

    a, _ = load_part(tmp_path / "straight" / "dit.safetensors", "dit")
    b, _ = load_part(tmp_path / "resumed" / "dit.safetensors", "dit")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert [int(r["step"]) for r in csv.DictReader((tmp_path / "resumed" / "losses.csv").open())] == list(range(1, 11))


def test_exported_parts_make_a_checkpoint_that_streams(vae_run, speechae_run, teacher_run, tmp_path):
    out = tmp_path / "model.safetensors"
    assert cli("train", "export", "--vae", vae_run / "vae.safetensors", "--speech-ae",
               speechae_run / "speech_ae.safetensors", "--dit", teacher_run / "dit.safetensors", "--out", out,
               "--cfg", "2.5") == 0
    pipe = RESTPipeline.from_pretrained(out, whisper=WhisperEncoder(layers=1))
    assert pipe.config.sampler.cfg == 2.5 and pipe.dit.proj_out.weight.dtype == torch.float32
    frames = pipe.generate(torch.rand(64, 64, 3), torch.randn(1, 16000) * 0.1, 16000)
    assert frames.shape == (25, 64, 64, 3)


def test_a_finished_part_is_the_same_part_in_float16_and_loads_for_the_next_stage(vae_run, tmp_path, capsys):
    from safetensors import safe_open

    out = tmp_path / "finished" / "vae.safetensors"
    assert cli("train", "finish", "--part", vae_run / "vae.safetensors", "--out", out) == 0
    with safe_open(str(vae_run / "vae.safetensors"), "pt") as f, safe_open(str(out), "pt") as g:
        assert g.metadata() == f.metadata() and set(g.keys()) == set(f.keys())
        for key in f.keys():
            assert g.get_tensor(key).dtype == torch.float16
            torch.testing.assert_close(g.get_tensor(key).float(), f.get_tensor(key), atol=1e-3, rtol=1e-3)
    vae, _ = load_part(out, "vae")
    assert next(vae.parameters()).dtype == torch.float32
    assert cli("train", "finish", "--part", vae_run / "state.safetensors", "--out", tmp_path / "x.safetensors") != 0
    assert "not a training part file" in capsys.readouterr().err


def test_export_refuses_parts_of_different_models(vae_run, speechae_run, teacher_run, tmp_path):
    with pytest.raises(ValueError, match="expected a 'vae' part"):
        cli_export = __import__("rest_core.train.export", fromlist=["export"]).export
        cli_export(teacher_run / "dit.safetensors", speechae_run / "speech_ae.safetensors",
                   teacher_run / "dit.safetensors", tmp_path / "x.safetensors")


def test_a_vae_with_the_mouth_shape_exports_with_a_dit_trained_on_the_same_latents(speechae_run, tmp_path):
    from rest_core.checkpoint import save_part
    from rest_core.dit import A2VDiT
    from rest_core.train.export import export
    from rest_core.vae import CausalVAE

    shape = dataclasses.replace(TINY_POSE, vae=dataclasses.replace(TINY_POSE.vae, mouth_shape=True))
    save_part(tmp_path / "vae.safetensors", "vae", CausalVAE(shape.vae), shape)
    save_part(tmp_path / "dit.safetensors", "dit", A2VDiT(TINY_POSE.dit), TINY_POSE)  # trained without the shape
    out = export(tmp_path / "vae.safetensors", speechae_run / "speech_ae.safetensors", tmp_path / "dit.safetensors",
                 tmp_path / "model.safetensors")
    pipe = RESTPipeline.from_pretrained(out, whisper=WhisperEncoder(layers=1))
    assert pipe.config.vae.mouth_shape and pipe.vae.decoder.mouth_shape is not None
    mouth_only = dataclasses.replace(TINY_POSE, vae=dataclasses.replace(TINY_POSE.vae, pose_code=False))
    save_part(tmp_path / "other.safetensors", "vae", CausalVAE(mouth_only.vae), mouth_only)  # other latents: refused
    with pytest.raises(ValueError, match="another config"):
        export(tmp_path / "other.safetensors", speechae_run / "speech_ae.safetensors", tmp_path / "dit.safetensors",
               tmp_path / "x.safetensors")


@pytest.mark.slow
def test_torchrun_trains_a_stage_on_two_processes(segments, tmp_path):
    config = write_config(tmp_path, "teacher", steps=4, batch=2, lr=1e-3)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "rest_core", "train", "teacher", "--config", str(config), "--data", str(segments),
                             "--out", str(tmp_path / "run"), "--device", "cpu"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert part_info(tmp_path / "run" / "dit.safetensors")["world"] == 2
    assert len(losses(tmp_path / "run")) == 4  # one log, written by rank 0


def test_settings_reject_unknown_keys_and_bad_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nstep = 3\n")
    with pytest.raises(ValueError, match="unknown \\[train\\] setting 'step'"):
        read_settings(bad, "vae")
    bad.write_text('[train]\nprecision = "float16"\n')
    with pytest.raises(ValueError, match="precision='float16': choose one of"):
        read_settings(bad, "vae")
    bad.write_text("[train\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        read_settings(bad, "vae")
    bad.write_text('preset = "rest-demo"\n[train]\nsteps = 3\n[studnet]\ncon = 0.5\n')  # a misspelt table
    with pytest.raises(ValueError, match=r"unknown entry 'studnet'; a student config has .* a \[student\] table"):
        read_settings(bad, "student")
    for path in (ROOT / "configs").rglob("*.toml"):  # every shipped config is read by the stage named after it
        stage = "expert" if path.stem == "mouth-expert" else path.stem.split("-")[0]  # vae-pose: a vae stage
        read_settings(path, stage)
    settings, config = read_settings(ROOT / "configs" / "rest-demo" / "teacher.toml", "teacher", steps=7)
    assert settings.steps == 7 and config.name == "rest-demo" and settings.options["cfg_dropout"] == 0.1


# --- the ASD losses and the asynchronous noise ------------------------------------------------------------------

def velocities(seed=0, frames=9):
    return torch.randn(2, 4, frames, 2, 2, generator=torch.Generator().manual_seed(seed))


def test_contrastive_loss_is_lowest_when_student_frames_match_the_teachers():
    v = velocities()
    matched = contrastive_loss(v, v, tau=0.1)
    shuffled = contrastive_loss(v[:, :, torch.randperm(9, generator=torch.Generator().manual_seed(1))], v, tau=0.1)
    assert matched < 0.1 < shuffled
    # eq. 21 as printed leaves the positive out of the denominator: always lower by the positive's share
    assert contrastive_loss(v, v, 0.1, "paper") < matched


def test_smoothness_loss_ignores_linear_motion_and_sees_a_jerk():
    t = torch.arange(9, dtype=torch.float32)[None, None, :, None, None]
    linear = 0.3 * t + velocities(frames=1)
    assert second_difference(linear).abs().max() < 1e-5
    jerk = linear.clone()
    jerk[:, :, 5:] += 1.0
    assert smoothness_loss(linear, linear) == 0 and smoothness_loss(jerk, linear) > 0.1


def test_asynchronous_noise_keeps_the_reference_clean_and_one_time_per_chunk():
    latents, speech = torch.randn(6, 8, 7, 2, 2), torch.randn(6, 6, 2, 16)
    opts = DiTOptions(cfg_dropout=0.5, logit_mean=0.0, logit_std=1.0)
    b = noisy_batch(latents, speech, 3, 3.0, opts, torch.Generator().manual_seed(0))
    t = b["t"].view(6, 7, 4)  # per token -> per latent frame
    assert torch.all(t[:, 0] == 0)
    assert torch.all(t[:, 1:4] == t[:, 1:2]) and torch.all(t[:, 4:] == t[:, 4:5])
    assert not torch.equal(t[:, 1], t[:, 4])  # chunks are noised independently
    assert 0 < b["speech"].shape[0] < 6  # some rows dropped for Joint CFG, the conditioned ones first
    rows = [int(torch.nonzero((latents[:, :, 0] == b["zt"][r, :, 0]).flatten(1).all(1))[0]) for r in range(6)]
    assert torch.equal(b["speech"], speech[rows[: b["speech"].shape[0]]])


def test_low_context_draws_a_share_of_the_segments_contexts_near_clean_and_leaves_their_last_chunk_alone():
    def times(**low):
        return chunk_noise_times(4000, 3, 3.0, 0.0, 1.0, torch.Generator().manual_seed(0), **low)

    plain, low = times(), times(low_context=0.5, low_context_t=0.1)
    assert torch.equal(plain, times(low_context=0.0))  # off, the draws are the schedule's as before
    near_clean = (low[:, :-1] <= 0.1).all(1)
    assert 0.45 < near_clean.float().mean() < 0.6  # the share asked (plus the schedule's own rare low draws)
    assert (plain[:, :-1] <= 0.1).all(1).float().mean() < 0.01
    last = low[:, -1]
    assert 0.3 < last[near_clean].median() < 0.95  # the chunk that sees the near-clean context is drawn as ever
    with pytest.raises(ValueError, match="low_context"):
        DiTOptions(low_context=1.5)


@pytest.mark.parametrize("stage, table, message", [
    ("vae", "[vae]\nmissed_moton = 0.2\n", r"unknown \[vae\] setting 'missed_moton'; known: .*'missed_motion'"),
    ("teacher", "[teacher]\ncfg_dropout = \"lots\"\n", r"\[teacher\] cfg_dropout = 'lots': expected float"),
    ("student", "[student]\ncompile = 1\n", r"\[student\] compile = 1: expected bool"),
])
def test_a_stage_table_with_a_typo_or_a_wrong_type_is_refused_by_name(tmp_path, stage, table, message):
    from rest_core.train.loop import stage_options
    from rest_core.train.vae import VAEOptions

    settings, _ = read_settings(write_config(tmp_path, stage, steps=1, batch=1, lr=1e-3, extra=table), stage)
    with pytest.raises(ValueError, match=message):
        stage_options(VAEOptions if stage == "vae" else DiTOptions, settings.options, stage)


def test_motion_weights_favour_the_pixels_that_move():
    from rest_core.train.vae import motion_weights

    video = torch.zeros(1, 3, 9, 16, 16)
    video[:, :, ::2, 4:6, 4:6] = 1  # a blinking patch
    w = motion_weights(video, 1.0)
    assert w[0, 0, 0, 4, 4] > 5 * w[0, 0, 0, 10, 10] and torch.all(w >= 1)
    assert torch.equal(motion_weights(video, 0.0), torch.ones_like(w))


def test_missed_motion_is_one_for_a_still_reconstruction_and_zero_for_the_clip():
    from rest_core.train.vae import missed_motion

    video = torch.rand(2, 3, 9, 8, 8)
    assert missed_motion(video, video) == 0
    assert missed_motion(video[:, :, :1].expand_as(video), video) == pytest.approx(1.0)
    assert missed_motion(video + 0.3, video) == pytest.approx(0.0, abs=1e-6)  # a constant offset is not motion


def test_vae_image_steps_train_on_single_frames_then_on_clips(data, tmp_path, monkeypatch):
    from rest_core.train import vae as vae_stage

    shapes, moving = [], []
    original = vae_stage.reconstruction_losses

    def recording(vae, video, weights, *args, **kwargs):
        shapes.append(tuple(video.shape[:3]))
        moving.append(bool((weights > 1.5).any()))  # single frames too are weighted by their window's motion
        return original(vae, video, weights, *args, **kwargs)

    held = []
    monkeypatch.setattr(vae_stage, "reconstruction_losses", recording)
    monkeypatch.setattr(vae_stage, "video_path_from_images",
                        lambda vaes, optimizer: held.append((len(shapes), len(vaes))))
    run = run_stage(tmp_path, "vae", data, steps=5, batch=2, lr=1e-3,
                    extra="[vae]\nframes = 9\nstats_clips = 1\nimage_steps = 3\nimage_batch = 5\n")
    assert shapes == [(5, 3, 1)] * 3 + [(2, 3, 9)] * 2
    assert all(moving)
    assert held == [(3, 2)]  # once, between the last image step and the first clip step, on the model and its EMA
    assert len(losses(run)) == 5


def test_vae_trains_on_random_crops_of_the_chosen_side(data, tmp_path, monkeypatch):
    from rest_core.train import vae as vae_stage

    seen = []
    original = vae_stage.reconstruction_losses

    def recording(vae, video, weights, *args, **kwargs):
        seen.append((tuple(video.shape), tuple(weights.shape), tuple(args[2].shape)))  # and the portraits'
        return original(vae, video, weights, *args, **kwargs)

    monkeypatch.setattr(vae_stage, "reconstruction_losses", recording)
    run = run_stage(tmp_path, "vae", data, steps=4, batch=2, lr=1e-3,
                    extra="[vae]\nframes = 9\nstats_clips = 1\nimage_steps = 2\nimage_batch = 3\ncrop = 32\n")
    assert seen == ([((3, 3, 1, 32, 32), (3, 1, 1, 32, 32), (3, 3, 32, 32))] * 2 +
                    [((2, 3, 9, 32, 32), (2, 1, 9, 32, 32), (2, 3, 32, 32))] * 2)
    vae, _ = load_part(run / "vae.safetensors", "vae")
    assert (vae.latents_std != 1).all()  # the latent statistics were measured (on whole frames)


def test_a_conditioned_vae_started_from_a_plain_one_encodes_as_it_did_and_first_decodes_the_portrait():
    from rest_core.train.vae import conditioned_from_plain
    from rest_core.vae import CausalVAE

    torch.manual_seed(0)
    plain = CausalVAE(dataclasses.replace(TINY_REST.vae, reference="none")).eval()
    vae = conditioned_from_plain(CausalVAE(TINY_REST.vae), plain).eval()
    video, portrait = torch.rand(1, 3, 9, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        z = plain.encode_video(video)
        assert torch.equal(vae.encode_video(video, portrait), z)
        # it paints nothing yet and moves nothing: every frame is the portrait
        torch.testing.assert_close(vae.decode(z, portrait), portrait[:, :, None].expand(-1, -1, 9, -1, -1),
                                   atol=5e-5, rtol=0)  # grid_sample's rounding
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in plain.state_dict().items()
               if k.startswith("decoder.") and not k.startswith("decoder.conv_out."))  # it reads z as plain does
    # ... and learns: the painting and the flow get a gradient from the first step
    vae.train()
    vae.decode(z, portrait).sub(video).square().mean().backward()
    assert vae.decoder.conv_out.conv.weight.grad.abs().sum() > 0
    assert vae.decoder.reference_out.predict[-1].weight.grad.abs().sum() > 0


def test_a_vae_crop_that_is_no_multiple_of_the_latent_grid_is_refused(data, tmp_path, capsys):
    path = write_config(tmp_path, "vae", steps=2, batch=1, lr=1e-3, extra="[vae]\nframes = 9\ncrop = 48\n")
    assert cli("train", "vae", "--config", path, "--data", data, "--out", tmp_path / "run", "--device", "cpu") != 0
    assert "crop=48: choose a multiple of 32 px" in capsys.readouterr().err


@pytest.mark.slow
def test_a_compiled_vae_run_computes_what_the_plain_one_does(data, tmp_path):
    extra = "[vae]\nframes = 9\nstats_clips = 1\nimage_steps = 3\nimage_batch = 2\n"
    (tmp_path / "plain").mkdir(), (tmp_path / "compiled").mkdir()
    # a small learning rate: Adam scales every gradient to a step of about lr, the fused kernels' float rounding
    # included, and at 1e-3 the two runs' losses drifted 4 % apart within six steps
    plain = run_stage(tmp_path / "plain", "vae", data, steps=6, batch=1, lr=1e-5, extra=extra)
    compiled = run_stage(tmp_path / "compiled", "vae", data, steps=6, batch=1, lr=1e-5,
                         extra=extra + "compile = true\n")
    assert losses(compiled) == pytest.approx(losses(plain), rel=1e-3)  # images, then clips after the switch
    vae, _ = load_part(compiled / "vae.safetensors", "vae")
    assert set(vae.state_dict()) == set(load_part(plain / "vae.safetensors", "vae")[0].state_dict())


def test_a_decoder_only_vae_run_keeps_the_latents_and_tunes_the_decoder(data, vae_run, tmp_path, capsys):
    from safetensors.torch import load_file

    extra = "[vae]\nframes = 9\ntrain_encoder = false\nmissed_motion = 0.1\n"
    assert cli("train", "vae", "--config", write_config(tmp_path, "vae", steps=5, batch=1, lr=1e-3, extra=extra),
               "--data", data, "--out", tmp_path / "fresh", "--device", "cpu") != 0
    assert "--init" in capsys.readouterr().err
    run = run_stage(tmp_path, "vae", data, "--init", vae_run / "vae.safetensors", steps=5, batch=1, lr=1e-3,
                    extra=extra)
    before, after = load_file(vae_run / "vae.safetensors"), load_file(run / "vae.safetensors")
    kept = [k for k in before if not k.startswith(("decoder.", "reference_encoder."))]  # what the decoder reads
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)  # encoder and latent statistics
    assert not torch.equal(before["decoder.conv_out.conv.weight"], after["decoder.conv_out.conv.weight"])
    assert "missed_motion" in next(csv.reader((run / "losses.csv").open()))


def test_the_video_path_from_images_keeps_single_frames_and_plays_a_clip_frame_by_frame():
    from rest_core.train.vae import video_path_from_images
    from rest_core.vae import CausalVAE

    torch.manual_seed(0)
    vae = CausalVAE(TINY_REST.vae).eval()  # reference-conditioned: the portrait's paths are per frame
    portrait = torch.rand(1, 3, 64, 64) * 2 - 1
    optimizer = torch.optim.AdamW(vae.parameters())
    features = vae.reference_features(portrait)
    vae.decoder(torch.randn(1, TINY_REST.vae.latent_channels, 3, 2, 2), reference=features).square().mean().backward()
    optimizer.step()
    image = torch.rand(1, 3, 1, 64, 64) * 2 - 1
    clip = torch.rand(1, 3, 17, 64, 64) * 2 - 1
    still = torch.randn(1, TINY_REST.vae.latent_channels, 1, 2, 2).expand(-1, -1, 3, -1, -1)  # [1, C, 3, 2, 2]

    def decode(z):
        return vae.decoder(z, reference=vae.reference_features(portrait))

    def encode(x):
        return vae.encoder(x, portrait)[:, :-1]

    with torch.no_grad():
        before = decode(encode(image))
        flicker_before = decode(still).diff(dim=2).abs().max()
        video_path_from_images([vae], optimizer)
        after = decode(encode(image))
        # latent frame j now sees only video frame 8j, as an image would be encoded
        latents = encode(clip)
        frames = torch.cat([encode(clip[:, :, t:t + 1]) for t in (0, 8, 16)], dim=2)
        flicker_after = decode(still).diff(dim=2).abs().max()
    assert torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(latents, frames, atol=1e-4)
    assert flicker_before > 1e-2 and flicker_after < 1e-5  # a latent still in time decodes to a still video
    up = next(m for m in vae.decoder.modules() if type(m).__name__ == "Upsampler3d").conv.conv.weight
    moments = optimizer.state[up]["exp_avg"]
    assert moments[:, :, :-1].abs().sum() == 0 and moments.abs().sum() > 0
    halves = moments.view(up.shape[0] // 8, 2, 4, -1)
    assert torch.equal(halves[:, 0], halves[:, 1])


def test_a_loss_term_that_starts_part_way_gets_its_own_column(tmp_path):
    from rest_core.train.loop import truncate_log, write_row
    from rest_core.train.plot import plot_losses

    log = tmp_path / "losses.csv"
    write_row(log, 1, {"loss": 1.0}, 1e-3, 0.5)
    write_row(log, 2, {"loss": 0.5, "motion": 2.0}, 1e-3, 0.5)
    write_row(log, 3, {"loss": 0.25, "motion": 1.0}, 1e-3, 0.5)
    rows = list(csv.DictReader(log.open()))
    assert list(rows[0]) == ["step", "loss", "motion", "lr", "seconds"]
    assert [r["motion"] for r in rows] == ["", "2", "1"] and [r["loss"] for r in rows] == ["1", "0.5", "0.25"]
    plot_losses(log, tmp_path / "losses.png")
    assert (tmp_path / "losses.png").stat().st_size > 1000
    truncate_log(log, 2)
    assert [r["step"] for r in csv.DictReader(log.open())] == ["1", "2"]


def test_vae_augmentation_zooms_and_recolours_the_whole_window_alike():
    from rest_core.data.prepare import to_video
    from rest_core.train.vae import Augmentation

    g = torch.Generator().manual_seed(0)
    still = torch.randint(0, 256, (1, 32, 32, 3), dtype=torch.uint8, generator=g).expand(9, -1, -1, -1)
    augmentations = [Augmentation.draw(32, 32, g) for _ in range(6)]
    outs = [a(to_video(a.cut(still))) for a in augmentations]
    for out in outs:
        assert out.shape == (1, 3, 9, 32, 32) and out.min() >= -1 and out.max() <= 1
        assert torch.allclose(out[:, :, :1].expand_as(out), out)  # every frame changed the same way
    assert min((a - to_video(still)).abs().mean() for a in outs) > 0.02
    assert (outs[0] - outs[1]).abs().mean() > 0.02
    # the weights move with the pixels: a marked pixel's weight lands where the pixel itself went
    plain = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    marked = plain.clone()
    marked[0, 10, 20] = 255
    for a in augmentations:
        moved = (a(to_video(a.cut(marked))) - a(to_video(a.cut(plain)))).abs().sum(dim=1).flatten().argmax()
        assert a.geometry(to_video(a.cut(marked))[:, :1]).flatten().argmax() == moved


def test_a_portrait_is_a_frame_from_another_moment_than_the_sample_where_the_clip_has_one():
    from rest_core.train.vae import another_moment

    g = torch.Generator().manual_seed(2)
    picks = [another_moment(125, 30, 49, g) for _ in range(300)]
    assert all(0 <= r < 30 or 79 <= r < 125 for r in picks)
    assert min(picks) < 30 and max(picks) >= 79  # both sides of the window
    assert all(0 <= another_moment(49, 0, 49, g) < 49 for _ in range(20))  # no other moment: any frame


def test_a_mouth_code_vaes_portrait_is_a_moment_with_the_mouth_at_rest():
    from rest_core.train.vae import another_moment

    g = torch.Generator().manual_seed(2)
    at_rest = torch.zeros(125, dtype=torch.bool)
    at_rest[[0, 1, 40, 100]] = True
    picks = {another_moment(125, 30, 49, g, at_rest) for _ in range(100)}
    assert picks == {0, 1, 100}  # 40 is inside the window
    only_inside = torch.zeros(125, dtype=torch.bool)
    only_inside[40] = True
    assert another_moment(125, 30, 49, g, only_inside) == 40  # better a frame of the window than a moving mouth


def test_a_moved_portrait_keeps_the_samples_colours_and_moves_its_window():
    from rest_core.train.vae import Augmentation

    g = torch.Generator().manual_seed(3)
    moved = 0
    for _ in range(20):
        a = Augmentation.draw(256, 256, g, out=128)
        m = a.moved(256, 256, g)
        moved += m.crop != a.crop
        assert dataclasses.replace(m, crop=a.crop) == a  # colours, flip and output size as the sample's
        (top, left, h, w), (mt, ml, mh, mw) = a.crop, m.crop
        assert abs(mh - h) <= 0.08 * h + 1 and abs(mt + mh / 2 - top - h / 2) <= 0.08 * h + 1
        assert abs(mw - w) <= 0.08 * w + 1 and abs(ml + mw / 2 - left - w / 2) <= 0.08 * w + 1
        assert 0 <= mt <= 256 - mh and 0 <= ml <= 256 - mw
    assert moved >= 18


def test_a_window_holds_the_mouth_box_wherever_it_can():
    from rest_core.train.vae import Augmentation, window_start

    g = torch.Generator().manual_seed(4)
    box = [150.5, 40.0, 190.2, 70.0]  # x0, y0, x1, y1
    for _ in range(30):
        top, left, h, w = Augmentation.draw(256, 256, g, out=128, holding=box).crop
        assert top <= 40 and top + h >= 70 and left <= 150.5 and left + w >= 190.2
    assert {window_start(256, 128, None, u) for u in (0.0, 0.999)} == {0, 128}  # anywhere without a box
    assert window_start(256, 32, [100, 180], 0.5) == 124  # wider than the window: centred on it
    assert window_start(256, 32, [240, 260], 0.5) == 224  # ... and kept inside the frame


def test_the_kl_weight_rises_from_zero_over_the_warmup_steps(data, tmp_path, monkeypatch):
    from rest_core.train import vae as vae_stage

    seen = []
    original = vae_stage.reconstruction_losses

    def recording(vae, video, weights, opts, *args, **kwargs):
        seen.append(opts.kl)
        return original(vae, video, weights, opts, *args, **kwargs)

    monkeypatch.setattr(vae_stage, "reconstruction_losses", recording)
    run_stage(tmp_path, "vae", data, steps=4, batch=1, lr=1e-3,
              extra="[vae]\nframes = 9\nstats_clips = 1\nkl = 0.1\nkl_warmup = 2\n")
    assert seen == pytest.approx([0.0, 0.05, 0.1, 0.1])


def test_the_mouth_weight_raises_the_l1_weights_inside_the_clips_mouth_box(data, tmp_path, monkeypatch):
    from rest_core.data.face_code import box_mask
    from rest_core.data.prepare import ClipSet
    from rest_core.train import vae as vae_stage

    seen = []
    original = vae_stage.reconstruction_losses

    def recording(vae, video, weights, *args, **kwargs):
        seen.append(weights.clone())
        return original(vae, video, weights, *args, **kwargs)

    monkeypatch.setattr(vae_stage, "reconstruction_losses", recording)
    # no motion weight, no augmentation, whole frames: 1 outside the box, 1 + 4 inside
    run_stage(tmp_path, "vae", data, steps=3, batch=1, lr=1e-3,
              extra="[vae]\nframes = 9\nstats_clips = 1\nmotion_weight = 0.0\nmouth_weight = 4.0\n")
    boxes = [box_mask(c["mouth_box"], (TINY_REST.resolution,) * 2) for c in ClipSet(data).clips]
    for weights in seen:
        assert set(weights.unique().tolist()) == {1.0, 5.0}
        inside = (weights[0, 0, 0] == 5.0).float()  # the same pixels in every frame
        assert torch.equal(weights, weights[:, :, :1].expand_as(weights))
        assert any(torch.equal(inside, box[0, 0, 0]) or torch.equal(inside, box[0, 0, 0].flip(-1))  # or flipped
                   for box in boxes)


@pytest.mark.parametrize("model", [TINY_MOUTH, TINY_POSE], ids=["mouth", "pose"])
def test_a_coded_vae_run_hides_the_mouth_from_the_encoder_and_writes_the_code(data, tmp_path, monkeypatch, model):
    from rest_core.data.prepare import ClipSet
    from rest_core.train import vae as vae_stage

    seen, encoded = [], []
    original = vae_stage.reconstruction_losses

    def recording(vae, video, weights, opts, generator, reference, code, whole):
        seen.append(code)
        encode = vae.encode_moments

        def watching(video, reference=None):
            encoded.append(video)
            return encode(video, reference)

        vae.encode_moments = watching
        try:
            return original(vae, video, weights, opts, generator, reference, code, whole)
        finally:
            del vae.encode_moments

    monkeypatch.setattr(vae_stage, "reconstruction_losses", recording)
    run = run_stage(tmp_path, "vae", data, steps=3, batch=2, lr=1e-3, model=model,
                    extra="[vae]\nframes = 17\nstats_clips = 1\n")
    clips = ClipSet(data)
    states = [clips.mouth_state(i) for i in range(len(clips))]
    for code, video in zip(seen, encoded):
        assert code.in_mouth.shape == (2, 1, 1, TINY_REST.resolution, TINY_REST.resolution) and code.in_mouth.sum() > 0
        inside = code.in_mouth[:, 0, 0] == 1  # [2, H, W]
        assert video[:, :, 1:].permute(0, 2, 1, 3, 4)[inside[:, None, None].expand(-1, 16, 3, -1, -1)].abs().max() == 0
        assert code.mouth.shape == (2, 17, 2)
        assert all(any((s[None] == whole.unfold(0, 17, 1).transpose(1, 2)).all((1, 2)).any() for whole in states)
                   for s in code.mouth)  # each sample's state is 17 consecutive frames of a clip's
        if model.vae.pose_code:
            assert code.pose.shape == (2, 17, 4) and code.closure.shape == (2, 17)
            assert code.head_region.shape == (2, 1, TINY_REST.resolution, TINY_REST.resolution)
            assert code.pose.abs().max() > 0  # the head moved from the portrait, another moment of the clip
        else:
            assert code.pose is None
    assert load_part(run / "vae.safetensors", "vae")[1].vae == model.vae


def test_a_mouth_code_vae_run_trains_its_head_at_its_own_rate_and_logs_the_mouths_squared_error(data, tmp_path):
    run = run_stage(tmp_path, "vae", data, steps=2, batch=1, lr=1e-3, model=TINY_MOUTH,
                    extra="[vae]\nframes = 9\nstats_clips = 1\nmouth_crops = 1.0\nmouth_mse = 1.0\n"
                          "code_heads_lr = 0.0\n")
    vae = load_part(run / "vae.safetensors", "vae")[0]
    assert not vae.decoder.mouth_head.conv_out.weight.any()  # a rate of 0: the head still paints nothing
    with open(run / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(r["mouth_mse"]) > 0 for r in rows)


def test_a_mouth_code_vae_run_resumes_with_its_heads_optimizer_state_in_place(data, tmp_path):
    extra = "[vae]\nframes = 9\nstats_clips = 1\nmouth_mse = 1.0\ncode_heads_lr = 5.0\n"
    run_stage(tmp_path, "vae", data, steps=2, batch=1, lr=1e-3, model=TINY_MOUTH, extra=extra)
    run = run_stage(tmp_path, "vae", data, "--steps", "4", steps=2, batch=1, lr=1e-3, model=TINY_MOUTH, extra=extra)
    with open(run / "losses.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]


def test_a_mouth_code_vae_starts_from_the_same_vae_without_the_code_painting_nothing_new():
    from rest_core.train.vae import with_code_heads
    from rest_core.vae import CausalVAE

    torch.manual_seed(0)
    trained = CausalVAE(dataclasses.replace(TINY_MOUTH.vae, mouth_code=False)).eval()
    vae = with_code_heads(CausalVAE(TINY_MOUTH.vae), trained).eval()
    z, portrait = torch.randn(1, 24, 3, 2, 2), torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(z, portrait), trained.decode(z, portrait))


def test_a_pose_code_vae_run_starts_from_a_mouth_code_vaes_part(data, tmp_path):
    (tmp_path / "mouth").mkdir()
    (tmp_path / "pose").mkdir()
    mouth_code = dataclasses.replace(TINY_POSE, vae=dataclasses.replace(TINY_POSE.vae, pose_code=False))
    mouth = run_stage(tmp_path / "mouth", "vae", data, steps=1, batch=1, lr=1e-3, model=mouth_code,
                      extra="[vae]\nframes = 9\nstats_clips = 1\n")
    run = run_stage(tmp_path / "pose", "vae", data, "--init", mouth / "vae.safetensors", steps=1, batch=1, lr=1e-3,
                    model=TINY_POSE, extra="[vae]\nframes = 9\nstats_clips = 1\n")
    vae, config = load_part(run / "vae.safetensors", "vae")
    assert config.vae.pose_code and vae.decoder.head_mask is not None


def test_a_pose_code_vae_run_teaches_its_head_mask_the_heads_outline(data, tmp_path):
    run = run_stage(tmp_path, "vae", data, steps=2, batch=1, lr=1e-3, model=TINY_POSE,
                    extra="[vae]\nframes = 9\nstats_clips = 1\nhead_mask = 1.0\n")
    assert all(0 < v < 2 for v in losses(run, "head_mask"))  # a cross-entropy, from about ln 2 at the start
    assert load_part(run / "vae.safetensors", "vae")[0].decoder.head_mask.out.weight.any()  # it learnt from it


TINY_SHAPE = dataclasses.replace(TINY_POSE, vae=dataclasses.replace(TINY_POSE.vae, mouth_shape=True))


def test_a_mouth_shape_run_from_a_pose_code_vae_tunes_the_mouths_heads_alone_and_teaches_the_mouth_mask(data,
                                                                                                    tmp_path):
    (tmp_path / "pose").mkdir()
    (tmp_path / "shape").mkdir()
    pose = run_stage(tmp_path / "pose", "vae", data, steps=1, batch=1, lr=1e-3, model=TINY_POSE,
                     extra="[vae]\nframes = 9\nstats_clips = 1\n")
    run = run_stage(tmp_path / "shape", "vae", data, "--init", pose / "vae.safetensors", steps=2, batch=1, lr=1e-2,
                    model=TINY_SHAPE, extra="[vae]\nframes = 9\nstats_clips = 1\nmouth_crops = 1.0\n"
                                            "mouth_mask = 1.0\ntrain_encoder = false\ntrain_decoder = false\n")
    assert all(0 < v < 2 for v in losses(run, "mouth_mask"))
    before, (after, config) = load_part(pose / "vae.safetensors", "vae")[0].state_dict(), load_part(
        run / "vae.safetensors", "vae")
    assert config.vae.mouth_shape
    changed = {k for k, v in after.state_dict().items() if k not in before or not torch.equal(v, before[k])}
    assert changed and all(k.startswith(("decoder.mouth_head.", "decoder.mouth_shape.")) for k in changed), changed
    assert any(k.startswith("decoder.mouth_shape.out.") for k in changed)  # the mask learnt from the mouth boxes


def test_tuning_the_mouths_heads_alone_needs_a_frozen_encoder(data, tmp_path, capsys):
    path = write_config(tmp_path, "vae", steps=1, batch=1, lr=1e-3, model=TINY_SHAPE,
                        extra="[vae]\nframes = 9\nstats_clips = 1\ntrain_decoder = false\n")
    assert cli("train", "vae", "--config", path, "--data", data, "--out", tmp_path / "run", "--device", "cpu") != 0
    assert "set train_encoder = false too" in capsys.readouterr().err


def test_mouth_code_without_prepared_mouth_states_is_refused(data, tmp_path, capsys):
    from rest_core.data.prepare import ClipSet

    index = ClipSet(data).index
    for clip in index["clips"]:
        clip.pop("mouth_state")
    bare = tmp_path / "bare"
    (bare / "clips").mkdir(parents=True)
    for name in index["shards"]:
        (bare / "clips" / name).symlink_to(data / "clips" / name)
    (bare / "clips" / "index.json").write_text(json.dumps(index))
    path = write_config(tmp_path, "vae", steps=1, batch=1, lr=1e-3, extra="[vae]\nframes = 9\n", model=TINY_MOUTH)
    assert cli("train", "vae", "--config", path, "--data", bare, "--out", tmp_path / "run", "--device", "cpu") != 0
    assert "without the mouth's box and state" in capsys.readouterr().err


def test_prepared_clips_keep_the_sidecars_mouth_box_in_their_own_pixels(data):
    from rest_core.data.prepare import ClipSet

    for clip in ClipSet(data).clips:
        x0, y0, x1, y1 = clip["mouth_box"]
        assert x0 < x1 and y0 < y1
        assert 0 < (x0 + x1) / 2 < TINY_REST.resolution and 0 < (y0 + y1) / 2 < TINY_REST.resolution


def test_an_augmentations_view_is_where_its_cut_zoom_and_flip_put_each_pixel():
    """The pose code is written in the sample's coordinates through `view_matrix` of the augmentation: a dot of the
    clip's frame must appear in the sample where that view puts it."""
    from rest_core.data.face_code import view_matrix
    from rest_core.train.vae import Augmentation

    g = torch.Generator().manual_seed(3)
    flips = set()
    for _ in range(8):
        a = Augmentation.draw(96, 96, g, out=64)
        top, left, h, w = a.crop
        x, y = left + w // 3, top + h // 2  # a pixel inside the window
        frame = -torch.ones(1, 3, 1, 96, 96)
        frame[..., y - 1:y + 2, x - 1:x + 2] = 1  # a 3x3 dot centred on pixel (x, y)
        sample = a.geometry(frame[..., top:top + h, left:left + w])[0, 0, 0]  # geometry only: no recolouring
        mass = sample + 1  # the dot's brightness over the black frame
        rows, cols = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
        centre = ((mass * cols).sum() / mass.sum(), (mass * rows).sum() / mass.sum())  # (x, y), in pixel positions
        expected = view_matrix(a.crop, a.out, a.flip) @ torch.tensor([x + 0.5, y + 0.5, 1.0], dtype=torch.float64)
        assert abs(centre[0] - expected[0]) < 0.1 and abs(centre[1] - expected[1]) < 0.1
        flips.add(a.flip)
    assert flips == {False, True}


def test_a_cropped_augmentation_cuts_a_zoomed_window_and_gives_the_crop_size():
    from rest_core.train.vae import Augmentation

    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        a = Augmentation.draw(256, 256, g, out=128)
        top, left, h, w = a.crop
        assert a.out == (128, 128) and 94 <= h == w <= 128  # up to 1.35x zoom
        assert 0 <= top <= 256 - h and 0 <= left <= 256 - w
        assert a(torch.zeros(1, 3, 1, h, w)).shape == (1, 3, 1, 128, 128)
