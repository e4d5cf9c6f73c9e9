"""Several photos or a video -> one consistent 3D scene (``localdepth scene``).

* :mod:`.views`: the views (photos or video frames) and the memory limits;
* :mod:`.fuse`: per-view sampling, confidence filter and voxel fusion into one point cloud;
* :mod:`.colmap`: COLMAP's text format; :mod:`.glb`: points and camera frustums as glTF;
* :mod:`.build`: predicting the views together and writing everything under the output folder.
"""

from .build import SceneSettings, reconstruct
from .views import DEFAULT_MAX_VIEWS, MAX_SCENE_PIXELS, MAX_VIEWS, View, collect_views

__all__ = ["DEFAULT_MAX_VIEWS", "MAX_SCENE_PIXELS", "MAX_VIEWS", "SceneSettings", "View", "collect_views",
           "reconstruct"]
