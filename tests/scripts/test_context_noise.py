import dataclasses
import math
import sys

import pytest
import torch

from conftest import ROOT, TINY_REST
from rest_core.data.synth import render_clip, write_clip
from rest_core.pipeline import RESTPipeline
from rest_core.whisper import WhisperEncoder

sys.path.insert(0, str(ROOT / "scripts"))
from context_noise import main  # noqa: E402

pytestmark = pytest.mark.tools("espeak-ng")  # the synthetic clip speaks with it

# a plain VAE: a random conditioned one shows half the portrait whatever the latents say (test_eval.py)
RANDOM_PLAIN = dataclasses.replace(TINY_REST, vae=dataclasses.replace(TINY_REST.vae, reference="none"))


def test_every_level_streams_every_family_clip_and_gets_evals_measures(tmp_path, capsys):
    (tmp_path / "families" / "pixel").mkdir(parents=True)
    write_clip(render_clip(4_000_002, seconds=2.4, size=128, looks="pixel"), tmp_path / "families" / "pixel" / "c")
    torch.manual_seed(0)
    RESTPipeline.from_config(RANDOM_PLAIN, whisper=WhisperEncoder(layers=1)).save_pretrained(
        tmp_path / "model.safetensors", include_whisper=True)
    assert main(["--checkpoint", str(tmp_path / "model.safetensors"), "--families", str(tmp_path / "families"),
                 "--values", "0", "0.5", "--seconds", "2", "--dtype", "float32"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| 0")]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [("0", "pixel0"), ("0.5", "pixel0")]
    measured = [[float(v) for v in r[2:]] for r in rows]  # fidelity, lip-sync, seams, drift
    assert all(map(math.isfinite, measured[0] + measured[1]))
