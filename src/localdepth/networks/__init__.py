"""Network definitions and their loaders: weights on disk -> a ``torch.nn.Module`` with one
calling convention, whatever the family.

Every network localdepth runs through PyTorch is wrapped so that::

    outputs = network(pixel_values, **conditioning)   # -> dict[str, Tensor]

``pixel_values`` is the preprocessed batch (``(N, 3, h, w)``, or ``(N, h, w, 3)`` for NHWC
entries); ``conditioning`` carries extra inputs some models take (``prompt_depth`` ...).
``outputs`` has (see :class:`localdepth.backends.base.NetworkOutput` for the NumPy side):

* ``"depth"``: ``(N, h', w')``, the raw map in the registry entry's convention (always there);
* ``"confidence"``: ``(N, h', w')``, optional, larger = more confident;
* ``"intrinsics"``: ``(N, 3, 3)``, optional, a predicted camera in pixels of the network input
  grid ``(h, w)`` (pixel centres at integer coordinates);
* ``"camera_from_world"``: ``(N, 4, 4)``, optional, a predicted pose (OpenCV axes);
* ``"field_of_view"``: ``(N,)``, optional, a predicted horizontal field of view of the image in
  degrees (Depth Pro): independent of the input grid, which may stretch the image.

The module for each registry ``format`` is named in :data:`LOADERS` and imported only when a
model of that format is loaded; each defines ``load(spec, path, *, device, dtype) -> nn.Module``
(``dtype`` a ``torch.dtype``). Model definitions live here; pre- and postprocessing live in
:mod:`localdepth.preprocess` and :mod:`localdepth.postprocess`, backends in
:mod:`localdepth.backends`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import BackendError
from ..registry import ModelSpec

#: registry ``format`` -> module that loads it
LOADERS: dict[str, str] = {
    "transformers": "localdepth.networks.hf",
    "da3": "localdepth.networks.da3",
}

#: the keys a network may return, beside the required ``depth``
OPTIONAL_OUTPUTS = ("confidence", "intrinsics", "camera_from_world", "field_of_view")


def load_network(spec: ModelSpec, path: Path, *, device: str = "cpu", dtype=None):
    """Load ``spec``'s network from ``path`` (a folder or a file), in eval mode on ``device``."""
    import torch

    module_name = LOADERS.get(spec.format)
    if module_name is None:
        raise BackendError(f"{spec.name} is a {spec.format} model, which PyTorch does not run; use --backend auto")
    loader = importlib.import_module(module_name)
    network = loader.load(spec, Path(path), device=device, dtype=dtype or torch.float32)
    return network.eval()
