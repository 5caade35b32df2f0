"""Files a training run writes, all safetensors (nothing here is ever unpickled).

- A *part* file holds one trained module (`vae`, `speech_ae` or `dit`) for the next stage: its tensors and, in the
  metadata, the part's name and the whole RESTConfig. `rest_core.train.export` joins parts into a checkpoint.
- A *state* file holds everything a run needs to resume: the module, its EMA, the optimizer's moments, and the
  step, optimizer hyper-parameters and run settings as JSON metadata. Batches are drawn from a generator seeded
  by (seed, step, rank), so a resumed run sees the same data it would have seen without the interruption.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ..checkpoint import load_tensors, read_safetensors
from ..config import RESTConfig

PART_FORMAT = "rest-part"
STATE_FORMAT = "rest-train-state"


def _atomic_save(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]):
    """Write next to the target, then rename: an interrupted save never leaves a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def save_part(path: str | Path, part: str, module: nn.Module, config: RESTConfig, **info):
    metadata = {"format": PART_FORMAT, "part": part, "config": config.to_json(), "info": json.dumps(info)}
    _atomic_save(dict(module.state_dict()), Path(path), metadata)


def load_part(path: str | Path, part: str, module_factory=None) -> tuple[nn.Module, RESTConfig]:
    """A part file -> (module with its weights, the config it was trained with). `module_factory(config)` builds
    the empty module; the default knows the three parts."""
    from ..dit import A2VDiT
    from ..speech_ae import SpeechAE
    from ..vae import CausalVAE

    def part_config(metadata: dict[str, str]) -> RESTConfig:
        if metadata.get("format") != PART_FORMAT or metadata.get("part") != part:
            found = metadata.get("part") or "not a training part"
            raise ValueError(f"{path}: expected a {part!r} part file, found {found!r}")
        return RESTConfig.from_json(metadata["config"])

    tensors, config = read_safetensors(path, f"{part} part written by an earlier training stage", part_config)
    factories = {"vae": lambda c: CausalVAE(c.vae), "speech_ae": SpeechAE.from_config, "dit": lambda c: A2VDiT(c.dit)}
    module = (module_factory or factories[part])(config)
    load_tensors(module, part, tensors, path)
    return module, config


def finish_part(path: str | Path, out: str | Path) -> Path:
    """A stage's part file -> its finished weights: the same tensors and metadata with every floating tensor in
    float16 (half the size, for committing to the folder the recipe continues from; the next stage loads them into
    float32 modules). Refuses anything but a part file."""
    def part_metadata(metadata: dict[str, str]) -> dict[str, str]:
        if metadata.get("format") != PART_FORMAT:
            raise ValueError(f"{path}: not a training part file (a run folder's <part>.safetensors)")
        return metadata

    tensors, metadata = read_safetensors(path, "part written by a training stage", part_metadata)
    half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}
    _atomic_save(half, Path(out), metadata)
    return Path(out)


def part_info(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("info", "{}"))


def save_state(path: str | Path, *, module: nn.Module, ema: nn.Module | None, optimizer: torch.optim.Optimizer,
               step: int, settings: dict):
    tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
    if ema is not None:
        tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    opt = optimizer.state_dict()
    for index, slots in opt["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{index}.{name}"] = value if isinstance(value, Tensor) else torch.tensor(value)
    metadata = {"format": STATE_FORMAT, "step": str(step), "param_groups": json.dumps(opt["param_groups"]),
                "settings": json.dumps(settings)}
    _atomic_save(tensors, Path(path), metadata)


def load_state(path: str | Path, *, module: nn.Module, ema: nn.Module | None,
               optimizer: torch.optim.Optimizer) -> tuple[int, dict]:
    """Restore a run in place; returns (step, settings it was saved with)."""
    path = Path(path)
    tensors, metadata = read_safetensors(path, "training state")
    if metadata.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a training state file; resume from the run folder's state.safetensors")

    def sub(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    try:
        module.load_state_dict(sub("model."))
        if ema is not None:
            ema.load_state_dict(sub("ema."))
    except RuntimeError as e:
        raise ValueError(f"{path}: the saved model does not match this run's model ({e}); start a new run folder "
                         f"or use the same config") from e
    state: dict[int, dict] = {}
    for key, value in sub("optim.").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    return int(metadata["step"]), json.loads(metadata["settings"])
