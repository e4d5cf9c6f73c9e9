"""Depth for collections larger than one machine: ``localdepth batch`` on Ray Data.

Ray is an optional extra (``pip install 'localdepth[distributed]'``); importing this package
does not import it, :func:`require_ray` does and says how to install it when it is missing.
"""

from .outputs import OutputTarget
from .pipeline import (INSTALL_HINT, BatchConfig, BatchSummary, InferenceActor, connect, require_ray,
                       run_batch)
from .sources import Source, collect, read_manifest

__all__ = ["INSTALL_HINT", "BatchConfig", "BatchSummary", "InferenceActor", "OutputTarget", "Source",
           "collect", "connect", "read_manifest", "require_ray", "run_batch"]
