"""rest_core: the REST talking-head model as a plain PyTorch library (no ComfyUI imports)."""

from .cache import IDContextCache
from .config import PRESETS, DiTConfig, RESTConfig, SamplerConfig, SpeechConfig, VAEConfig
from .dit import A2VDiT, sequence_timesteps
from .media import VideoWriter, even_size
from .pipeline import RESTPipeline, SpeechLatents, SpeechLatentStream, VideoChunk, VideoStream
from .reference import CropBox, cut_square, paste_back, portrait_pixels, prepare_reference
from .sampling import ChunkLatents, flow_schedule, joint_cfg, stream_latents
from .speech import SpeechWindows, latent_frames, prepare_audio, speech_features, video_frames
from .speech_ae import SpeechAE
from .vae import CausalVAE, DecodeState
from .whisper import WhisperEncoder, log_mel_spectrogram
from .whisper_import import default_whisper_encoder, load_whisper_encoder

__all__ = [
    "A2VDiT", "CausalVAE", "ChunkLatents", "CropBox", "RESTPipeline", "SpeechLatents", "SpeechLatentStream",
    "VideoChunk", "VideoStream", "VideoWriter", "even_size", "prepare_reference", "DecodeState", "DiTConfig",
    "IDContextCache", "PRESETS", "RESTConfig", "SamplerConfig", "SpeechAE", "SpeechConfig", "SpeechWindows",
    "VAEConfig", "WhisperEncoder", "default_whisper_encoder", "flow_schedule", "joint_cfg", "latent_frames",
    "load_whisper_encoder", "log_mel_spectrogram", "paste_back", "portrait_pixels", "prepare_audio",
    "sequence_timesteps", "speech_features", "stream_latents", "video_frames", "cut_square",
]
