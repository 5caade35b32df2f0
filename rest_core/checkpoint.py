"""Reading and checking the safetensors files REST writes: checkpoints and training part files (nothing is ever
unpickled).

A checkpoint is one `.safetensors` file: the parts' tensors under `dit.`, `vae.`, `speech_ae.` (and `whisper.` when
the speech encoder is bundled), the config as JSON in the metadata. Its config is read and checked, sizes and free
memory included, before any tensor is.

A checkpoint may also store a part as the weights it was fine-tuned from plus the change: `delta.<part>.<key>` (the
change of one tensor, its shape) or `delta.<part>.<key>.up` [out, r] and `.down` [r, in] (a rank-r change of a
matrix, up @ down). Loading adds them to `<part>.<key>`. Why: the model ships in git, where a fine-tune that moves
every weight stores the whole part again, while a low-rank fine-tune's change is a few percent of it
(`weight_deltas`; docs/TRAINING.md, "The context's noise").

A *part* file holds one trained module (`vae`, `speech_ae` or `dit`) for the next training stage or for
evaluation: its tensors and, in the metadata, the part's name and the whole RESTConfig. `rest_core.train.export`
joins parts into a checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from .config import RESTConfig

CHECKPOINT_FORMAT = "rest"
CHECKPOINT_VERSION = "1"
PART_FORMAT = "rest-part"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # a model's parts, by name
WEIGHT_DTYPES = ("F32", "F16", "BF16")  # what a weights file may store, as the safetensors header names them

Header = dict[str, tuple[str, list[int]]]  # tensor name -> (dtype, shape), as a safetensors header gives them


def read_safetensors(path: str | Path, what: str, read_metadata: Callable[[dict[str, str]], object] = dict,
                     check_header: Callable[[object, Header], None] | None = None):
    """(tensors, read_metadata(metadata)) of a safetensors file. `read_metadata`, then `check_header(its result,
    every tensor's dtype and shape)`, run before any tensor is read, so either can refuse the file (a ValueError)
    before anything large is loaded. `what` names the file in the errors ("REST checkpoint", "vae part", ...)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} not found: give the {what} (.safetensors)")
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: the {what} must be a .safetensors file; other formats are never loaded")
    try:
        with safe_open(str(path), framework="pt") as f:
            found = read_metadata(f.metadata() or {})
            if check_header is not None:
                slices = {k: f.get_slice(k) for k in f.keys()}
                check_header(found, {k: (v.get_dtype(), list(v.get_shape())) for k, v in slices.items()})
            return {k: f.get_tensor(k) for k in f.keys()}, found
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); write or download it again") from e


def check_weights(path: str | Path, header: Header, expected: dict[str, list[int]]):
    """Every tensor in a weights file's header is one `expected` names, of its shape, stored as float32, float16 or
    bfloat16, and none is missing: what a file holds is checked before any of it is read."""
    for key, (dtype, shape) in header.items():
        if key not in expected:
            raise ValueError(f"{path}: unexpected tensor {key}; the file does not match its config")
        if dtype not in WEIGHT_DTYPES:
            raise ValueError(f"{path}: tensor {key} is stored as {dtype}; weights are float32, float16 or bfloat16: "
                             f"this file was not written by REST or was altered, so write or download it again")
        if shape != expected[key]:
            raise ValueError(f"{path}: tensor {key} has shape {shape}, its config needs {expected[key]}")
    missing = sorted(set(expected) - set(header))
    if missing:
        raise ValueError(f"{path}: tensor {missing[0]} is missing; the file does not match its config")


def shapes(module: nn.Module, prefix: str = "") -> dict[str, list[int]]:
    """The shape of every tensor of `module`'s state dict, names under `prefix.` when one is given."""
    return {(f"{prefix}.{k}" if prefix else k): list(v.shape) for k, v in module.state_dict().items()}


def prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors under `prefix.`, with the prefix taken off their names."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_tensors(module: nn.Module, name: str, state: dict[str, Tensor], path: str | Path):
    """Load `state` into `module` (part `name` of the file at `path`), every tensor present and of its shape, none
    left over; each tensor is cast to the module's dtype."""
    expected = module.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise ValueError(f"{path}: tensor {name}.{key} is missing; the file does not match its config")
        if state[key].shape != value.shape:
            raise ValueError(f"{path}: tensor {name}.{key} has shape {list(state[key].shape)}, its config needs "
                             f"{list(value.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ValueError(f"{path}: unexpected tensor {name}.{extra[0]}; the file does not match its config")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


DELTA_PREFIX = "delta"
LOW_RANK_SHARE = 0.5  # a change is stored as factors where they take at most this share of the matrix's numbers
RANK_TOLERANCE = 1e-4  # singular values below this share of the largest are rounding, not rank


def weight_deltas(base: dict[str, Tensor], new: dict[str, Tensor]) -> dict[str, Tensor]:
    """How `new` differs from `base` (state dicts of one module), as few numbers as hold it: nothing for a tensor
    that did not change, `<key>.up` / `<key>.down` for a matrix whose change has a low rank (a low-rank fine-tune's,
    found from its singular values), else `<key>`, the whole change. float32."""
    deltas = {}
    for key, value in new.items():
        change = value.float() - base[key].float()
        if not change.any():
            continue
        if change.dim() == 2:
            u, s, vh = torch.linalg.svd(change, full_matrices=False)
            rank = int((s > RANK_TOLERANCE * s[0]).sum())
            if rank * sum(change.shape) <= LOW_RANK_SHARE * change.numel():
                deltas[f"{key}.up"] = u[:, :rank] * s[:rank]  # [out, r]
                deltas[f"{key}.down"] = vh[:rank]  # [r, in]
                continue
        deltas[key] = change
    return deltas


def delta_shapes(header: Header, part: str, expected: dict[str, list[int]]) -> dict[str, list[int]]:
    """The shapes the `delta.<part>.` tensors of a checkpoint's header must have, from the part's `expected` shapes
    (names without the part's prefix): a whole change has its tensor's shape; factors have their matrix's rows and
    columns and the rank their `up` gives, below both. (A name that fits neither is left to `check_weights`.)"""
    prefix = f"{DELTA_PREFIX}.{part}."
    found = {}
    for name in header:
        if not name.startswith(prefix):
            continue
        key = name[len(prefix):]
        if key in expected:
            found[name] = expected[key]
            continue
        matrix, _, factor = key.rpartition(".")
        if factor not in ("up", "down") or len(expected.get(matrix, [])) != 2:
            continue
        rows, cols = expected[matrix]
        up = header.get(f"{prefix}{matrix}.up", (None, []))[1]
        rank = up[1] if len(up) == 2 else 0
        if not 0 < rank < min(rows, cols) or f"{prefix}{matrix}.down" not in header:
            raise ValueError(f"{name}: a low-rank change of {part}.{matrix} needs both factors, up [{rows}, r] and "
                             f"down [r, {cols}] with r below {min(rows, cols)}; the file was altered, so write or "
                             f"download it again")
        found[name] = [rows, rank] if factor == "up" else [rank, cols]
    return found


def with_deltas(state: dict[str, Tensor], deltas: dict[str, Tensor]) -> dict[str, Tensor]:
    """A part's stored weights plus its stored changes (`weight_deltas`, names without the part's prefix), float32
    where a change applies."""
    state = dict(state)
    for key, change in deltas.items():
        if key not in state:  # a factor: its pair is added with the `up`
            if not key.endswith(".up"):
                continue
            key = key[:-len(".up")]
            change = change.float() @ deltas[key + ".down"].float()
        state[key] = state[key].float() + change.float()
    return state


def checkpoint_config(path: str | Path, metadata: dict[str, str]) -> RESTConfig:
    """The REST config in a checkpoint's metadata, checked (sizes included) before anything is built from it."""
    if metadata.get("format") != CHECKPOINT_FORMAT or "config" not in metadata:
        raise ValueError(f"{path} is a safetensors file but not a REST checkpoint (no REST config in its metadata)")
    if metadata.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {metadata.get('format_version')}; this version of "
                         f"rest_core reads version {CHECKPOINT_VERSION}")
    try:
        return RESTConfig.from_dict(json.loads(metadata["config"]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: its config is not valid ({e})") from e


def checkpoint_metadata(config: RESTConfig) -> dict[str, str]:
    return {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "config": config.to_json()}


def available_memory() -> int | None:
    """Bytes of memory the system can still give (Linux's MemAvailable); None where that is not known."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def meta_parts(config: RESTConfig) -> dict[str, nn.Module]:
    """The model's parts (the speech encoder aside) on the meta device: their shapes, no memory."""
    from .dit import A2VDiT
    from .speech_ae import SpeechAE
    from .vae import CausalVAE

    with torch.device("meta"):
        return {"dit": A2VDiT(config.dit), "vae": CausalVAE(config.vae), "speech_ae": SpeechAE.from_config(config)}


def check_fits_in_memory(config: RESTConfig):
    """Refuse, before anything is allocated, a model whose float32 weights alone exceed the free memory (its parts
    are built in float32 and cast afterwards)."""
    parts = meta_parts(config)
    sizes = {name: 4 * sum(p.numel() for p in part.parameters()) for name, part in parts.items()}
    free = available_memory()
    if free is not None and sum(sizes.values()) > free:
        largest = max(sizes, key=sizes.get)
        raise ValueError(f"the {config.name} model needs {sum(sizes.values()) / 2**30:.1f} GiB for its weights "
                         f"({largest}: {sizes[largest] / 2**30:.1f} GiB) but this machine has {free / 2**30:.1f} GiB "
                         f"free; close other programs or use a smaller model")


# --- part files ---------------------------------------------------------------------------------------------

def atomic_save(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]):
    """Write next to the target, then rename: an interrupted save never leaves a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def save_part(path: str | Path, part: str, module: nn.Module, config: RESTConfig, **info):
    metadata = {"format": PART_FORMAT, "part": part, "config": config.to_json(), "info": json.dumps(info)}
    atomic_save(dict(module.state_dict()), Path(path), metadata)


def load_part(path: str | Path, part: str, module_factory=None) -> tuple[nn.Module, RESTConfig]:
    """A part file -> (module with its weights, the config it was trained with). `module_factory(config)` builds
    the empty module; the default knows the three parts."""
    from .dit import A2VDiT
    from .speech_ae import SpeechAE
    from .vae import CausalVAE

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
    atomic_save(half, Path(out), metadata)
    return Path(out)


def part_info(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("info", "{}"))
