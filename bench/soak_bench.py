"""Soak: many mixed jobs in a row on one real ComfyUI, as a busy artist's or API client's day looks.

    python bench/soak_bench.py                      # the shipped demo model, 50 jobs
    python bench/soak_bench.py --jobs 20

First, on the fresh server, one long_audio job on a 4000x3000 portrait (1 s of speech): its peak and what it leaves
resident. Then the mix, in a fixed order: good jobs (talking_head and long_audio, two seeds each, alternating so
ComfyUI's cache never answers for them), bad ones (NaN guidance, NaN audio, an unreadable checkpoint, a config of
absurd size, audio at 384 kHz, empty audio, a 12000x12000 portrait, an hour of speech for the IMAGE path, a weight
stored as bool, an 8192-wide bundled speech encoder), cancelled ones (long_audio stopped mid-stream) and live pieces
from three interleaved sessions. Checked: the server stays up; every good job's frames equal those of its first run
(same seed, same frames); the three live sessions, fed the same pieces, stream the same frames; every bad job is a
node error. Reported: RSS after the first good job, after the run, and the difference (it should stay under 200 MB);
each good workflow's median and slowest time (a good job that takes many times its median after a hostile one would
show there).

Prints one JSON line per job and a summary line.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.comfyui_server import ComfyServer  # noqa: E402

SENTENCES = ["The boats came home slowly as the light changed over the harbour.",
             "Nobody on the quay said much; they counted the nets and waited for the rain."]


def workflow(name: str) -> dict:
    return json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text())


def status_mb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024)
    raise KeyError(field)


def speak(path: Path, text: str) -> Path:
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    return path


def float_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    data = samples.astype("<f4").tobytes()
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
                     + struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32) + b"data" + struct.pack("<I", len(data))
                     + data)
    return path


def split_wav(source: Path, parts: int, folder: Path, stem: str) -> list[str]:
    with wave.open(str(source)) as f:
        rate, width, channels = f.getframerate(), f.getsampwidth(), f.getnchannels()
        frames = f.readframes(f.getnframes())
    step = -(-len(frames) // (parts * width * channels)) * width * channels
    names = []
    for i in range(parts):
        names.append(f"{stem}_{i}.wav")
        with wave.open(str(folder / names[-1]), "wb") as out:
            out.setnchannels(channels)
            out.setsampwidth(width)
            out.setframerate(rate)
            out.writeframes(frames[i * step:(i + 1) * step])
    return names


def portrait(path: Path, width: int, height: int) -> Path:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (width, height), (60, 80, 110))
    d = ImageDraw.Draw(im)
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    d.ellipse((x0 + side * 0.2, y0 + side * 0.15, x0 + side * 0.8, y0 + side * 0.9), fill=(225, 185, 150))
    d.rectangle((x0 + side * 0.4, y0 + side * 0.65, x0 + side * 0.6, y0 + side * 0.7), fill=(140, 50, 60))
    im.save(path)
    return path


def video_frames(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").tobytes() for f in container.decode(video=0)]


# each bad job: (workflow, node, input, value) set on the unchanged workflow; input None replaces the whole node
BAD_JOBS = {
    "nan cfg": ("talking_head", "6", "cfg", math.nan),
    "nan audio": ("talking_head", "2", "audio", "soak_nan.wav"),
    "broken checkpoint": ("talking_head", "3", "checkpoint", "soak_broken.safetensors"),
    "absurd config": ("talking_head", "3", "checkpoint", "soak_absurd.safetensors"),
    "384 kHz audio": ("talking_head", "2", "audio", "soak_384k.wav"),
    "empty audio": ("talking_head", "2", None,
                    {"class_type": "EmptyAudio", "inputs": {"duration": 0.0, "sample_rate": 16_000, "channels": 1}}),
    "huge portrait": ("long_audio", "1", "image", "soak_12000.png"),
    "hour of speech": ("talking_head", "2", "audio", "soak_hour.wav"),
    "bool weight": ("talking_head", "3", "checkpoint", "soak_bool.safetensors"),
    "wide speech encoder": ("talking_head", "3", "checkpoint", "soak_wide_whisper.safetensors"),
}


class Soak:
    def __init__(self, server: ComfyServer):
        self.server = server
        self.first_frames: dict[str, list[bytes]] = {}
        self.live_frames: dict[str, list[str]] = {}
        self.failures: list[str] = []

    def good(self, name: str, seed: int) -> dict:
        prompt = workflow(name)
        prompt["6"]["inputs"]["seed"] = seed
        entry = self.server.run(prompt, timeout=1800)
        frames = video_frames(self.server.output_file(entry, "9"))
        key = f"{name}/seed {seed}"
        exact = self.first_frames.setdefault(key, frames) == frames
        if not exact:
            self.failures.append(f"{key}: frames differ from its first run")
        return {"exact": exact, "frames": len(frames)}

    def bad(self, what: str) -> dict:
        name, node, key, value = BAD_JOBS[what]
        prompt = workflow(name)
        if key is None:
            prompt[node] = value
        else:
            prompt[node]["inputs"][key] = value
        entry = self.server.wait(self.server.queue(prompt), timeout=600)
        errors = [m for kind, m in entry["status"]["messages"] if kind == "execution_error"]
        if entry["status"]["status_str"] != "error" or not errors or not errors[0]["node_type"].startswith("REST"):
            self.failures.append(f"bad job {what!r} was not refused by a REST node: {entry['status']}")
        return {"error": errors[0]["exception_message"][:120] if errors else None}

    def cancelled(self, seed: int) -> dict:
        prompt = workflow("long_audio")
        prompt["6"]["inputs"]["seed"] = seed
        seen = len(self.server.messages)
        prompt_id = self.server.queue(prompt)
        self.server.wait_for_progress(prompt_id, "6", seen, timeout=600)
        self.server.post("/interrupt")
        entry = self.server.wait(prompt_id, timeout=600)
        interrupted = any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"])
        if not interrupted:
            self.failures.append(f"cancelled job (seed {seed}) was not interrupted: {entry['status']}")
        return {"interrupted": interrupted}

    def live(self, session: str, piece: str, end: bool) -> dict:
        prompt = workflow("live_session")
        prompt["2"]["inputs"]["audio"] = piece
        prompt["5"]["inputs"] |= {"session_id": session, "end_of_stream": end}
        report = self.server.run(prompt, timeout=600)["outputs"]["5"]["rest_live"][0]
        frames = [f for c in self.server.events("rest.chunk") if c["stream"] == report["stream"]
                  for f in c["frames"]]
        self.live_frames[session] = frames
        return {"frames_so_far": report["frames_so_far"]}


def schedule(jobs: int) -> list[tuple]:
    """A fixed mix: per round of 25, 8 good, 6 bad, 2 cancelled, 9 live pieces (3 sessions x 3, interleaved); the
    bad ones take turns through the list, 6 a round."""
    bad = ["nan cfg", "huge portrait", "nan audio", "hour of speech", "broken checkpoint", "bool weight",
           "absurd config", "wide speech encoder", "384 kHz audio", "empty audio"]
    bad = bad * (jobs // 25 + 1)
    out, round_ = [], 0
    while len(out) < jobs:
        sessions = [f"soak-{round_}-{k}" for k in range(3)]
        block = [("good", "talking_head", 0), ("bad", bad[0]), ("live", sessions[0], 0), ("good", "long_audio", 0),
                 ("live", sessions[1], 0), ("bad", bad[1]), ("good", "talking_head", 1), ("live", sessions[2], 0),
                 ("cancel", 5), ("live", sessions[0], 1), ("good", "long_audio", 1), ("bad", bad[2]),
                 ("live", sessions[1], 1), ("good", "talking_head", 0), ("live", sessions[2], 1), ("bad", bad[3]),
                 ("cancel", 6), ("good", "long_audio", 0), ("live", sessions[0], 2), ("bad", bad[4]),
                 ("live", sessions[1], 2), ("good", "talking_head", 1), ("live", sessions[2], 2), ("bad", bad[5]),
                 ("good", "long_audio", 1)]
        out += block
        bad = bad[6:]
        round_ += 1
    return out[:jobs]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "rest-demo.safetensors")
    p.add_argument("--jobs", type=int, default=50)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        server = ComfyServer(Path(tmp))
        server.install()
        models, inputs = server.base / "models" / "rest", server.base / "input"
        (models / "rest-demo.safetensors").symlink_to(args.checkpoint.resolve())
        (models / "soak_broken.safetensors").write_bytes(b"\0" * 256)
        rewritten(args.checkpoint, models / "soak_absurd.safetensors", absurd)
        rewritten(args.checkpoint, models / "soak_bool.safetensors", bool_weight)
        rewritten(args.checkpoint, models / "soak_wide_whisper.safetensors", wide_whisper)
        Image.new("1", (12000, 12000), 1).save(inputs / "soak_12000.png")  # 32 KB, 144 MP
        with wave.open(str(inputs / "soak_hour.wav"), "wb") as hour:
            hour.setnchannels(1)
            hour.setsampwidth(2)
            hour.setframerate(8000)
            hour.writeframes(bytes(2 * 8000 * 3600))
        portrait(inputs / "rest_portrait.png", 159, 159)
        portrait(inputs / "soak_huge.png", 4000, 3000)
        speak(inputs / "rest_speech.wav", SENTENCES[0])
        speak(inputs / "rest_speech_long.wav", " ".join(SENTENCES))
        speak(inputs / "soak_one_second.wav", "Hello.")
        float_wav(inputs / "soak_nan.wav", np.full(8000, np.nan), 16_000)
        float_wav(inputs / "soak_384k.wav", np.zeros(192_000) + 0.01, 384_000)
        pieces = split_wav(speak(inputs / "soak_live.wav", SENTENCES[1]), 3, inputs, "soak_live")
        server.start()
        pid = server.process.pid
        try:
            soak = Soak(server)
            idle = status_mb(pid, "VmRSS")
            huge = workflow("long_audio")
            huge["1"]["inputs"]["image"], huge["2"]["inputs"]["audio"] = "soak_huge.png", "soak_one_second.wav"
            started = time.perf_counter()
            server.run(huge, timeout=1800)
            print(json.dumps({"bench": "soak", "job": "long_audio 4000x3000, 1 s", "idle_mb": idle,
                              "peak_mb": status_mb(pid, "VmHWM"), "after_mb": status_mb(pid, "VmRSS"),
                              "seconds": round(time.perf_counter() - started, 1)}), flush=True)
            after_first_good = None
            good_seconds: dict[str, list[float]] = {}
            for n, job in enumerate(schedule(args.jobs)):
                started = time.perf_counter()
                kind = job[0]
                if kind == "good":
                    result = soak.good(job[1], job[2])
                elif kind == "bad":
                    result = soak.bad(job[1])
                elif kind == "cancel":
                    result = soak.cancelled(job[1])
                else:
                    result = soak.live(job[1], pieces[job[2]], end=job[2] == len(pieces) - 1)
                if server.process.poll() is not None:
                    raise RuntimeError(f"the server died at job {n}: {server.log_text()}")
                rss = status_mb(pid, "VmRSS")
                if kind == "good" and after_first_good is None:
                    after_first_good = rss
                seconds = time.perf_counter() - started
                if kind == "good":
                    good_seconds.setdefault(job[1], []).append(seconds)
                print(json.dumps({"bench": "soak", "n": n, "job": " ".join(map(str, job)), **result, "rss_mb": rss,
                                  "seconds": round(seconds, 1)}), flush=True)
            streams = {}
            for session, frames in soak.live_frames.items():
                streams.setdefault(tuple(frames), []).append(session)
            if len(streams) != 1:
                soak.failures.append(f"the live sessions streamed {len(streams)} different videos for the same pieces")
            final = status_mb(pid, "VmRSS")
            print(json.dumps({"bench": "soak", "jobs": args.jobs, "server_up": server.process.poll() is None,
                              "rss_after_first_good_mb": after_first_good, "rss_after_run_mb": final,
                              "growth_mb": final - after_first_good, "peak_mb": status_mb(pid, "VmHWM"),
                              "good_seconds": {name: {"median": round(float(np.median(t)), 1),
                                                      "slowest": round(max(t), 1)}
                                               for name, t in good_seconds.items()},
                              "failures": soak.failures}))
        finally:
            server.stop()


def rewritten(source: Path, path: Path, change):
    """The checkpoint with change(tensors, config, torch) applied: a hostile file that looks like ours."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(metadata["config"])
    change(tensors, config, torch)
    save_file(tensors, str(path), metadata=metadata | {"config": json.dumps(config)})


def absurd(tensors, config, torch):
    config["dit"]["hidden"] = 1_000_000  # a 1,000,000-wide DiT


def bool_weight(tensors, config, torch):
    tensors["dit.proj_out.weight"] = torch.zeros_like(tensors["dit.proj_out.weight"], dtype=torch.bool)


def wide_whisper(tensors, config, torch):
    """A bundled speech encoder 8192 wide: 38 MB on disk, gigabytes if it were built."""
    tensors["whisper.conv1.weight"] = torch.zeros(8192, 80, 3, dtype=torch.float16)
    tensors["whisper.blocks.0.attn_ln.weight"] = torch.zeros(8192, dtype=torch.float16)


if __name__ == "__main__":
    main()
