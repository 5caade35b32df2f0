"""ComfyUI entry point of ComfyUI-REST. The model library is `rest_core` (next to this file); the nodes are in
`nodes/`, the live player in `js/`, the example graphs in `workflows/`."""

import os
import sys

# ComfyUI imports this folder as a package but does not put it on sys.path; rest_core is imported by its own name
# so that it is the same module here as in scripts and tests.
_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.append(_here)

if __package__:  # ComfyUI imports this folder as a package
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
else:  # a plain module: pytest reaches this file when the checkout's folder name is not a Python identifier
    from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
