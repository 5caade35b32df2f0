"""rest_core: the REST talking-head model as a plain PyTorch library (no ComfyUI imports)."""

from .cache import IDContextCache
from .config import PRESETS, DiTConfig, RESTConfig, SamplerConfig, VAEConfig
from .dit import A2VDiT, sequence_timesteps
from .sampling import ChunkLatents, flow_schedule, joint_cfg, stream_latents
from .vae import CausalVAE, DecodeState

__all__ = [
    "A2VDiT", "CausalVAE", "ChunkLatents", "DecodeState", "DiTConfig", "IDContextCache", "PRESETS", "RESTConfig",
    "SamplerConfig", "VAEConfig",
    "flow_schedule", "joint_cfg", "sequence_timesteps", "stream_latents",
]
