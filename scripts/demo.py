"""The main job: a real ComfyUI with this plugin runs the example workflow (workflows/api/talking_head.json) through
its API on a portrait and a spoken sentence, with the shipped demo model, and the path of the mp4 is printed.

    make demo          (sets up the environment first; or, inside it: python scripts/demo.py)

The inputs are made here, deterministically: the portrait is a public-domain photograph the model never trained on
(astronaut Eileen Collins, NASA; from scikit-image's wheel, rest_core/data/images.py), cut to the square that frames
her face as the training clips frame theirs; the sentence is spoken by espeak-ng. Pass --image / --audio to use your
own files instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.comfyui_server import ComfyServer  # noqa: E402

DEMO_PHOTO = "astronaut"
SENTENCE = "Hello! I am the REST demo model. I turn speech into a talking head, one chunk at a time, in real time."
MODEL = ROOT / "models" / "rest-demo.safetensors"


def make_portrait(path: Path):
    from PIL import Image

    from rest_core.data.images import photo
    from rest_core.eval.evaluate import photo_square

    square = photo_square(DEMO_PHOTO)
    pixels = photo(DEMO_PHOTO)[square.top:square.top + square.size, square.left:square.left + square.size]
    Image.fromarray(pixels).save(path)


def make_speech(path: Path, text: str):
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed: run `make demo` (it installs it) or apt-get install espeak-ng")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", type=Path, default=None, help="your own portrait (default: a public-domain photograph)")
    p.add_argument("--audio", type=Path, default=None, help="your own speech (default: espeak-ng says a sentence)")
    p.add_argument("--text", default=SENTENCE, help="what espeak-ng says when no --audio is given")
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "demo-comfyui",
                   help="where ComfyUI is installed and run (kept between runs)")
    args = p.parse_args()
    if not MODEL.is_file():
        raise SystemExit(f"{MODEL} is missing: the demo model ships with the repository; check out the whole "
                         f"repository, or train it with `make train-demo`")

    server = ComfyServer(args.workdir)
    if not server.app.exists():
        print(f"installing ComfyUI 0.3.75 into {args.workdir}", file=sys.stderr)
        server.install()
    inputs = server.base / "input"
    portrait, speech = inputs / "rest_portrait.png", inputs / "rest_speech.wav"
    if args.image:
        shutil.copy(args.image, portrait)
    else:
        make_portrait(portrait)
    if args.audio:
        shutil.copy(args.audio, speech)
    else:
        make_speech(speech, args.text)

    workflow = json.loads((ROOT / "workflows" / "api" / "talking_head.json").read_text())
    print(f"starting ComfyUI (log: {server.root / 'server.log'})", file=sys.stderr)
    server.start()
    try:
        print("queueing workflows/api/talking_head.json", file=sys.stderr)
        entry = server.run(workflow, timeout=1800)
        save = next(k for k, node in workflow.items() if node["class_type"] == "SaveVideo")
        video = server.output_file(entry, save)
    finally:
        server.stop()
    print(video.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
