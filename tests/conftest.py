import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

import pytest
import torch

from rest_core import A2VDiT, DiTConfig

TINY = DiTConfig(in_channels=8, hidden=64, depth=2, heads=4, text_dim=16, speech_tokens=2, speech_dim=12)


@pytest.fixture
def tiny_config() -> DiTConfig:
    return TINY


@pytest.fixture
def tiny_model() -> A2VDiT:
    torch.manual_seed(0)
    return A2VDiT(TINY).eval()


@pytest.fixture
def run_bench():
    """Run a script of bench/ and return the one JSON line it must print."""

    def run(script: str, *args: str) -> dict:
        path = Path(__file__).resolve().parents[1] / "bench" / script
        out = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, check=True).stdout
        lines = out.strip().splitlines()
        assert len(lines) == 1, out
        return json.loads(lines[0])

    return run


def read_wav(path) -> tuple[torch.Tensor, int]:
    """A 16-bit PCM wav file -> ([channels, samples] float in [-1, 1), sample rate)."""
    with wave.open(str(path)) as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16).reshape(-1, f.getnchannels())
        return torch.from_numpy(pcm.T.astype(np.float32) / 32768), f.getframerate()


def write_wav(path, audio: torch.Tensor, rate: int):
    """[channels, samples] float in [-1, 1] -> a 16-bit PCM wav file."""
    pcm = (audio.clamp(-1, 1) * 32767).round().to(torch.int16).T.contiguous().numpy()
    with wave.open(str(path), "wb") as f:
        f.setnchannels(audio.shape[0])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


@pytest.fixture(scope="session")
def speak(tmp_path_factory):
    """Text -> ([channels, samples], sample rate) of espeak-ng speech (22.05 kHz mono)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run `make test`, which installs it, or apt-get install espeak-ng")
    folder = tmp_path_factory.mktemp("speech")

    def run(text: str, voice: str = "en-us") -> tuple[torch.Tensor, int]:
        path = folder / f"{abs(hash((text, voice)))}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
        return read_wav(path)

    return run
