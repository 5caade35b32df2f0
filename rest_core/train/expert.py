"""The mouth-opening expert (`rest_core/eval/mouth_expert.py`): trained on stills of the training generator's styles,
validated on the held-out style families it has never seen.

    python -m rest_core train expert --config configs/mouth-expert.toml --data runs/expert-data --out runs/expert

Data (rendered once into --data, then reused): `identities` fresh identities of the training looks, each drawn
`poses` times with a random head pose (the range of a clip's head motion and a little more), mouth opening (a third
of them shut), lip width and eyelids; the crop is taken around the mouth box *at rest*, as eval crops generated
frames, so the head moves inside the box. Each crop is stored at 1.25x the box, compressed as JPEG at a random
quality. A training sample is two stills of one identity: the first is the reference, the expert reads how much
more open the second's mouth is.

Each training pair is augmented on the fly: each crop's box shifted (up to 10 %) and scaled (0.85-1.15), the
second crop blurred or scaled down and up (generated frames are soft; the portrait is sharp), noise; the pair
recoloured alike (channels shuffled, greyscale, brightness and contrast), since a generated frame keeps its
portrait's colours.

Validation, at the end, on the held-out style families only: `heldout_identities` identities rendered the same
way (Pearson r of the reading against the true difference, overall and per family), and, as `eval` uses the expert,
`clips_per_family` 4 s clips of every held-out family written to mp4 and read back face-cropped at 128 and 256 px
(r over time within each clip against the truth, the first frame the portrait). The numbers go into the part
file's metadata and `validation.json`.
"""

from __future__ import annotations

import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..data import drawing, synth
from ..data.faces import HELDOUT_STYLES, TRAIN_STYLES, sample_identity
from ..media import to_uint8
from ..eval.metrics import pearson
from ..eval.mouth_expert import CROP, PART, ExpertConfig, MouthExpert, mouth_crops
from .loop import Settings, Stage, stage_options, start_processes, train



@dataclass(frozen=True)
class ExpertOptions:
    """The [expert] table of the mouth expert's config."""

    identities: int = 5000
    poses: int = 4
    heldout_identities: int = 400
    clips_per_family: int = 3
    workers: int = 2

STORED = 60  # stored crop side: 1.25 x the mouth box at 48 px
MARGIN = 1.25
FAMILIES = TRAIN_STYLES + HELDOUT_STYLES


def render_identity(job: tuple) -> tuple[np.ndarray, np.ndarray, int]:
    """One identity, `poses` stills: (crops uint8 [P, STORED, STORED, 3], openness [P], family index)."""
    from PIL import Image

    seed, looks, poses = job
    rng = np.random.default_rng([seed, 77, *looks.encode()])
    identity = sample_identity(rng, looks)
    size = int(rng.integers(64, 113)) * 2  # 128-224 px frames: the mouth at many scales
    reach = {"dx": np.array([0.1, -0.1, 0, 0]), "dy": np.array([0, 0, 0.08, -0.08]),
             "angle": np.array([6.0, -6.0, 0, 0]), "scale": np.array([1.04, 0.96, 1, 1])}
    _, centre, unit = synth.layout(identity, reach, size)
    painter = drawing.Painter(identity, size, centre, unit)
    box = synth.mouth_box(identity, centre, unit, MARGIN)
    crops, opens = [], []
    for _ in range(poses):
        head = {"dx": np.array([rng.uniform(-0.1, 0.1) * unit]), "dy": np.array([rng.uniform(-0.08, 0.08) * unit]),
                "angle": np.array([rng.uniform(-6, 6)]), "scale": np.array([rng.uniform(0.96, 1.04)])}
        openness = 0.0 if rng.uniform() < 0.33 else float(rng.uniform(0, 1))
        frame = painter.frame(drawing.transforms(head, centre, unit)[0], openness, float(rng.uniform()),
                              float(rng.uniform() ** 3))
        buffer = io.BytesIO()  # the compression a video's frames went through
        Image.fromarray(frame).save(buffer, "JPEG", quality=int(rng.integers(35, 96)))
        frame = np.array(Image.open(buffer).convert("RGB"))
        crop = mouth_crops(torch.from_numpy(frame)[None], box, STORED)[0]
        crops.append(to_uint8(crop.permute(1, 2, 0)).numpy())
        opens.append(openness)
    return np.stack(crops), np.asarray(opens, np.float32), FAMILIES.index(identity["style"]["family"])


def render_set(path: Path, first_seed: int, identities: int, poses: int, looks: str, workers: int) -> dict:
    """Render (or read back) a set of stills: {"crops": [N, S, S, 3] uint8, "openness": [N], "family": [N]}."""
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    jobs = [(first_seed + i, looks, poses) for i in range(identities)]
    results, started = [], time.perf_counter()
    if workers > 1:
        import multiprocessing

        from ..data.synth import quiet_worker

        with multiprocessing.get_context("spawn").Pool(workers, initializer=quiet_worker) as pool:
            for i, r in enumerate(pool.imap(render_identity, jobs, chunksize=16)):
                results.append(r)
                if i % 100 == 99:
                    sys.stderr.write(f"\r[expert] {path.name}: {i + 1}/{identities} identities "
                                     f"{time.perf_counter() - started:.0f} s")
                    sys.stderr.flush()
    else:
        results = [render_identity(j) for j in jobs]
    sys.stderr.write("\n")
    data = {"crops": torch.from_numpy(np.concatenate([r[0] for r in results])),
            "openness": torch.from_numpy(np.concatenate([r[1] for r in results])),
            "family": torch.tensor([r[2] for r in results for _ in range(poses)], dtype=torch.int64)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in data.items()}, str(path))
    return data


def place(crops: Tensor, g: torch.Generator, jitter: bool = True) -> Tensor:
    """Stored crops -> the expert's view of the mouth box, the box moved and scaled a little when `jitter`.
    [N, S, S, 3] uint8 -> [N, 3, CROP, CROP]"""
    n = len(crops)
    x = crops.permute(0, 3, 1, 2).float() / 255
    theta = torch.zeros(n, 2, 3)
    if jitter:
        scale = (0.85 + 0.3 * torch.rand(n, generator=g)) / MARGIN  # the box's share of the stored crop
        theta[:, :, 2] = (torch.rand(n, 2, generator=g) - 0.5) * 0.4 * scale[:, None]
    else:
        scale = torch.full((n,), 1 / MARGIN)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    grid = F.affine_grid(theta, [n, 3, CROP, CROP], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def soften(x: Tensor, g: torch.Generator, most: float) -> Tensor:
    """A Gaussian blur of random width up to `most` pixels per crop, a third of them also scaled down and up."""
    n = len(x)
    sigma = torch.rand(n, generator=g) * most
    k = torch.arange(7, dtype=torch.float32) - 3
    kernel = torch.exp(-k[None] ** 2 / (2 * sigma[:, None].clamp_min(0.05) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(3, 0)  # [3N, 7]
    y = F.conv2d(F.pad(x.reshape(1, n * 3, CROP, CROP), (3, 3, 0, 0), mode="replicate"),
                 kernel[:, None, None, :], groups=n * 3)
    y = F.conv2d(F.pad(y, (0, 0, 3, 3), mode="replicate"), kernel[:, None, :, None], groups=n * 3)
    y = y.reshape(n, 3, CROP, CROP)
    down = torch.rand(n, generator=g) < 0.3 * most / 1.8
    if down.any():
        small = int(CROP * (0.35 + 0.4 * float(torch.rand(1, generator=g))))
        y[down] = F.interpolate(F.interpolate(y[down], size=small, mode="area"), size=CROP, mode="bilinear",
                                align_corners=False)
    return y


def recolour(pair: list[Tensor], g: torch.Generator) -> list[Tensor]:
    """The same colour change for the reference and the frame: channels shuffled, greyscale, contrast, brightness."""
    n = len(pair[0])
    order = torch.argsort(torch.rand(n, 3, generator=g), dim=1)[:, :, None, None].expand(-1, -1, CROP, CROP)
    grey = (torch.rand(n, generator=g) < 0.2)[:, None, None, None]
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=g)
    shift = (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.3
    out = []
    for x in pair:
        x = torch.gather(x, 1, order)
        x = torch.where(grey, x.mean(1, keepdim=True).expand_as(x), x)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast + mean + shift
        out.append(x)
    return out


def augment(reference: Tensor, crops: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Stored crops of the reference and the frame -> the expert's inputs, augmented as the module docstring says."""
    ref = soften(place(reference, g), g, 0.6)
    frame = soften(place(crops, g), g, 1.8)
    ref, frame = recolour([ref, frame], g)
    frame = frame + torch.randn(frame.shape, generator=g) * 0.03 * torch.rand(len(frame), 1, 1, 1, generator=g)
    return ref.clamp(0, 1), frame.clamp(0, 1)


def pairs(data: dict, poses: int, picks: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """For each picked identity, two different stills of it: (reference index, frame index, true difference)."""
    first = torch.randint(poses, picks.shape, generator=g)
    second = (first + torch.randint(1, poses, picks.shape, generator=g)) % poses
    a, b = picks * poses + first, picks * poses + second
    return a, b, data["openness"][b] - data["openness"][a]


@torch.no_grad()
def validate_stills(expert: MouthExpert, data: dict, poses: int) -> dict:
    """Pearson r of the reading against the true difference: every identity's first still the reference for its
    others, overall and per style family."""
    identities = len(data["openness"]) // poses
    refs = torch.arange(identities).repeat_interleave(poses - 1) * poses
    frames = refs + torch.arange(1, poses).repeat(identities)
    read = []
    for i in range(0, len(refs), 512):
        r, f = refs[i:i + 512], frames[i:i + 512]
        read.append(expert(place(data["crops"][r], None, False), place(data["crops"][f], None, False)))
    read = torch.cat(read)
    truth, family = data["openness"][frames] - data["openness"][refs], data["family"][frames]
    result = {"r": pearson(read, truth), "mae": float((read - truth).abs().mean()), "pairs": len(truth)}
    for index in sorted(set(family.tolist())):
        pick = family == index
        result[FAMILIES[index]] = pearson(read[pick], truth[pick])
    return result


@torch.no_grad()
def validate_clips(expert: MouthExpert, per_family: int, folder: Path) -> dict:
    """As eval uses it: held-out family clips through mp4, face-cropped; r over time within each clip."""
    from ..data.prepare import find_videos
    from ..data.heldout import load_clip
    from ..eval.mouth_expert import read_openness

    folder.mkdir(parents=True, exist_ok=True)
    for i, family in enumerate(HELDOUT_STYLES):
        for k in range(per_family):
            name = folder / f"{family}_{k}"
            if not name.with_suffix(".json").exists():
                synth.write_clip(synth.render_clip(7_000_000 + k, 4.0, 256, looks=family), name)
    result = {}
    for path in find_videos(folder):
        for resolution in (128, 256):
            clip = load_clip(path, resolution)
            read = read_openness(expert, clip.frames, clip.mouth_box, clip.frames[0])
            result.setdefault(clip.family, []).append(pearson(read, clip.mouth_open))
    summary = {family: {"mean": float(np.mean(rs)), "min": float(np.min(rs)), "clips": len(rs) // 2}
               for family, rs in result.items()}
    summary["mean"] = float(np.mean([r for rs in result.values() for r in rs]))
    return summary


def run(args, settings: Settings, config) -> int:
    opts = stage_options(ExpertOptions, settings.options, "expert")
    procs = start_processes(args.device)
    data_dir = Path(args.data)
    train_set = render_set(data_dir / "train.safetensors", 0, opts.identities, opts.poses, "train",
                           opts.workers)
    heldout = render_set(data_dir / "heldout.safetensors", 5_000_000, opts.heldout_identities, opts.poses,
                         "heldout", opts.workers)
    torch.manual_seed(settings.seed)
    expert_config = ExpertConfig()
    expert = MouthExpert(expert_config)

    poses = opts.poses
    identities = len(train_set["openness"]) // poses

    def batch(step: int, g: torch.Generator):
        a, b, truth = pairs(train_set, poses, torch.randint(identities, (settings.batch,), generator=g), g)
        reference, frame = augment(train_set["crops"][a], train_set["crops"][b], g)
        return reference.to(procs.device), frame.to(procs.device), truth.to(procs.device)

    def losses(module: MouthExpert, b) -> dict[str, Tensor]:
        reference, frame, truth = b
        return {"loss": F.smooth_l1_loss(module(reference, frame), truth, beta=0.1)}

    validation = {}

    def finish(module: MouthExpert):
        module = module.cpu().eval()
        validation["stills"] = validate_stills(module, heldout, poses)
        validation["clips"] = validate_clips(module, opts.clips_per_family, data_dir / "heldout-clips")
        (Path(args.out) / "validation.json").write_text(json.dumps(validation, indent=1))
        sys.stderr.write(f"[expert] held-out style families: {json.dumps(validation)}\n")

    train(Stage("expert", PART, expert, expert_config, batch, losses, finish=finish,
                info=lambda: {"heldout": validation}), settings, args.out, procs)
    return 0
