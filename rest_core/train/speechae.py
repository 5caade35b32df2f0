"""Stage 1b: SpeechAE (paper eq. 6) on the prepared Whisper windows: every latent frame's window is a sample and
the loss is the reconstruction of its own 16 features (`SpeechAE.loss`)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import RESTConfig
from ..data.prepare import ClipSet
from ..speech_ae import SpeechAE
from .loop import Settings, Stage, start_processes, train


def run(args, settings: Settings, config: RESTConfig) -> int:
    procs = start_processes(args.device)
    clips = ClipSet(args.data)
    if (clips.index["context_left"], clips.index["context_right"]) != (config.speech.context_left,
                                                                        config.speech.context_right):
        raise ValueError(f"{args.data}: windows were prepared with another speech context than preset {config.name}")
    windows = torch.cat([clips.windows(i).half() for i in range(len(clips))])  # [N, H_w, 384]
    torch.manual_seed(settings.seed)
    speech_ae = SpeechAE.from_config(config)

    def batch(step: int, g: torch.Generator) -> Tensor:
        return windows[torch.randint(len(windows), (settings.batch,), generator=g)].float().to(procs.device)

    def losses(module: SpeechAE, w: Tensor) -> dict[str, Tensor]:
        return {"loss": module.loss(w)}

    train(Stage("speechae", "speech_ae", speech_ae, config, batch, losses), settings, args.out, procs)
    return 0
