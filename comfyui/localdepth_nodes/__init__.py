"""localdepth's ComfyUI nodes: depth (any registry model, any backend), 3D photo and stereo.

Link this folder into ComfyUI's ``custom_nodes/`` and install localdepth into ComfyUI's Python
(``pip install -e /path/to/localdepth``); see ``comfyui/README.md``.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
