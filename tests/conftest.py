"""Shared fixtures, and the tiers: `make test` runs every test and sets REST_TESTS_NEED_TOOLS=1, so a missing system
tool fails there; `make test-fast` (tests/core, tests/nodes, tests/bench, no `slow` test) skips what needs a missing
tool, saying which, and never starts a ComfyUI server or a browser."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import pytest
import torch

import comfy_stubs
from rest_core import A2VDiT, DiTConfig, RESTConfig, RESTPipeline, StreamOptions, SpeechConfig, VAEConfig
from rest_core.whisper import WhisperEncoder

ROOT = Path(__file__).resolve().parents[1]

# Before any test imports the plugin's nodes: they import ComfyUI's modules at the top, as nodes do.
COMFY = comfy_stubs.install()

# tool -> its Debian package
TOOLS = {"espeak-ng": "espeak-ng", "chromium": "chromium", "chromedriver": "chromium-driver"}


def need_tool(name: str):
    """Fail (make test) or skip (the fast tier) a test whose system tool is missing."""
    if shutil.which(name) is None:
        message = f"{name} is not installed: run `make test`, which installs it, or apt-get install {TOOLS[name]}"
        if os.environ.get("REST_TESTS_NEED_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def pytest_configure(config):
    config.addinivalue_line("markers", "tools(*names): the system tools a test needs (see TOOLS)")
    config.addinivalue_line("markers", "slow: a training, generation, compilation or benchmark run of several "
                                       "seconds and more; not in the fast tier")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("tools"):
        for name in mark.args:
            need_tool(name)


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
        path = ROOT / "bench" / script
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
    need_tool("espeak-ng")
    folder = tmp_path_factory.mktemp("speech")

    def run(text: str, voice: str = "en-us") -> tuple[torch.Tensor, int]:
        path = folder / f"{abs(hash((text, voice)))}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
        return read_wav(path)

    return run


# A whole REST model small enough for node and server tests: 64 px, 2 DiT blocks, a one-layer Whisper; its VAE
# copies the look from the portrait, as rest-demo's does.
TINY_REST = RESTConfig(
    name="tiny", resolution=64,
    dit=DiTConfig(in_channels=8, hidden=64, depth=2, heads=4, text_dim=None, speech_tokens=2, speech_dim=16),
    vae=VAEConfig(latent_channels=8, block_out_channels=(8, 16, 16, 16), layers_per_block=(1, 1, 1, 1, 1),
                  decoder_block_out_channels=(8, 16, 16, 16), decoder_layers_per_block=(1, 1, 1, 1, 1),
                  reference="both"),
    speech=SpeechConfig(hidden=32, depth=1, heads=4),
    sampler=StreamOptions(steps=2, cfg=2.0),
)
# TINY_REST with a mouth code (vae_mouth.py): it needs more latent channels than the code's 16
def every_path_on(config, seed: int = 0):
    """A random CausalVAE of `config` whose zero-initialised outputs (flows, the code's heads) get small weights, as
    training gives them, so that every path acts; in eval mode"""
    from rest_core.vae import CausalVAE

    torch.manual_seed(seed)
    vae = CausalVAE(config).eval()
    with torch.no_grad():
        for p in vae.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.1)
    return vae


def stream_decode(vae, z, split: list[int], reference=None) -> list:
    """z [B, C, F, h, w] decoded as a stream: `decode_stream` calls of `split` latent frames each (with the stream's
    portrait `reference` for a reference-conditioned VAE) -> each call's frames"""
    state, outs, start = vae.decode_start(reference), [], 0
    for n in split:
        frames, state = vae.decode_stream(z[:, :, start:start + n], state)
        outs.append(frames)
        start += n
    return outs



def assert_streams_as_whole(vae, z, split: list[int], reference=None):
    """Streaming z in calls of `split` latent frames gives exactly the whole decode (to the float rounding that the
    output flow, in pixels, carries: a few 1e-5)"""
    with torch.no_grad():
        whole = vae.decode(z, reference)
        outs = stream_decode(vae, z, split, reference)
    torch.testing.assert_close(torch.cat(outs, dim=2), whole, atol=5e-5, rtol=1e-5)

TINY_MOUTH = dataclasses.replace(
    TINY_REST, vae=dataclasses.replace(TINY_REST.vae, latent_channels=24, mouth_code=True),
    dit=dataclasses.replace(TINY_REST.dit, in_channels=24))

TINY_POSE = dataclasses.replace(
    TINY_REST, vae=dataclasses.replace(TINY_REST.vae, latent_channels=64, mouth_code=True, pose_code=True),
    dit=dataclasses.replace(TINY_REST.dit, in_channels=64))


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """A random-weight REST checkpoint with its speech encoder bundled, in the stub ComfyUI's models/rest/."""
    path = Path(COMFY.models_dir) / "rest" / "tiny.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pipe = RESTPipeline.from_config(TINY_REST, whisper=WhisperEncoder(layers=1))
        pipe.save_pretrained(path, include_whisper=True)
    return path


@pytest.fixture
def comfy(tiny_checkpoint):
    """The stub ComfyUI's record of progress, websocket events and memory calls, cleared for each test."""
    COMFY.reset()
    return COMFY


SAMPLING = {"steps": 2, "cfg": 2.0, "seed": 0, "id_sink": True, "context_cache": True, "context_refresh": "clean"}


@pytest.fixture(scope="session")
def rest_model(tiny_checkpoint):
    """The tiny checkpoint through REST Model Loader (a REST_MODEL)."""
    from nodes.model import DEFAULT_WHISPER, RESTModelLoader

    return RESTModelLoader().load("tiny.safetensors", DEFAULT_WHISPER, "auto", "auto")[0]


@pytest.fixture(scope="session")
def portrait_image() -> torch.Tensor:
    """A ComfyUI IMAGE: one 90x70 portrait. [1, H, W, 3]"""
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 90, 70, 3, generator=g)


@pytest.fixture(scope="session")
def rest_reference(rest_model, portrait_image):
    from nodes.encode import RESTReferenceEncoder

    return RESTReferenceEncoder().encode(rest_model, portrait_image)["result"][0]


def audio_dict(waveform: torch.Tensor, rate: int) -> dict:
    """[C, N] -> a ComfyUI AUDIO"""
    return {"waveform": waveform[None], "sample_rate": rate}


def portrait(path: Path, width: int = 80, height: int = 96):
    """A drawn face, taller than wide so the reference encoder has to crop it."""
    im = Image.new("RGB", (width, height), (70, 90, 120))
    d = ImageDraw.Draw(im)
    d.ellipse((12, 14, 68, 84), fill=(220, 180, 150))
    d.ellipse((26, 36, 34, 44), fill=(40, 30, 30))
    d.ellipse((46, 36, 54, 44), fill=(40, 30, 30))
    d.rectangle((30, 62, 50, 68), fill=(150, 50, 60))
    im.save(path)


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory, tiny_checkpoint, speak):
    """A real ComfyUI 0.3.75 server with this plugin, the tiny model as models/rest/rest-demo.safetensors, and the
    example workflows' input files (a drawn portrait, espeak-ng speech)."""
    from scripts.comfyui_server import ComfyServer

    server = ComfyServer(tmp_path_factory.mktemp("comfyui"))
    server.install()
    shutil.copy(tiny_checkpoint, server.base / "models" / "rest" / "rest-demo.safetensors")
    inputs = server.base / "input"
    portrait(inputs / "rest_portrait.png")
    for name, text in [("rest_speech.wav", "Hello there. This is a talking head."),
                       ("rest_speech_long.wav", "A longer piece of speech, so that the stream runs for several "
                                                "chunks and can be stopped while it is still being made."),
                       ("rest_live_piece.wav", "Live.")]:
        write_wav(inputs / name, *speak(text))
    server.start(env={"REST_MEMORY_LIMIT_GB": "1"})  # a room the faults tests can overfill with a few minutes
    yield server
    server.stop()
