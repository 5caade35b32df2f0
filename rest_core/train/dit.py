"""Stage 2 and 3: the A2V-DiT as non-streaming teacher, then as streaming student with ASD (paper §3.3).

Both see the same data: a segment [z_R || z_1 .. z_K] with chunk-wise asynchronous noise (eq. 15-16), one t per
chunk, the reference at t = 0, and the flow-matching target v = eps - z_0 (eq. 18). The teacher attends globally
over the whole sequence. The student attends as it streams: each chunk sees the ID sink, its predecessor as
context, and itself (eq. 20) -- `forward_sequence` with the streaming block mask, which equals running the chunks
one by one through the ID-Context Cache (tested in test_dit).

ASD (eq. 21-24) adds, against the frozen teacher's velocity on the same noisy input:
  L_CON  InfoNCE over latent frames: frame i of the student should be most similar (cosine, temperature tau) to
         frame i of the teacher. "standard" keeps the positive in the denominator (cross-entropy), "paper" leaves
         it out as eq. 21 is printed.
  L_SMO  the student's second temporal difference v[i+1] - 2 v[i] + v[i-1] should match the teacher's, over the
         whole sequence and so across chunk boundaries.
Joint-CFG training drops speech (and text) together with probability `cfg_dropout`. `crop` trains the first
`crop_steps` steps on square windows of the latent grid that hold the clip's mouth (the DiT has no fixed size:
RoPE positions and per-frame speech), at a fraction of the whole frame's cost; the steps after them see whole frames,
the size it samples at. `compile = true` compiles each block (torch.compile, a minute or two before the first step);
with `[train] precision = "bfloat16"` that is what makes bfloat16 pay on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checkpoint import load_part
from ..config import VAE_SPATIAL, RESTConfig
from ..data.prepare import ClipSet, SegmentSet
from ..dit import A2VDiT, sequence_timesteps
from ..sampling import shift_time
from .loop import Settings, Stage, stage_options, start_processes, train
from .low_rank import add_low_rank, merge_low_rank
from .vae import window_start

CONTRASTIVE_FORMS = ("standard", "paper")
# "low_rank": a rank-`rank` change of every matrix of the blocks and the timestep MLP, and the time conditioning's
# other tensors whole (train/low_rank.py): what a committed model can afford to change
TRAINABLE = ("all", "low_rank")


@dataclass(frozen=True)
class DiTOptions:
    """The [teacher] or [student] table of a DiT stage's config (configs/rest-demo/*.toml explain each)."""

    cfg_dropout: float = 0.1  # Joint CFG: speech and text dropped together
    logit_mean: float = 0.0  # chunk times: logit-normal, then the sampler's shift
    logit_std: float = 1.0
    shift: float | None = None  # None: the model's
    con: float = 0.1  # weight of L_CON (eq. 24)
    smo: float = 1.0  # weight of L_SMO (eq. 24)
    tau: float = 0.1  # InfoNCE temperature (eq. 21)
    contrastive: str = "standard"  # one of CONTRASTIVE_FORMS
    id_sink: bool = True  # the student's training-time switches of the ID-Context Cache
    context_cache: bool = True
    compile: bool = False
    crop: int = 0  # latent cells per side of the windows the first crop_steps steps see (0: whole frames)
    crop_steps: int = 0
    low_context: float = 0.0  # share of segments whose chunks before the last are drawn at t in [0, low_context_t]
    low_context_t: float = 0.1  # (the streaming sampler's context is nearly clean; the schedule alone hardly is)
    trainable: str = "all"  # one of TRAINABLE
    rank: int = 8  # of each matrix's change, with trainable = "low_rank"

    def __post_init__(self):
        if self.contrastive not in CONTRASTIVE_FORMS:
            raise ValueError(f"contrastive={self.contrastive!r}: choose one of {CONTRASTIVE_FORMS}")
        if self.trainable not in TRAINABLE or self.rank < 1:
            raise ValueError(f"trainable={self.trainable!r}, rank={self.rank}: choose one of {TRAINABLE} and a rank of "
                             f"at least 1")
        if not 0 <= self.low_context <= 1 or not 0 < self.low_context_t <= 1:
            raise ValueError(f"low_context={self.low_context}, low_context_t={self.low_context_t}: a share from 0 to "
                             f"1 and a noise level above 0, at most 1")
        if self.crop < 0 or self.crop_steps < 0 or bool(self.crop) != bool(self.crop_steps):
            raise ValueError(f"crop={self.crop}, crop_steps={self.crop_steps}: give both (cells per side, steps) "
                             f"or neither")


def mouth_window(latents: Tensor, box: list[float] | None, side: int, g: torch.Generator) -> Tensor:
    """A side x side window of a segment's latent grid, somewhere it holds the mouth box [x0, y0, x1, y1] (frame
    pixels; anywhere without one).  [C, F, h, w] -> [C, F, side, side]"""
    h, w = latents.shape[-2:]
    if side > min(h, w):
        raise ValueError(f"crop={side}: the latents are {h}x{w} cells; choose at most {min(h, w)}")
    top, left = (window_start(size, side, None if box is None else [box[axis] / VAE_SPATIAL,
                                                                    box[axis + 2] / VAE_SPATIAL],
                              torch.rand(1, generator=g).item())
                 for size, axis in ((h, 1), (w, 0)))
    return latents[..., top:top + side, left:left + side]


def chunk_noise_times(batch: int, chunks: int, shift: float, mean: float, std: float, g: torch.Generator,
                      low_context: float = 0.0, low_context_t: float = 0.1) -> Tensor:
    """One flow time per chunk, drawn independently (asynchronous noise, eq. 15): logit-normal, then the sampler's
    shift so training spends its effort where sampling does. A share `low_context` of the rows has every chunk but
    the last drawn uniformly from [0, low_context_t] instead: the schedule alone puts a context below t = 0.05 once
    in tens of thousands, and a stream's context is a finished chunk (docs/TRAINING.md, "The context's noise").
    [B, K]"""
    t = shift_time(torch.sigmoid(mean + std * torch.randn(batch, chunks, generator=g)), shift)
    if low_context:  # not drawn at 0, so a run without it draws what it always drew
        low = torch.rand(batch, generator=g) < low_context
        t[low, :-1] = low_context_t * torch.rand(int(low.sum()), chunks - 1, generator=g)
    return t


def noised_segments(latents: Tensor, chunk_latents: int, t: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Chunk-wise asynchronous noise (eq. 15-16): chunk k of every segment at its own time t[:, k], the reference
    clean. -> (z_t [B, C, 1 + cK, h, w], the flow-matching target v = eps - z_0 [B, C, cK, h, w], eq. 18)

    latents: [B, C, 1 + cK, h, w]; t: [B, K]"""
    z0 = latents[:, :, 1:]
    noise = torch.randn(z0.shape, generator=g)
    t_frames = t.repeat_interleave(chunk_latents, dim=1)[:, None, :, None, None]  # [B, 1, cK, 1, 1]
    zt = torch.cat([latents[:, :, :1], (1 - t_frames) * z0 + t_frames * noise], dim=2)
    return zt, noise - z0


def conditioned_first(dropout: float, batch: int, g: torch.Generator) -> tuple[Tensor, int]:
    """Joint-CFG dropout: each row loses its speech (and text) with probability `dropout`. -> (an order of the rows
    that puts the conditioned ones first, how many they are): rows past them are the null branch."""
    dropped = torch.rand(batch, generator=g) < dropout
    return torch.argsort(dropped.int(), stable=True), int((~dropped).sum())


def noisy_batch(latents: Tensor, speech: Tensor, chunk_latents: int, shift: float, opts: DiTOptions,
                g: torch.Generator) -> dict[str, Tensor]:
    """Segments -> the model's inputs and target, conditioned rows first.

    latents: [B, C, 1 + cK, h, w]; speech: [B, cK, h_w, d_A]."""
    b, _, f, h, _ = latents.shape
    t = chunk_noise_times(b, (f - 1) // chunk_latents, shift, opts.logit_mean, opts.logit_std, g, opts.low_context,
                          opts.low_context_t)  # [B, K]
    zt, target = noised_segments(latents, chunk_latents, t, g)
    order, conditioned = conditioned_first(opts.cfg_dropout, b, g)
    return {"zt": zt[order], "t": sequence_timesteps(t[order], chunk_latents, h),
            "speech": speech[order][:conditioned], "target": target[order]}


def contrastive_loss(student: Tensor, teacher: Tensor, tau: float, form: str = "standard") -> Tensor:
    """L_CON (eq. 21-22): InfoNCE between latent frames of the student and the teacher velocity.
    [B, C, F, h, w] each"""
    s = F.normalize(student.transpose(1, 2).flatten(2), dim=-1)  # [B, F, C*h*w]
    t = F.normalize(teacher.transpose(1, 2).flatten(2), dim=-1)
    logits = s @ t.transpose(1, 2) / tau  # [B, F, F]: frame i of the student against every teacher frame
    positive = logits.diagonal(dim1=1, dim2=2)  # [B, F]
    if form == "paper":
        eye = torch.eye(logits.shape[1], dtype=torch.bool, device=logits.device)
        return (torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=2) - positive).mean()
    return (torch.logsumexp(logits, dim=2) - positive).mean()


def second_difference(v: Tensor) -> Tensor:
    """v[i+1] - 2 v[i] + v[i-1] over latent frames.  [B, C, F, h, w] -> [B, C, F-2, h, w]"""
    return v[:, :, 2:] - 2 * v[:, :, 1:-1] + v[:, :, :-2]


def smoothness_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """L_SMO (eq. 23): the student's second temporal difference against the teacher's."""
    return F.mse_loss(second_difference(student), second_difference(teacher))


def run(args, settings: Settings, config: RESTConfig, student: bool) -> int:
    opts = stage_options(DiTOptions, settings.options, "student" if student else "teacher")
    for flag, key in (("no_con", "con"), ("no_smo", "smo")):
        if getattr(args, flag, False):
            opts = replace(opts, **{key: 0.0})
    procs = start_processes(args.device)
    segments = SegmentSet(args.data)
    c = config.chunk_latents
    if segments.index["chunk_latents"] != c:
        raise ValueError(f"{args.data}: segments were made with chunk_latents={segments.index['chunk_latents']}, "
                         f"preset {config.name} has {c}")
    shift = config.sampler.shift if opts.shift is None else opts.shift
    torch.manual_seed(settings.seed)
    if args.init:
        model, init_config = load_part(args.init, "dit")
        if init_config.dit != config.dit:
            raise ValueError(f"{args.init} is a DiT of another shape than preset {config.name}")
    else:
        model = A2VDiT(config.dit)
    if opts.trainable == "low_rank":  # frozen before compiling, so the backward pass skips the frozen gradients
        model.requires_grad_(False)
        for p in model.time_parameters():
            p.requires_grad_(True)
        add_low_rank(model, opts.rank)
    teacher = None
    distill = student and (opts.con > 0 or opts.smo > 0)
    if distill:
        if not args.teacher:
            raise ValueError("the student's ASD losses need the frozen teacher: pass --teacher teacher/dit.safetensors "
                             "(or turn ASD off with --no-con --no-smo)")
        teacher, _ = load_part(args.teacher, "dit")
        teacher = teacher.to(procs.device).eval().requires_grad_(False)
    if opts.compile:  # in place, block by block: the weights keep their names
        for dit in [m for m in (model, teacher) if m is not None]:
            dit.compile_blocks()
    streaming = dict(global_attention=not student, id_sink=opts.id_sink, context_cache=opts.context_cache)

    boxes = [clip.get("mouth_box") for clip in ClipSet(args.data).clips] if opts.crop else []

    def batch(step: int, g: torch.Generator) -> dict:
        idx = torch.randint(len(segments), (settings.batch,), generator=g)
        latents = segments.latents[idx].float()  # [B, C, 1 + cK, h, w]
        if step < opts.crop_steps:
            latents = torch.stack([mouth_window(z, boxes[int(segments.clip[i])], opts.crop, g)
                                   for z, i in zip(latents, idx)])
        inputs = noisy_batch(latents, segments.speech[idx].float(), c, shift, opts, g)
        return {k: v.to(procs.device) for k, v in inputs.items()}

    def losses(module: A2VDiT, b: dict) -> dict[str, Tensor]:
        v = module.forward_sequence(b["zt"], b["t"], b["speech"], chunk_latents=c, **streaming)
        fm = F.mse_loss(v, b["target"])
        if teacher is None:
            return {"loss": fm, "fm": fm}
        with torch.no_grad():
            v_teacher = teacher.forward_sequence(b["zt"], b["t"], b["speech"], chunk_latents=c,
                                                 global_attention=True)
        con = contrastive_loss(v, v_teacher, opts.tau, opts.contrastive)
        smo = smoothness_loss(v, v_teacher)
        return {"loss": fm + opts.con * con + opts.smo * smo, "fm": fm, "con": con, "smo": smo}  # eq. 24

    train(Stage("student" if student else "teacher", "dit", model, config, batch, losses,
                finish=merge_low_rank if opts.trainable == "low_rank" else None), settings, args.out, procs)
    return 0
