import json
import subprocess
import sys
from pathlib import Path

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
