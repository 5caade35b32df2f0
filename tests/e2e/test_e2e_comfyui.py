"""End to end on a real ComfyUI 0.3.75 with this plugin installed: the shipped API workflows run through
POST /prompt into mp4 files checked with PyAV; cancel, bad input and the live session are exercised as an API
client would. The checkpoint is the tiny random-weight model of the node tests, saved as rest-demo.safetensors."""

import io
import json
import math
import urllib.parse
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, portrait, write_wav

WORKFLOWS = ROOT / "workflows" / "api"
NODES = {"RESTModelLoader", "RESTReferenceEncoder", "RESTSpeechEncoder", "RESTStreamingSampler", "RESTLiveSampler",
         "RESTDecode", "RESTPasteBack", "RESTRenderVideo"}


def workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def video_facts(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        facts = {"fps": float(video.average_rate), "width": video.width, "height": video.height,
                 "frames": sum(1 for _ in container.decode(video))}
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        facts["audio_seconds"] = sum(f.samples for f in container.decode(audio)) / audio.rate
    return facts


def expected_frames(wav: Path) -> int:
    with av.open(str(wav)) as container:
        stream = container.streams.audio[0]
        samples = sum(f.samples for f in container.decode(stream))
        rate = stream.rate
    return max(1, (math.ceil(samples * 16_000 / rate) + 320) // 640)


@pytest.fixture(scope="module")
def server(comfyui):
    return comfyui


def test_the_server_lists_the_plugins_nodes_and_the_checkpoint(server):
    info = server.get("/object_info")
    assert NODES <= set(info)
    assert all(info[n]["category"] == "REST" for n in NODES)
    assert info["RESTModelLoader"]["input"]["required"]["checkpoint"][0] == ["rest-demo.safetensors"]


def test_the_ui_workflows_are_in_the_template_browser(server):
    templates = server.get("/workflow_templates")
    assert sorted(templates["comfyui-rest"]) == ["ablation", "live_session", "long_audio", "talking_head"]
    served = server.get("/api/workflow_templates/comfyui-rest/talking_head.json")
    assert served == json.loads((WORKFLOWS.parent / "talking_head.json").read_text())


def test_the_server_serves_every_nodes_help_page_where_the_frontend_looks(server):
    import urllib.request

    for name in NODES:
        with urllib.request.urlopen(f"{server.url}/extensions/comfyui-rest/docs/{name}.md", timeout=30) as r:
            assert r.read().decode() == (ROOT / "js" / "docs" / f"{name}.md").read_text()


@pytest.mark.parametrize("name, wav, width, height", [
    ("talking_head", "rest_speech.wav", 64, 64),
    ("long_audio", "rest_speech_long.wav", 80, 96),  # pasted back into the 80x96 portrait
    ("ablation", "rest_speech.wav", 3 * 64 + 2 * 4, 64),  # three streams side by side
])
def test_an_api_workflow_makes_an_mp4_with_the_audios_frame_count(server, name, wav, width, height):
    entry = server.run(workflow(name))
    facts = video_facts(server.output_file(entry, "9"))
    frames = expected_frames(server.base / "input" / wav)
    assert facts["frames"] == frames and facts["fps"] == 25.0
    assert (facts["width"], facts["height"]) == (width, height)
    assert abs(facts["audio_seconds"] - frames / 25) < 0.05  # AAC frames round the track up by < 1024 samples


@pytest.mark.parametrize("width, height", [(159, 159), (1001, 667)])
def test_long_audio_on_an_odd_sized_portrait_saves_an_even_sized_mp4(server, width, height):
    name = f"rest_odd_{width}x{height}.png"
    portrait(server.base / "input" / name, width, height)
    prompt = workflow("long_audio")
    prompt["1"]["inputs"]["image"] = name
    facts = video_facts(server.output_file(server.run(prompt), "9"))
    assert (facts["width"], facts["height"]) == (width + width % 2, height + height % 2)
    assert facts["frames"] == expected_frames(server.base / "input" / "rest_speech_long.wav")


def test_long_audio_run_again_with_the_same_seed_writes_the_same_file(server):
    """x264 had made other files from the same frames at the 80x96 portrait's size (rest_core.media.VideoWriter);
    the seeds alternate so that ComfyUI's cache does not answer the repeat."""
    files = []
    for seed in (3, 4, 3):
        prompt = workflow("long_audio")
        prompt["6"]["inputs"]["seed"] = seed
        files.append(server.output_file(server.run(prompt), "9").read_bytes())
    assert files[0] == files[2]
    assert files[0] != files[1]


def test_the_image_path_pastes_an_odd_sized_portrait_into_an_even_sized_mp4(server):
    portrait(server.base / "input" / "rest_odd_159x159.png", 159, 159)
    prompt = workflow("talking_head")
    prompt["1"]["inputs"]["image"] = "rest_odd_159x159.png"
    prompt["10"] = {"class_type": "RESTPasteBack", "inputs": {"images": ["7", 0], "reference": ["4", 0],
                                                              "feather": 16}}
    prompt["8"]["inputs"]["images"] = ["10", 0]
    facts = video_facts(server.output_file(server.run(prompt), "9"))
    assert (facts["width"], facts["height"]) == (160, 160)


def test_a_face_box_through_the_api_is_previewed_and_pasted_back_into_the_whole_portrait(server):
    prompt = workflow("long_audio")
    prompt["4"]["inputs"] |= {"face_x": 8, "face_y": 24, "face_size": 64}
    entry = server.run(prompt)
    shown, = entry["outputs"]["4"]["images"]
    with urllib.request.urlopen(f"{server.url}/view?{urllib.parse.urlencode(shown)}", timeout=30) as r:
        preview = np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB"), dtype=np.float32)
    source = np.asarray(Image.open(server.base / "input" / "rest_portrait.png").convert("RGB"), dtype=np.float32)
    assert preview.shape == source.shape == (96, 80, 3)
    assert np.abs(preview[40:80, 20:60] - source[40:80, 20:60]).max() <= 1  # inside the box: as it is
    assert (preview[5:20] < source[5:20] * 0.4 + 1).all()  # above it: darkened
    facts = video_facts(server.output_file(entry, "9"))
    assert (facts["width"], facts["height"]) == (80, 96)


def with_mouth_mask(prompt: dict, x: int, y: int, width: int, height: int) -> dict:
    """The workflow with a painted mouth, as core nodes make one: a box of ones on the 80x96 portrait's empty mask."""
    prompt["20"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 80, "height": 96}}
    prompt["21"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": width, "height": height}}
    prompt["22"] = {"class_type": "MaskComposite", "inputs": {"destination": ["20", 0], "source": ["21", 0],
                                                              "x": x, "y": y, "operation": "add"}}
    prompt["4"]["inputs"]["mouth_mask"] = ["22", 0]
    return prompt


def test_a_mouth_mask_through_the_api_reaches_a_model_that_draws_the_mouth(server):
    import dataclasses

    from conftest import TINY_POSE
    from rest_core import RESTPipeline, WhisperEncoder

    torch.manual_seed(0)
    shape = dataclasses.replace(TINY_POSE, vae=dataclasses.replace(TINY_POSE.vae, mouth_shape=True))
    path = server.base / "models" / "rest" / "tiny-shape.safetensors"
    RESTPipeline.from_config(shape, whisper=WhisperEncoder(layers=1)).save_pretrained(path, include_whisper=True)
    prompt = with_mouth_mask(workflow("talking_head"), 28, 60, 24, 10)
    prompt["3"]["inputs"]["checkpoint"] = path.name
    try:
        facts = video_facts(server.output_file(server.run(prompt), "9"))
    finally:
        path.unlink()
    assert (facts["width"], facts["height"]) == (64, 64) and facts["frames"] > 0


def test_a_mouth_mask_for_a_model_that_does_not_draw_the_mouth_is_a_node_error_that_says_so(server):
    entry = server.wait(server.queue(with_mouth_mask(workflow("talking_head"), 28, 60, 24, 10)))
    assert entry["status"]["status_str"] == "error"
    (kind, error), = [m for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert error["node_type"] == "RESTReferenceEncoder"
    assert "does not draw the mouth's shape" in error["exception_message"]
    server.run(workflow("talking_head"))


def test_a_cancelled_job_returns_control_and_the_next_job_succeeds(server):
    seen = len(server.messages)
    prompt = workflow("long_audio")
    prompt["6"]["inputs"]["seed"] = 1  # not a cached result
    prompt_id = server.queue(prompt)
    server.wait_for_progress(prompt_id, "6", seen, timeout=120)
    server.post("/interrupt")
    entry = server.wait(prompt_id)
    assert entry["status"]["status_str"] == "error"
    assert any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"]), entry["status"]
    again = workflow("talking_head")
    again["6"]["inputs"]["seed"] = 2
    server.run(again)


def test_empty_audio_is_a_node_error_in_history_and_the_server_keeps_serving(server):
    prompt = workflow("talking_head")
    prompt["2"] = {"class_type": "EmptyAudio", "inputs": {"duration": 0.0, "sample_rate": 16_000, "channels": 1}}
    entry = server.wait(server.queue(prompt))
    assert entry["status"]["status_str"] == "error"
    (kind, error), = [m for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert error["node_type"] == "RESTSpeechEncoder"
    assert "audio is empty: give at least one sample of speech" in error["exception_message"]
    assert server.get("/system_stats")["system"]
    server.run(workflow("talking_head"))


def test_a_live_session_streams_chunks_as_its_audio_arrives(server, speak):
    audio, rate = speak("Live from the microphone, a piece at a time.")
    pieces = torch.tensor_split(audio, 4, dim=1)
    prompt_ids, seen = [], len(server.messages)
    for i, piece in enumerate(pieces):
        write_wav(server.base / "input" / f"rest_live_{i}.wav", piece, rate)
        prompt = workflow("live_session")
        prompt["2"]["inputs"]["audio"] = f"rest_live_{i}.wav"
        prompt["5"]["inputs"]["session_id"] = "e2e-live"
        prompt["5"]["inputs"]["end_of_stream"] = i == len(pieces) - 1
        # core's Preview Image on the new frames: a piece that completes none must skip it, not fail it
        prompt["6"] = {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}}
        prompt_ids.append(server.queue(prompt))
    entries = [server.wait(p) for p in prompt_ids]
    assert [e["status"]["status_str"] for e in entries] == ["success"] * len(pieces)  # an empty piece fails nothing
    outputs = [e["outputs"] for e in entries]
    reports = [o["5"]["rest_live"][0] for o in outputs]
    assert [("6" in o) for o in outputs] == [r["frames"] > 0 for r in reports]
    frames = max(1, (math.ceil(audio.shape[1] * 16_000 / rate) + 320) // 640)
    assert sum(r["frames"] for r in reports) == frames and reports[-1]["finished"]
    assert reports[0]["frames"] == 0 < reports[1]["frames"]  # the first quarter is shorter than a chunk's audio
    chunks = [m["data"] for m in server.messages[seen:] if m.get("type") == "rest.chunk"]
    assert [c["index"] for c in chunks] == list(range(len(chunks))) and chunks[-1]["final"]
    assert sum(len(c["frames"]) for c in chunks) == frames
