"""ComfyUI entry point of ComfyUI-REST. The model library lives in `rest_core`; the nodes come in `nodes/`."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
