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
