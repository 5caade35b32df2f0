"""The ComfyUI nodes of REST: thin adapters from ComfyUI's types to `rest_core` and back."""

from .decode import RESTDecode, RESTPasteBack
from .encode import RESTReferenceEncoder, RESTSpeechEncoder
from .live import RESTLiveSampler
from .model import RESTModelLoader
from .render import RESTRenderVideo
from .sampler import RESTStreamingSampler

NODE_CLASS_MAPPINGS = {
    "RESTModelLoader": RESTModelLoader,
    "RESTReferenceEncoder": RESTReferenceEncoder,
    "RESTSpeechEncoder": RESTSpeechEncoder,
    "RESTStreamingSampler": RESTStreamingSampler,
    "RESTLiveSampler": RESTLiveSampler,
    "RESTDecode": RESTDecode,
    "RESTPasteBack": RESTPasteBack,
    "RESTRenderVideo": RESTRenderVideo,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "RESTModelLoader": "REST Model Loader",
    "RESTReferenceEncoder": "REST Reference Encoder",
    "RESTSpeechEncoder": "REST Speech Encoder",
    "RESTStreamingSampler": "REST Streaming Sampler",
    "RESTLiveSampler": "REST Live Sampler",
    "RESTDecode": "REST Decode",
    "RESTPasteBack": "REST Paste Back",
    "RESTRenderVideo": "REST Render Video",
}
