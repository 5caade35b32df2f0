"""Stand-ins for the ComfyUI modules the nodes import (folder_paths, comfy.utils, comfy.model_management,
comfy.model_patcher, comfy_api.input_impl, comfy_execution.graph_utils, server), with the real ones' signatures and
semantics: the progress hook is the cancel point, and an interrupt is raised from it as
InterruptProcessingException."""

from __future__ import annotations

import os
import sys
import tempfile
import types


class InterruptProcessingException(BaseException):  # newer ComfyUI: a BaseException, not caught by `except Exception`
    pass


class ComfyState:
    """What the stubs recorded, and the switch that interrupts the running job at its next progress update."""

    def __init__(self, models_dir: str):
        self.models_dir = models_dir
        self.progress: list[tuple] = []  # (node_id, value, total, preview)
        self.events: list[tuple] = []  # (event, data, sid)
        self.loaded: list = []
        self.empty_cache_calls = 0
        self.interrupt_after: int | None = None  # progress updates before the interrupt fires

    def reset(self):
        self.progress.clear()
        self.events.clear()
        self.loaded.clear()
        self.empty_cache_calls = 0
        self.interrupt_after = None


def install() -> ComfyState:
    state = ComfyState(tempfile.mkdtemp(prefix="comfy-models-"))

    folder_paths = types.ModuleType("folder_paths")
    folder_paths.models_dir = state.models_dir
    folder_paths.folder_names_and_paths = {
        "audio_encoders": ([os.path.join(state.models_dir, "audio_encoders")], {".safetensors", ".bin", ".pt"}),
        "vae": ([os.path.join(state.models_dir, "vae")], {".safetensors", ".pt", ".ckpt"}),
    }

    def add_model_folder_path(name, path, is_default=False):
        paths = folder_paths.folder_names_and_paths.setdefault(name, ([], set()))[0]
        if path not in paths:
            paths.insert(0, path) if is_default else paths.append(path)

    def get_filename_list(name):
        paths, extensions = folder_paths.folder_names_and_paths[name]
        found = []
        for base in paths:
            for root, _, files in os.walk(base):
                found += [os.path.relpath(os.path.join(root, f), base) for f in files
                          if not extensions or os.path.splitext(f)[1].lower() in extensions]
        return sorted(set(found))  # a name in two folders is listed once, as in ComfyUI

    def get_full_path(name, filename):
        for base in folder_paths.folder_names_and_paths.get(name, ([], set()))[0]:
            path = os.path.join(base, filename)
            if os.path.isfile(path):
                return path
        return None

    temp_dir = tempfile.mkdtemp(prefix="comfy-temp-")
    folder_paths.get_temp_directory = lambda: temp_dir
    folder_paths.add_model_folder_path = add_model_folder_path
    folder_paths.get_filename_list = get_filename_list
    folder_paths.get_full_path = get_full_path

    comfy = types.ModuleType("comfy")
    utils = types.ModuleType("comfy.utils")
    mm = types.ModuleType("comfy.model_management")
    patcher = types.ModuleType("comfy.model_patcher")

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total, self.current, self.node_id = total, 0, node_id

        def update_absolute(self, value, total=None, preview=None):
            if total is not None:
                self.total = total
            self.current = min(value, self.total)
            if state.interrupt_after is not None and len(state.progress) >= state.interrupt_after:
                state.interrupt_after = None
                raise InterruptProcessingException()
            state.progress.append((self.node_id, self.current, self.total, preview))

        def update(self, value):
            self.update_absolute(self.current + value)

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
            self.model, self.load_device, self.offload_device = model, load_device, offload_device

    import torch

    def soft_empty_cache(force=False):
        state.empty_cache_calls += 1

    utils.ProgressBar = ProgressBar
    mm.InterruptProcessingException = InterruptProcessingException
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.should_use_bf16 = lambda device=None, **kw: False
    mm.should_use_fp16 = lambda device=None, **kw: False
    mm.load_models_gpu = lambda models, **kw: state.loaded.append((models, kw))
    mm.soft_empty_cache = soft_empty_cache
    patcher.ModelPatcher = ModelPatcher
    comfy.utils, comfy.model_management, comfy.model_patcher = utils, mm, patcher

    comfy_api = types.ModuleType("comfy_api")
    input_impl = types.ModuleType("comfy_api.input_impl")

    class VideoFromFile:
        def __init__(self, file):
            self.file = file

        def get_stream_source(self):
            return self.file

    input_impl.VideoFromFile = VideoFromFile
    comfy_api.input_impl = input_impl

    execution = types.ModuleType("comfy_execution")
    graph_utils = types.ModuleType("comfy_execution.graph_utils")

    class ExecutionBlocker:
        def __init__(self, message):
            self.message = message

    graph_utils.ExecutionBlocker = ExecutionBlocker
    execution.graph_utils = graph_utils

    server = types.ModuleType("server")

    class PromptServer:
        instance = None
        client_id = "client-1"

        def send_sync(self, event, data, sid=None):
            state.events.append((event, data, sid))

    PromptServer.instance = PromptServer()
    server.PromptServer = PromptServer

    sys.modules.update({"folder_paths": folder_paths, "comfy": comfy, "comfy.utils": utils,
                        "comfy.model_management": mm, "comfy.model_patcher": patcher, "comfy_api": comfy_api,
                        "comfy_api.input_impl": input_impl, "comfy_execution": execution,
                        "comfy_execution.graph_utils": graph_utils, "server": server})
    return state
