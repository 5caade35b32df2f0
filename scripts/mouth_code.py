"""Does a VAE's decoder paint the mouth that the mouth code says (`VAEConfig.mouth_code`), on faces it never saw?

For each clip (a synthetic clip with its sidecar: held-out style families, held-out seeds) the stream is encoded
as `prepare latents` encodes it ([frame 0] + frames 8, 9, ... with frame 0 as the portrait, the mouth hidden from
the encoder after the first frame), the clip's true code is written into it (`data.face_code.with_code`), and:
- `coded r`: the lip-sync r of its decode (the mouth expert's reading against the true opening): what the DiT's
  latents can give at best;
- `painted`: the code set to a shut mouth, then to a wide open one; the expert's mean reading of the open decode
  minus the shut one (about 0 .. 1 for shut .. wide open; 0: the code is ignored).

    python scripts/mouth_code.py --vae runs/demo/vae-mouth/vae.safetensors --clips runs/check/families \
        [--vae other.safetensors ...] [--clips other-folder ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch

from rest_core.checkpoint import load_part
from rest_core.config import VAE_TEMPORAL
from rest_core.data.heldout import HeldOutClip, clips_in
from rest_core.data.face_code import encode_stream, with_code
from rest_core.eval.metrics import pearson
from rest_core.eval.mouth_expert import MouthExpert, load_expert, read_openness


def decoded(vae, z: torch.Tensor, portrait: torch.Tensor) -> torch.Tensor:
    """Un-normalised latents [1, C, 1 + n, h, w] -> the frames after the first [8n, R, R, 3] in [0, 1]."""
    out = vae.decoder(z, reference=vae.reference_features(portrait))
    return ((out[0, :, 1:].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)


@torch.no_grad()
def check(vae, clip: HeldOutClip, expert: MouthExpert, latents: int) -> dict[str, float]:
    n = min(latents, (len(clip.frames) - VAE_TEMPORAL) // VAE_TEMPORAL)
    frames = torch.cat([clip.frames[:1], clip.frames[VAE_TEMPORAL: VAE_TEMPORAL * (n + 1)]])  # [1 + 8n, R, R, 3]
    opening = np.concatenate([clip.mouth_open[:1], clip.mouth_open[VAE_TEMPORAL: VAE_TEMPORAL * (n + 1)]])
    if clip.mouth_state is None:  # no width in this clip's truth: a middle one
        clip = dataclasses.replace(clip, mouth_state=np.stack([clip.mouth_open, np.full_like(clip.mouth_open, 0.5)],
                                                              axis=1).astype(np.float32))
    picked = [0, *range(VAE_TEMPORAL, VAE_TEMPORAL * (n + 1))]
    video = frames.permute(3, 0, 1, 2)[None] * 2 - 1  # [1, 3, 1 + 8n, R, R]
    portrait = video[:, :, 0]
    code = clip.face_truth(len(clip.frames)).code(picked, 0, video.shape[-2:], vae.config.pose_code)
    z = encode_stream(vae, video, code)  # as the training segments have it

    def reading(latents: torch.Tensor) -> np.ndarray:
        return read_openness(expert, decoded(vae, latents, portrait), clip.mouth_box, clip.frames[0])

    shut, wide = (reading(with_code(z, dataclasses.replace(code, mouth=torch.full_like(code.mouth, value))))
                  for value in (0.0, 1.0))
    return {"coded r": pearson(reading(z), opening[1:]), "painted": float(wide.mean() - shut.mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae", action="append", required=True, help="a VAE part (repeat to compare)")
    p.add_argument("--clips", action="append", required=True, help="a folder of synthetic clips (repeat)")
    p.add_argument("--max-clips", type=int, default=8, help="clips per folder (default 8)")
    p.add_argument("--latents", type=int, default=12, help="latent frames per clip (default 12: 3.9 s)")
    args = p.parse_args()
    expert = load_expert()
    for path in args.vae:
        vae, config = load_part(path, "vae")
        if not config.vae.mouth_code:
            raise SystemExit(f"{path}: this VAE has no mouth code (VAEConfig.mouth_code); its latents say the mouth in "
                             f"a way of their own")
        vae.eval()
        for folder in args.clips:
            rows = [check(vae, clip, expert, args.latents)
                    for clip in clips_in(folder, config.resolution, "full", args.max_clips)]
            mean = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]}
            print(json.dumps({"vae": path, "clips": folder, "count": len(rows), **mean}))


if __name__ == "__main__":
    main()
