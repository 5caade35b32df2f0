"""rest_core: the REST talking-head model as a plain PyTorch library (no ComfyUI imports)."""

from .cache import IDContextCache
from .checkpoint import DTYPES
from .checks import check_frames_fit
from .config import PRESETS, DiTConfig, RESTConfig, SpeechConfig, StreamOptions, VAEConfig
from .dit import A2VDiT, sequence_timesteps
from .media import VideoWriter, even_size, to_uint8
from .pipeline import RESTPipeline
from .precision import emulated_dtype_warning, fastest_cpu_dtype
from .reference import (CropBox, Reference, cut_square, mask_bounds, mouth_in_square, paste_back,
                        portrait_pixels, prepare_reference)
from .resample import SampleBuffer
from .sampling import ChunkLatents, flow_schedule, joint_cfg, stream_latents
from .speech import (SAMPLES_PER_VIDEO_FRAME, SpeechWindows, as_mono, check_sample_rate, latent_frames, mono_clip,
                     prepare_audio, speech_features, video_frames)
from .speech_ae import SpeechAE
from .streams import SpeechLatents, SpeechLatentStream, VideoChunk, VideoStream
from .vae import CausalVAE, DecodeState
from .whisper import SAMPLE_RATE, WhisperEncoder, log_mel_spectrogram
from .whisper_import import default_whisper_encoder, load_whisper_encoder

__all__ = [
    "A2VDiT", "CausalVAE", "ChunkLatents", "CropBox", "DTYPES", "DecodeState", "DiTConfig", "IDContextCache", "PRESETS",
    "RESTConfig", "RESTPipeline", "Reference", "SAMPLES_PER_VIDEO_FRAME", "SAMPLE_RATE", "SampleBuffer", "SpeechAE",
    "SpeechConfig", "SpeechLatentStream", "SpeechLatents", "SpeechWindows", "StreamOptions", "VAEConfig", "VideoChunk",
    "VideoStream", "VideoWriter", "WhisperEncoder", "as_mono", "check_frames_fit", "check_sample_rate", "cut_square",
    "default_whisper_encoder", "emulated_dtype_warning", "even_size", "fastest_cpu_dtype", "flow_schedule", "joint_cfg",
    "latent_frames", "load_whisper_encoder", "log_mel_spectrogram", "mask_bounds", "mono_clip", "mouth_in_square",
    "paste_back", "portrait_pixels",
    "prepare_audio", "prepare_reference", "sequence_timesteps", "speech_features", "stream_latents", "to_uint8",
    "video_frames",
]
