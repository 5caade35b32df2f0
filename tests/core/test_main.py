import os
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from PIL import Image

from rest_core.pipeline import RESTPipeline
from rest_core.speech import video_frames
from rest_core.whisper import WhisperEncoder

from conftest import write_wav
from conftest import TINY_REST as TINY


@pytest.fixture(scope="module")
def files(tmp_path_factory, speak):
    folder = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    RESTPipeline.from_config(TINY, whisper=WhisperEncoder(layers=1)).save_pretrained(
        folder / "tiny.safetensors", include_whisper=True)
    Image.fromarray((np.random.default_rng(0).random((96, 80, 3)) * 255).astype(np.uint8)).save(folder / "face.png")
    audio, rate = speak("Hello from the command line.")
    wav = folder / "speech.wav"
    write_wav(wav, audio, rate)
    return folder, audio, rate


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "rest_core", *args], capture_output=True, text=True)


def test_generate_writes_an_mp4_with_the_right_frames_fps_and_audio(files):
    folder, audio, rate = files
    out = folder / "talk.mp4"
    result = run_cli("generate", "--checkpoint", str(folder / "tiny.safetensors"), "--image", str(folder / "face.png"),
                     "--audio", str(folder / "speech.wav"), "--out", str(out), "--steps", "2")
    assert result.returncode == 0, result.stderr
    assert "steps" in result.stderr and "wrote" in result.stderr  # the progress bar and the summary
    expected_frames = video_frames(-(-audio.shape[1] * 16_000 // rate))
    with av.open(str(out)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert video.average_rate == 25 and (video.width, video.height) == (64, 64)
        frames = sum(1 for _ in container.decode(video=0))
        assert sound.rate == rate
    assert frames == expected_frames
    with av.open(str(out)) as container:
        decoded = sum(f.samples for f in container.decode(audio=0))
    assert abs(decoded / rate - frames / 25) < 0.05  # the audio track ends with the video (AAC frame padding)


def test_generate_reports_bad_input_without_a_traceback(files):
    folder, _, _ = files
    result = run_cli("generate", "--checkpoint", str(folder / "tiny.safetensors"), "--image", str(folder / "nope.png"),
                     "--audio", str(folder / "speech.wav"), "--out", str(folder / "x.mp4"))
    assert result.returncode == 2
    assert "nope.png not found" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("cfg", ["nan", "inf"])
def test_generate_refuses_a_guidance_scale_that_is_not_a_finite_number(files, cfg):
    folder, _, _ = files
    result = run_cli("generate", "--checkpoint", str(folder / "tiny.safetensors"), "--image", str(folder / "nope.png"),
                     "--audio", str(folder / "speech.wav"), "--out", str(folder / "x.mp4"), "--cfg", cfg)
    assert result.returncode == 2
    assert f"'{cfg}' is not a finite number" in result.stderr and "Traceback" not in result.stderr


def test_generate_refuses_a_mouth_box_for_a_model_that_does_not_draw_the_mouth(files):
    folder, _, _ = files
    result = run_cli("generate", "--checkpoint", str(folder / "tiny.safetensors"), "--image", str(folder / "face.png"),
                     "--audio", str(folder / "speech.wav"), "--out", str(folder / "x.mp4"),
                     "--mouth", "30", "60", "50", "70")
    assert result.returncode == 2
    assert "does not draw the mouth's shape" in result.stderr and "Traceback" not in result.stderr
    assert not (folder / "x.mp4").exists()


@pytest.mark.slow
def test_generate_animates_the_chosen_box_and_refuses_one_outside_the_portrait(files):
    folder, _, _ = files
    common = ["generate", "--checkpoint", str(folder / "tiny.safetensors"), "--image", str(folder / "face.png"),
              "--audio", str(folder / "speech.wav"), "--steps", "1"]
    result = run_cli(*common, "--out", str(folder / "box.mp4"), "--box", "10", "20", "40")
    assert result.returncode == 0, result.stderr
    result = run_cli(*common, "--out", str(folder / "outside.mp4"), "--box", "50", "0", "40")
    assert result.returncode == 2
    assert "face box x=50, y=0, size=40 reaches outside the 80x96 image" in result.stderr


def test_a_dtype_this_cpu_only_emulates_is_chosen_with_a_warning(monkeypatch, capsys):
    from rest_core import __main__ as cli
    from rest_core import precision

    monkeypatch.setattr(precision, "onednn_runs", lambda dtype: dtype == torch.float32)
    assert cli.chosen_dtype("bfloat16", "cpu") == torch.bfloat16
    assert "warning: bfloat16 on this CPU is emulated" in capsys.readouterr().err
    assert cli.chosen_dtype("float32", "cpu") == torch.float32
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_compile_on_a_machine_without_a_cpp_compiler_fails_before_any_video_with_what_to_do(files):
    folder, _, _ = files
    out = folder / "compiled.mp4"
    env = os.environ | {"CXX": "no-such-compiler", "TORCHINDUCTOR_FX_GRAPH_CACHE": "0"}
    result = subprocess.run([sys.executable, "-m", "rest_core", "generate", "--checkpoint",
                             str(folder / "tiny.safetensors"), "--image", str(folder / "face.png"), "--audio",
                             str(folder / "speech.wav"), "--out", str(out), "--compile"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "torch.compile cannot build kernels" in result.stderr and "C++ compiler" in result.stderr
    assert "Run without compile" in result.stderr and not out.exists()
