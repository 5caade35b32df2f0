"""The training loop every stage shares: settings, one process or many (`torchrun`, DDP), AdamW with warmup and
cosine decay, EMA weights, gradient clipping, bfloat16 autocast where asked, a progress line with the losses and
speed, `losses.csv` with its PNG plot, and a resumable state file.

A stage supplies two functions: `batch(step, generator)` draws its data (the generator is seeded by seed, step
and rank, so a resumed or re-run job sees the same batches) and `losses(module, batch)` returns a dict of scalar
losses whose "loss" entry is optimised. The module is called through DDP's wrapper, so gradients are averaged
across processes exactly when torchrun starts more than one.

A run folder holds:  state.safetensors (resume), <part>.safetensors (the EMA weights, for the next stage),
losses.csv, losses.png.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import sys
import time
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..checkpoint import save_part
from ..config import RESTConfig
from ..precision import resolve_device
from .plot import plot_losses
from .state import load_state, save_state


# "bfloat16" runs the forward passes under autocast. With its blocks compiled a rest-demo DiT step at 256x256 takes
# two thirds of the float32 time on a CPU with AMX-BF16. Not for the VAE on the CPU: bfloat16 Conv3d weight gradients
# there come out NaN for some shapes (torch 2.11).
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Settings:
    steps: int = 1000
    batch: int = 8  # per process
    lr: float = 3e-4
    warmup: int = 100  # steps of linear learning-rate warmup
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema: float = 0.999  # EMA decay (ramped up from 0 over the first steps); 0 turns EMA off
    checkpoint_every: int = 250
    seed: int = 0
    threads: int = 0  # CPU threads per process; 0 keeps torch's default
    precision: str = "float32"  # "bfloat16": forward passes under autocast (weights, EMA, optimizer stay float32)
    options: dict = field(default_factory=dict)  # the stage's own settings ([<stage>] table of the config file)


def read_settings(path: str | Path | None, stage: str, **overrides) -> tuple[Settings, RESTConfig]:
    """A stage's TOML config -> (Settings, model config). The model is `preset = "<name>"` or a [model] table
    (RESTConfig fields, for custom sizes). Overrides that are None are ignored."""
    data = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path} not found: give a training config (see configs/)")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML ({e})") from e
    tables = {"preset", "model", "train", stage}
    stray = sorted(set(data) - tables)
    if stray:  # a misspelt table would otherwise be dropped and the run would use its defaults
        raise ValueError(f"{path}: unknown entry {stray[0]!r}; a {stage} config has preset = \"<name>\" or a "
                         f"[model] table, a [train] table and a [{stage}] table")
    known = {f.name for f in fields(Settings)} - {"options"}
    train = data.get("train", {})
    unknown = sorted(set(train) - known)
    if unknown:
        raise ValueError(f"{path}: unknown [train] setting {unknown[0]!r}; known: {sorted(known)}")
    settings = Settings(**train, options=dict(data.get(stage, {})))
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if settings.steps < 1 or settings.batch < 1:
        raise ValueError(f"steps={settings.steps} and batch={settings.batch} must be >= 1")
    if settings.precision not in PRECISIONS:
        raise ValueError(f"precision={settings.precision!r}: choose one of {sorted(PRECISIONS)}")
    if "model" in data and "preset" in data:
        raise ValueError(f"{path}: give either preset = \"<name>\" or a [model] table, not both")
    try:
        config = RESTConfig.from_dict(data["model"]) if "model" in data else RESTConfig.preset(
            data.get("preset", "rest-demo"))
    except TypeError as e:
        raise ValueError(f"{path}: the [model] table is not a REST config ({e})") from e
    return settings, config


Options = TypeVar("Options")


def stage_options(kind: type[Options], table: dict, stage: str) -> Options:
    """A stage's [<stage>] table as its typed options dataclass: an unknown key (a typo) or a value of another type
    is a ValueError naming it and what is known."""
    hints = typing.get_type_hints(kind)
    unknown = sorted(set(table) - set(hints))
    if unknown:
        raise ValueError(f"unknown [{stage}] setting {unknown[0]!r}; known: {sorted(hints)}")
    values = {}
    for name, value in table.items():
        allowed = typing.get_args(hints[name]) if isinstance(hints[name], types.UnionType) else (hints[name],)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # TOML writes 1.0 as 1 as readily
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            names = " or ".join("none" if t is type(None) else t.__name__ for t in allowed)
            raise ValueError(f"[{stage}] {name} = {value!r}: expected {names}")
        values[name] = value
    return kind(**values)


# --- processes -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_processes(device: str) -> Processes:
    """One process, or the group torchrun started (WORLD_SIZE > 1): NCCL on GPUs, Gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(device)
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    device = torch.device(device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # NCCL needs each process on its own GPU
    return Processes(rank, world, device)


def stop_processes():
    if dist.is_initialized():
        dist.destroy_process_group()


# --- the loop ------------------------------------------------------------------------------------------------

class LossModule(nn.Module):
    """Puts the stage's loss inside forward(), which is what DDP hooks into."""

    def __init__(self, module: nn.Module, losses: Callable):
        super().__init__()
        self.module, self.losses = module, losses

    def forward(self, batch) -> dict[str, Tensor]:
        return self.losses(self.module, batch)


def learning_rate(settings: Settings, step: int) -> float:
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return settings.lr * (settings.min_lr_ratio + (1 - settings.min_lr_ratio) * cosine)


@torch.no_grad()
def update_ema(ema: nn.Module, module: nn.Module, decay: float, step: int):
    decay = min(decay, (1 + step) / (10 + step))  # early on, follow the weights closely
    for e, p in zip(ema.parameters(), module.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), module.buffers()):
        e.copy_(b)


class Progress:
    """One line on stderr, rewritten: step, losses (running means), steps/s and time left."""

    def __init__(self, stage: str, total: int, first: int):
        self.stage, self.total, self.first = stage, total, first
        self.started = time.perf_counter()
        self.sums: dict[str, float] = {}
        self.count = 0

    def update(self, step: int, losses: dict[str, float], lr: float):
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        done = step + 1 - self.first
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        left = (self.total - step - 1) / rate
        terms = "  ".join(f"{k} {v / self.count:.4g}" for k, v in self.sums.items())
        sys.stderr.write(f"\r[{self.stage}] step {step + 1}/{self.total}  {terms}  lr {lr:.2e}  "
                         f"{rate:.2f} it/s  {left / 60:.1f} min left ")
        sys.stderr.flush()

    def reset(self):
        self.sums, self.count = {}, 0
        sys.stderr.write("\n")


@dataclass
class Stage:
    """What a stage hands the loop: the module it trains, for which part file, and its hooks.

    `finish(module)` runs on the main process before the part file is written (e.g. to set the VAE's latent
    statistics). `before_step(step, module, ema, optimizer)` runs before each step on every process, resumed or not,
    so a change made at a given step (e.g. the VAE's switch from images to clips) happens exactly once. `info()`,
    called after `finish`, adds to what the part file's metadata says of the run (e.g. a validation result).
    `params`: what the optimizer trains (default: every parameter that requires a gradient), or its parameter groups,
    each {"params": [...], "lr_scale": x}: that group's learning rate is the stage's times x."""

    name: str
    part: str
    module: nn.Module
    config: RESTConfig  # written into the part file (the mouth expert's own config for its stage)
    batch: Callable[[int, torch.Generator], object]
    losses: Callable[[nn.Module, object], dict[str, Tensor]]
    finish: Callable[[nn.Module], None] | None = None
    params: list[nn.Parameter] | list[dict] | None = None
    before_step: Callable[[int, nn.Module, nn.Module | None, torch.optim.Optimizer], None] | None = None
    info: Callable[[], dict] | None = None


def train(stage: Stage, settings: Settings, out: str | Path, procs: Processes) -> nn.Module:
    """Run (or resume) a stage and return the EMA module (or the module, with EMA off)."""
    module, config, batch, before_step = stage.module, stage.config, stage.batch, stage.before_step
    out = Path(out)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    module = module.to(procs.device).train()
    ema = copy.deepcopy(module).eval().requires_grad_(False) if settings.ema > 0 else None
    trainable = stage.params if stage.params is not None else [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.99))
    trainable = [p for group in optimizer.param_groups for p in group["params"]]

    step = 0
    state_path = out / "state.safetensors"
    if state_path.exists():
        step, _ = load_state(state_path, module=module, ema=ema, optimizer=optimizer)
        if procs.main:
            truncate_log(out / "losses.csv", step)
            sys.stderr.write(f"[{stage.name}] resuming {out} at step {step}\n")
    wrapped = LossModule(module, stage.losses)
    if procs.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[procs.device.index] if procs.device.type == "cuda" else None)

    log = out / "losses.csv"
    progress = Progress(stage.name, settings.steps, step) if procs.main else None
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
    while step < settings.steps:
        if before_step is not None:
            before_step(step, module, ema, optimizer)
        lr = learning_rate(settings, step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + step * procs.world + procs.rank)
        started = time.perf_counter()
        inputs = batch(step, generator)
        with torch.autocast(procs.device.type, dtype=PRECISIONS[settings.precision],
                            enabled=settings.precision != "float32"):
            terms = wrapped(inputs)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable, settings.grad_clip)
        optimizer.step()
        if ema is not None:
            update_ema(ema, module, settings.ema, step)
        step += 1
        if procs.main:
            values = {k: v.item() for k, v in terms.items()}
            if not math.isfinite(values["loss"]):
                raise ValueError(f"[{stage.name}] the loss became {values['loss']} at step {step}; lower the learning "
                                 f"rate (--lr) and resume from the last state")
            write_row(log, step, values, lr, time.perf_counter() - started)
            progress.update(step - 1, values, lr)
            if step % settings.checkpoint_every == 0 or step == settings.steps:
                save_state(state_path, module=module, ema=ema, optimizer=optimizer, step=step,
                           settings=asdict(settings))
                plot_losses(log, out / "losses.png", title=f"{stage.name} ({config.name})")
                progress.reset()
    result = ema if ema is not None else module
    if procs.main:
        if stage.finish is not None:
            stage.finish(result)
        save_part(out / f"{stage.part}.safetensors", stage.part, result, config, stage=stage.name, steps=step,
                  settings=asdict(settings), world=procs.world, **(stage.info() if stage.info is not None else {}))
    if procs.world > 1:
        dist.barrier()
    return result


def truncate_log(path: Path, step: int):
    """Drop the rows logged after the state being resumed from; those steps run again."""
    if path.exists():
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if int(r[0]) <= step]
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(kept)


def write_row(path: Path, step: int, values: dict[str, float], lr: float, seconds: float):
    """Append a row. A term that was not logged before (a loss that starts part-way, e.g. the VAE's missed_motion term
    once its clip steps begin) gets a column: the file is rewritten once with that column empty above. Otherwise only
    its header line is read: a step costs the same however long the log is."""
    row = {"step": step, **{k: f"{v:.6g}" for k, v in values.items()}, "lr": f"{lr:.4g}", "seconds": f"{seconds:.4f}"}
    header = None
    if path.exists():
        with path.open(newline="") as f:
            header = next(csv.reader(f), None)
    if header is None or not set(row) <= set(header):
        old = []
        if header:
            with path.open(newline="") as f:
                old = [dict(zip(header, r)) for r in list(csv.reader(f))[1:]]
        known = [k for k in (header or []) if k not in ("lr", "seconds")]
        header = known + [k for k in row if k not in known and k not in ("lr", "seconds")] + ["lr", "seconds"]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, header, restval="")
            w.writeheader()
            w.writerows(old)
    with path.open("a", newline="") as f:
        csv.DictWriter(f, header, restval="").writerow(row)
