"""Faults an API client meets, through a real ComfyUI 0.3.75: live sessions that other prompts must not touch, closed
sessions that must not restart silently, NaN and absurd inputs refused up front, speech encoding that can be
cancelled. Each test names the failure it guards against."""

import json
import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import ROOT, portrait, write_wav

WORKFLOWS = ROOT / "workflows" / "api"


def workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def write_float_wav(path: Path, samples: np.ndarray, rate: int):
    """Mono 32-bit float WAV (format 3): it can hold NaN, which 16-bit PCM cannot."""
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                     + b"data" + struct.pack("<I", len(data)) + data)


def error_of(entry: dict) -> dict:
    assert entry["status"]["status_str"] == "error", entry["status"]
    (_, error), = [m for m in entry["status"]["messages"] if m[0] == "execution_error"]
    return error


@pytest.fixture(scope="module")
def pieces(comfyui, speak) -> list[str]:
    """Three pieces of one sentence in the server's input folder; the middle one completes chunks."""
    audio, rate = speak("A live stream must go on whatever other prompts do in between its pieces.")
    names = []
    for i, piece in enumerate(torch.tensor_split(audio, 3, dim=1)):
        names.append(f"rest_fault_piece_{i}.wav")
        write_wav(comfyui.base / "input" / names[-1], piece, rate)
    return names


def live(session: str, audio: str, end: bool = False, **inputs) -> dict:
    prompt = workflow("live_session")
    prompt["2"]["inputs"]["audio"] = audio
    prompt["5"]["inputs"] |= {"session_id": session, "end_of_stream": end, **inputs}
    return prompt


def report(entry: dict) -> dict:
    return entry["outputs"]["5"]["rest_live"][0]


def stream_frames(server, stream: str) -> list[str]:
    return [f for c in server.events("rest.chunk") if c["stream"] == stream for f in c["frames"]]


def test_a_live_session_goes_on_exactly_after_other_prompts_load_and_fail_to_load_models(comfyui, pieces):
    """It used to refuse every later piece ("started with another model") once any prompt re-ran the loader."""
    broken = comfyui.base / "models" / "rest" / "broken.safetensors"
    broken.write_bytes(b"\x00" * 256)
    first = report(comfyui.run(live("faults-unrelated", pieces[0])))
    other = workflow("talking_head")
    other["3"]["inputs"]["checkpoint"] = "broken.safetensors"
    assert "not a readable safetensors" in error_of(comfyui.wait(comfyui.queue(other)))["exception_message"]
    other = workflow("talking_head")
    other["3"]["inputs"]["dtype"] = "float32"
    other["6"]["inputs"]["seed"] = 11
    comfyui.run(other)
    rest = [report(comfyui.run(live("faults-unrelated", pieces[1]))),
            report(comfyui.run(live("faults-unrelated", pieces[2], end=True)))]
    assert {r["stream"] for r in [first, *rest]} == {first["stream"]}
    assert rest[0]["first_frame"] == first["frames_so_far"] and rest[-1]["finished"]

    alone = [report(comfyui.run(live("faults-alone", p, end=i == 2))) for i, p in enumerate(pieces)]
    assert rest[-1]["frames_so_far"] == alone[-1]["frames_so_far"] > 0
    assert stream_frames(comfyui, first["stream"]) == stream_frames(comfyui, alone[0]["stream"])


def test_two_clients_running_the_unchanged_live_workflow_get_two_sessions(comfyui, pieces):
    """Every client of the shipped live_session workflow used to share the session "live": another client with
    another portrait closed it, with the same portrait fed it, and with restart began it again from frame 0."""
    portrait(comfyui.base / "input" / "rest_portrait_b.png", width=96, height=80)

    def from_b(audio: str, **inputs) -> dict:  # client B: its own client_id, its own portrait
        prompt = live("live", audio, **inputs)
        prompt["1"]["inputs"]["image"] = "rest_portrait_b.png"
        entry = comfyui.wait(comfyui.post("/prompt", {"prompt": prompt, "client_id": "client-b"})["prompt_id"])
        assert entry["status"]["status_str"] == "success", entry["status"]
        return report(entry)

    a = [report(comfyui.run(live("live", pieces[0])))]
    b = [from_b(pieces[0]), from_b(pieces[1], restart=True)]
    a += [report(comfyui.run(live("live", pieces[1]))), report(comfyui.run(live("live", pieces[2], end=True)))]
    b.append(from_b(pieces[2], end=True))
    assert {r["stream"] for r in a} == {a[0]["stream"]} and a[1]["first_frame"] == a[0]["frames_so_far"]
    assert b[1]["first_frame"] == 0 and b[1]["stream"] != b[0]["stream"]  # B's restart began B's own stream again
    alone = [report(comfyui.run(live("live-alone", p, end=i == 2))) for i, p in enumerate(pieces)]
    assert a[-1]["frames_so_far"] == alone[-1]["frames_so_far"]
    assert stream_frames(comfyui, a[0]["stream"]) == stream_frames(comfyui, alone[0]["stream"])


def test_a_cancelled_session_is_refused_with_why_until_a_restart(comfyui, pieces, speak):
    """It used to restart silently under the same id, from frame 0, after a cancelled piece."""
    long = comfyui.base / "input" / "rest_fault_long.wav"
    write_wav(long, *speak("A long piece of speech that is cancelled while its chunks are still being made, "
                           "so that the session it belongs to has to close."))
    comfyui.run(live("faults-cancel", pieces[0]))
    seen = len(comfyui.messages)
    prompt_id = comfyui.queue(live("faults-cancel", long.name))
    comfyui.wait_for_progress(prompt_id, "5", seen, timeout=120)
    comfyui.post("/interrupt")
    assert comfyui.wait(prompt_id)["status"]["status_str"] == "error"
    error = error_of(comfyui.wait(comfyui.queue(live("faults-cancel", pieces[1]))))
    assert "'faults-cancel' was closed: a piece was cancelled" in error["exception_message"]
    assert "set restart" in error["exception_message"]
    again = report(comfyui.run(live("faults-cancel", pieces[1], restart=True)))
    assert again["first_frame"] == 0 and again["frames_so_far"] == again["frames"]


def test_a_session_whose_piece_fails_is_closed(comfyui, pieces):
    """A NaN piece used to fail alone while the stream went on without its audio."""
    write_float_wav(comfyui.base / "input" / "rest_fault_nan.wav", np.full(8000, np.nan), 16_000)
    comfyui.run(live("faults-nan", pieces[0]))
    error = error_of(comfyui.wait(comfyui.queue(live("faults-nan", "rest_fault_nan.wav"))))
    assert "NaN or Inf" in error["exception_message"]
    error = error_of(comfyui.wait(comfyui.queue(live("faults-nan", pieces[1]))))
    assert "'faults-nan' was closed: a piece failed (" in error["exception_message"]


def test_an_ended_session_is_not_continued_silently(comfyui, pieces):
    comfyui.run(live("faults-ended", pieces[0], end=True))
    error = error_of(comfyui.wait(comfyui.queue(live("faults-ended", pieces[1]))))
    assert "'faults-ended' was closed: its last piece (end_of_stream) ended it" in error["exception_message"]


def test_a_nan_guidance_scale_is_refused_by_name(comfyui):
    """cfg = NaN passes ComfyUI's min/max check; it used to make an all-black video and report success."""
    prompt = workflow("talking_head")
    prompt["6"]["inputs"]["cfg"] = math.nan
    error = error_of(comfyui.wait(comfyui.queue(prompt)))
    assert error["node_type"] == "RESTStreamingSampler"
    assert "cfg: expected a finite number, got nan" in error["exception_message"]


def test_a_checkpoint_asking_for_an_absurd_size_is_refused_naming_the_field(comfyui):
    """It used to fail with a raw allocator error and leave more than a GB resident."""
    source = comfyui.base / "models" / "rest" / "rest-demo.safetensors"
    with safe_open(str(source), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(metadata["config"])
    config["dit"]["hidden"] = 1_000_000
    save_file(tensors, str(source.with_name("absurd.safetensors")), metadata=metadata | {"config": json.dumps(config)})
    prompt = workflow("talking_head")
    prompt["3"]["inputs"]["checkpoint"] = "absurd.safetensors"
    error = error_of(comfyui.wait(comfyui.queue(prompt)))
    assert error["node_type"] == "RESTModelLoader"
    assert "config dit.hidden=1000000: expected whole numbers from 1 to 16384" in error["exception_message"]


def peak_rss(server) -> int:
    """The server process's peak resident memory so far, in bytes."""
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def rewritten_checkpoint(comfyui, name: str, change) -> str:
    """The served tiny checkpoint with its tensors passed through `change`, as models/rest/<name>."""
    source = comfyui.base / "models" / "rest" / "rest-demo.safetensors"
    with safe_open(str(source), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    change(tensors)
    save_file(tensors, str(source.with_name(name)), metadata=metadata)
    return name


def test_a_bundled_speech_encoder_of_another_width_is_refused_before_it_is_built(comfyui):
    """A checkpoint bundling an 8192-wide speech encoder (38 MB) used to allocate 3.8 GB before failing with torch's
    raw size-mismatch message."""
    def widen(tensors):
        tensors["whisper.conv1.weight"] = torch.zeros(8192, 80, 3, dtype=torch.float16)
        tensors["whisper.blocks.0.attn_ln.weight"] = torch.zeros(8192, dtype=torch.float16)

    prompt = workflow("talking_head")
    prompt["3"]["inputs"]["checkpoint"] = rewritten_checkpoint(comfyui, "wide-whisper.safetensors", widen)
    before = peak_rss(comfyui)
    error = error_of(comfyui.wait(comfyui.queue(prompt)))
    assert error["node_type"] == "RESTModelLoader"
    assert "its bundled speech encoder: " in error["exception_message"]
    assert "Whisper tiny's is [384" in error["exception_message"]
    assert peak_rss(comfyui) - before < 500 * 2**20


def test_a_weight_stored_as_bool_is_refused_naming_it(comfyui):
    """Bool and complex weights used to load and run."""
    def spoil(tensors):
        tensors["dit.proj_out.weight"] = torch.zeros_like(tensors["dit.proj_out.weight"], dtype=torch.bool)

    prompt = workflow("talking_head")
    prompt["3"]["inputs"]["checkpoint"] = rewritten_checkpoint(comfyui, "bool-weight.safetensors", spoil)
    error = error_of(comfyui.wait(comfyui.queue(prompt)))
    assert "tensor dit.proj_out.weight is stored as BOOL" in error["exception_message"]


@pytest.mark.parametrize("name, content, message", [
    ("renamed.safetensors", b"\xff" * 64, "renamed.safetensors is not a readable safetensors file"),
    ("short/model.bin", None, "holds 4 bytes but its shape [3] needs 12; the file is damaged"),
])
def test_a_broken_speech_encoder_file_is_named_in_the_error(comfyui, name, content, message):
    """They used to fail with 'header too large' and no file name, or with the allocator's or reshape's message."""
    path = comfyui.base / "models" / "audio_encoders" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:  # a CTranslate2 file whose one tensor is shorter than its shape
        path.write_bytes(struct.pack("<I", 2) + struct.pack("<H", 12) + b"WhisperSpec\0" + struct.pack("<II", 1, 1)
                         + struct.pack("<H", 19) + b"encoder/conv1/bias\0" + struct.pack("<BIBI", 1, 3, 0, 4)
                         + b"\0" * 4)
    else:
        path.write_bytes(content)
    prompt = workflow("talking_head")
    prompt["3"]["inputs"]["speech_encoder"] = name
    error = error_of(comfyui.wait(comfyui.queue(prompt)))
    assert error["node_type"] == "RESTModelLoader"
    assert message in error["exception_message"]


@pytest.mark.parametrize("rate", [1, 384_000])
def test_audio_at_a_rate_speech_is_never_recorded_at_is_refused_at_the_speech_encoder(comfyui, rate):
    """It used to pass our nodes and fail at the end in Save Video with a cryptic AAC error."""
    name = f"rest_fault_{rate}hz.wav"
    write_float_wav(comfyui.base / "input" / name, np.zeros(max(rate // 2, 8), dtype=np.float32) + 0.01, rate)
    prompt = workflow("long_audio")
    prompt["2"]["inputs"]["audio"] = name
    error = error_of(comfyui.wait(comfyui.queue(prompt)))
    assert error["node_type"] == "RESTSpeechEncoder"
    assert f"{rate} Hz is not a rate speech is recorded at" in error["exception_message"]


def test_a_portrait_larger_than_a_video_frame_is_refused_within_seconds(comfyui):
    """A 12000x12000 one-colour PNG (32 KB) through long_audio used to take the server from 1.3 to 17.5 GB, and an
    interrupt left it there. This one is 6100x6100 (37 MP, over the 35.7 MP limit) to keep core Load Image's own
    share small."""
    from PIL import Image

    Image.new("1", (6100, 6100), 1).save(comfyui.base / "input" / "rest_fault_huge.png")
    prompt = workflow("long_audio")
    prompt["1"]["inputs"]["image"] = "rest_fault_huge.png"
    started = time.monotonic()
    error = error_of(comfyui.wait(comfyui.queue(prompt)))
    assert error["node_type"] == "RESTReferenceEncoder"
    assert "image: 6100x6100 pixels (37 MP) is larger than REST takes (35.7 MP" in error["exception_message"]
    assert "scale the portrait down" in error["exception_message"]
    assert time.monotonic() - started < 60
    comfyui.run(workflow("long_audio"))  # and the next job runs


def test_a_tall_thin_portrait_is_described_width_by_height(comfyui):
    """A 3-wide, 5000-tall PNG used to read "image: 5000x3 pixels is too small"."""
    from PIL import Image

    Image.new("RGB", (3, 5000), (90, 60, 40)).save(comfyui.base / "input" / "rest_fault_thin.png")
    prompt = workflow("long_audio")
    prompt["1"]["inputs"]["image"] = "rest_fault_thin.png"
    error = error_of(comfyui.wait(comfyui.queue(prompt)))
    assert error["node_type"] == "RESTReferenceEncoder"
    assert "image: 3x5000 pixels (width x height) is too small" in error["exception_message"]


def test_a_megabyte_session_id_is_refused_when_queued_without_being_echoed(comfyui, pieces):
    """A 1 MB session_id used to be echoed whole in the error (1,048,763 characters) and in every history entry (with
    the failed node's inputs, which ComfyUI keeps): refused at /prompt, it never runs and never reaches the history."""
    with pytest.raises(AssertionError, match="POST /prompt -> 400") as refused:
        comfyui.queue(live("s" * 1_000_000, pieces[0]))
    message = str(refused.value)
    assert len(message) < 2000 and "at most 200" in message
    assert comfyui.run(live("after-the-long-id", pieces[0]))  # and the server goes on


def test_an_hour_of_speech_for_the_image_path_is_refused_before_it_is_encoded(comfyui):
    """An hour of speech into talking_head used to be encoded for minutes and then grow the server by gigabytes,
    frame after frame, with no refusal. The server here gives REST's frames 1 GiB (REST_MEMORY_LIMIT_GB)."""
    write_wav(comfyui.base / "input" / "rest_fault_1h.wav", torch.zeros(1, 3600 * 8000), 8000)
    prompt = workflow("talking_head")
    prompt["2"]["inputs"]["audio"] = "rest_fault_1h.wav"
    started = time.monotonic()
    error = error_of(comfyui.wait(comfyui.queue(prompt)))
    assert error["node_type"] == "RESTSpeechEncoder"
    assert "REST Streaming Sampler: 90000 frames of 64x64 pixels (60.0 minutes) held whole take about 12.4 GiB, " \
           "more than the 1.0 GiB free here; for long speech use REST Render Video (the long_audio workflow)" \
           in error["exception_message"]
    assert time.monotonic() - started < 60  # refused, not encoded (about 3 minutes here)


def test_speech_encoding_can_be_cancelled(comfyui):
    """REST Speech Encoder used to run to its end (5.7 s on 3 minutes of audio) whatever Cancel said."""
    g = torch.Generator().manual_seed(0)
    write_wav(comfyui.base / "input" / "rest_fault_3min.wav", torch.randn(1, 180 * 16_000, generator=g) * 0.1,
              16_000)
    prompt = workflow("long_audio")
    prompt["2"]["inputs"]["audio"] = "rest_fault_3min.wav"
    seen = len(comfyui.messages)
    prompt_id = comfyui.queue(prompt)
    comfyui.wait_for_progress(prompt_id, "5", seen, timeout=120)
    comfyui.post("/interrupt")
    entry = comfyui.wait(prompt_id)
    assert any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"]), entry["status"]
    progress = [m["data"] for m in comfyui.messages[seen:] if m.get("type") == "progress"
                and m["data"]["node"] == "5"]
    assert progress[-1]["value"] < progress[-1]["max"] == 180  # stopped part-way through the seconds


def test_an_idle_session_expires_and_its_id_says_so(tmp_path, tiny_checkpoint, speak):
    """After the idle expiry a piece used to start a new stream silently, first_frame 0."""
    import shutil

    from scripts.comfyui_server import ComfyServer

    server = ComfyServer(tmp_path)
    server.install()
    shutil.copy(tiny_checkpoint, server.base / "models" / "rest" / "rest-demo.safetensors")
    portrait(server.base / "input" / "rest_portrait.png")
    write_wav(server.base / "input" / "rest_piece.wav", *speak("Idle."))
    server.start(env={"REST_LIVE_IDLE_SECONDS": "3"})
    try:
        server.run(live("faults-idle", "rest_piece.wav"))
        time.sleep(4)
        error = error_of(server.wait(server.queue(live("faults-idle", "rest_piece.wav"))))
        assert "'faults-idle' was closed: it sat idle for more than 3 seconds" in error["exception_message"]
    finally:
        server.stop()
