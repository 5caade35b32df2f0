"""Trained parts -> one REST checkpoint (the file RESTPipeline.from_pretrained and the ComfyUI loader read)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..checkpoint import DTYPES, load_part
from ..pipeline import RESTPipeline
from ..whisper_import import default_whisper_encoder


def export(vae_path, speech_ae_path, dit_path, out, dtype: str = "float16", cfg: float | None = None,
           steps: int | None = None, context_noise: float | None = None, dit_from: str | Path | None = None) -> Path:
    """`cfg`, `steps`, `context_noise`: the checkpoint's sampling defaults, where given. `dit_from`: the DiT part
    `dit_path` was fine-tuned from; the checkpoint stores that one's weights and the change (low-rank where the
    fine-tune was), so a checkpoint committed before grows by the change alone."""
    vae, vae_config = load_part(vae_path, "vae")
    speech_ae, speech_config = load_part(speech_ae_path, "speech_ae")
    dit, config = load_part(dit_path, "dit")
    # the mouth shape draws on the decoded frames alone (vae_mouth.MouthShape): a VAE with or without it makes the
    # same latents, so a DiT trained on either's fits the other
    if (dataclasses.replace(vae_config.vae, mouth_shape=False) != dataclasses.replace(config.vae, mouth_shape=False)
            or vae_config.resolution != config.resolution):
        raise ValueError(f"{vae_path} is a VAE for another config than the DiT in {dit_path}")
    if speech_config.speech != config.speech or speech_config.dit.speech_dim != config.dit.speech_dim:
        raise ValueError(f"{speech_ae_path} is a SpeechAE for another config than the DiT in {dit_path}")
    base = None
    if dit_from is not None:
        base, base_config = load_part(dit_from, "dit")
        if base_config.dit != config.dit:
            raise ValueError(f"{dit_from} is a DiT of another shape than {dit_path}; give the part it was fine-tuned "
                             f"from")
    defaults = {k: v for k, v in (("cfg", cfg), ("steps", steps), ("context_noise", context_noise)) if v is not None}
    config = dataclasses.replace(config, vae=vae_config.vae, sampler=config.sampler.replace(**defaults))
    pipe = RESTPipeline(config, dit, vae, speech_ae, default_whisper_encoder())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, dtype=DTYPES[dtype], fine_tuned_from=None if base is None else {"dit": base})
    return out
