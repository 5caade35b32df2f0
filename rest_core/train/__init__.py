"""Training (paper §3.3, §4.1): `python -m rest_core train <stage>`.

    vae        the causal temporal VAE on prepared clips                      -> vae.safetensors
    speechae   SpeechAE on the clips' Whisper windows                          -> speech_ae.safetensors
    teacher    the non-streaming DiT on prepared segments                      -> dit.safetensors
    student    the streaming DiT (from the teacher's weights), ASD losses      -> dit.safetensors
    expert     the mouth-opening expert eval reads lip-sync with (renders its own stills into --data)
                                                                               -> mouth_expert.safetensors
    export     VAE + SpeechAE + DiT parts -> one REST checkpoint for RESTPipeline / the ComfyUI loader
    finish     a stage's part -> its finished float16 weights, to commit where the recipe continues from

Every stage reads a TOML config (configs/<preset>/<stage>.toml: `preset` or a [model] table, a [train] table of
loop settings and a table of the stage's own), writes a run folder, resumes from it when run again, and runs on
one CPU or GPU or, under `torchrun --nproc_per_node N`, on N processes with DDP.
"""

from __future__ import annotations

from pathlib import Path

from .loop import read_settings, stop_processes

STAGES = ("vae", "speechae", "teacher", "student", "expert")


def configure(p):
    sub = p.add_subparsers(dest="stage", required=True)
    for stage in STAGES:
        s = sub.add_parser(stage, help=f"train the {stage}")
        s.add_argument("--config", default=None, help=f"TOML config (e.g. configs/rest-demo/{stage}.toml)")
        s.add_argument("--data", required=True, help="the data folder `prepare` wrote (expert: where its rendered "
                                                     "stills are kept)")
        s.add_argument("--out", required=True, help="run folder: checkpoints, losses.csv, losses.png")
        s.add_argument("--steps", type=int, default=None, help="total steps (overrides the config)")
        s.add_argument("--batch", type=int, default=None, help="batch per process (overrides the config)")
        s.add_argument("--lr", type=float, default=None, help="peak learning rate (overrides the config)")
        s.add_argument("--device", default="auto", help="auto, cpu, cuda")
        if stage in ("teacher", "student"):
            s.add_argument("--init", default=None, help="start from this DiT part (the student: the teacher's)")
        if stage == "vae":
            s.add_argument("--init", default=None, help="start from this VAE part (e.g. to tune its decoder alone), or "
                                                        "from LTX-Video 0.9.0 VAE weights: a diffusers folder or "
                                                        "Lightricks' single file (ComfyUI's models/vae)")
        if stage == "student":
            s.add_argument("--teacher", default=None, help="the frozen teacher's dit.safetensors (for ASD)")
            s.add_argument("--no-con", action="store_true", help="ablation: no contrastive loss L_CON")
            s.add_argument("--no-smo", action="store_true", help="ablation: no smoothness loss L_SMO")
    e = sub.add_parser("export", help="join trained parts into one REST checkpoint")
    e.add_argument("--vae", required=True)
    e.add_argument("--speech-ae", required=True)
    e.add_argument("--dit", required=True)
    e.add_argument("--out", required=True, help="the .safetensors checkpoint to write")
    e.add_argument("--dtype", default="float16", choices=["float32", "float16", "bfloat16"])
    e.add_argument("--cfg", type=float, default=None, help="the checkpoint's default Joint-CFG scale")
    e.add_argument("--steps", type=int, default=None, help="the checkpoint's default sampling steps")
    e.add_argument("--context-noise", type=float, default=None,
                   help="the checkpoint's default noise level of the context refresh (StreamOptions.context_noise)")
    e.add_argument("--dit-from", default=None,
                   help="the DiT part --dit was fine-tuned from: the checkpoint stores it and the change (small for a "
                        "low-rank fine-tune), so a committed checkpoint grows by the change alone")
    f = sub.add_parser("finish", help="a stage's part -> its finished float16 weights (no optimizer state)")
    f.add_argument("--part", required=True, help="the run folder's part (e.g. runs/demo/vae/vae.safetensors)")
    f.add_argument("--out", required=True, help="where the finished weights go (e.g. stages/rest-demo/)")


def run(args) -> int:
    if args.stage == "finish":
        from ..checkpoint import finish_part

        path = finish_part(args.part, args.out)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    if args.stage == "export":
        from .export import export

        path = export(args.vae, args.speech_ae, args.dit, args.out, args.dtype, cfg=args.cfg, steps=args.steps,
                      context_noise=args.context_noise, dit_from=args.dit_from)
        print(f"wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB)")
        return 0
    settings, config = read_settings(args.config, args.stage, steps=args.steps, batch=args.batch, lr=args.lr)
    try:
        if args.stage == "vae":
            from . import vae
            return vae.run(args, settings, config)
        if args.stage == "expert":
            from . import expert
            return expert.run(args, settings, config)
        if args.stage == "speechae":
            from . import speechae
            return speechae.run(args, settings, config)
        from . import dit
        return dit.run(args, settings, config, student=args.stage == "student")
    finally:
        stop_processes()
