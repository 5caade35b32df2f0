"""A training run's state file (safetensors; nothing here is ever unpickled; its part files are
`rest_core.checkpoint`'s).

- A *state* file holds everything a run needs to resume: the module, its EMA, the optimizer's moments, and the
  step, optimizer hyper-parameters and run settings as JSON metadata. Batches are drawn from a generator seeded
  by (seed, step, rank), so a resumed run sees the same data it would have seen without the interruption.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import atomic_save, read_safetensors

STATE_FORMAT = "rest-train-state"


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
    atomic_save(tensors, Path(path), metadata)


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
