"""``scene.glb``: the fused points and a frustum per camera, as one binary glTF (through trimesh).

The geometry is stored in the world frame of ``cameras.json`` (OpenCV axes: y down, z forward)
under one root node whose transform turns it 180 degrees about x into glTF's axes (y up, z towards
the viewer), so viewers (Blender, MeshLab, three.js, https://gltf-viewer.donmccurdy.com) show the
scene upright. Frustums are drawn as lines from the camera centre to the image corners at
:data:`FRUSTUM_FRACTION` of the scene's size, coloured from first (dark blue) to last (dark red) view.
"""

from __future__ import annotations

import numpy as np

from ..errors import LocalDepthError
from ..geometry import frustum_corners, invert_pose, transform_points
from .colmap import Camera

#: glTF is y up, z backward; cameras.json's world is y down, z forward: 180 degrees about x
GLTF_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
FRUSTUM_FRACTION = 0.05  # frustum depth, as a fraction of the points' extent (2nd to 98th percentile)


def _trimesh():
    try:
        import trimesh
    except ImportError:
        raise LocalDepthError("scene.glb needs trimesh; pip install 'localdepth[geometry]'") from None
    return trimesh


def frustum_depth(points: np.ndarray, cameras: list[Camera]) -> float:
    """A frustum size that reads well: a fraction of the scene's robust extent."""
    extent_of = points if len(points) >= 2 else np.stack([invert_pose(c.camera_from_world)[:3, 3] for c in cameras])
    if len(extent_of) < 2:
        return 0.1
    lo, hi = np.percentile(extent_of, (2.0, 98.0), axis=0)
    size = float(np.linalg.norm(hi - lo))
    return FRUSTUM_FRACTION * size if size > 0 else 0.1


def frustum_lines(cam: Camera, depth: float):
    """A ``trimesh.path.Path3D``: centre -> four image corners, and the image rectangle, in world coordinates."""
    trimesh = _trimesh()
    from trimesh.path.entities import Line

    corners = frustum_corners(cam.K, cam.width, cam.height, depth)
    vertices = transform_points(np.vstack([np.zeros(3), corners]), invert_pose(cam.camera_from_world))
    entities = [Line([0, k]) for k in range(1, 5)] + [Line([1, 2, 3, 4, 1])]
    return trimesh.path.Path3D(entities=entities, vertices=vertices)


def scene_glb(points: np.ndarray, colors: np.ndarray, cameras: list[Camera]) -> bytes:
    """The binary glTF of points ``(P, 3)`` with colours ``(P, 3)`` uint8 and the cameras' frustums."""
    trimesh = _trimesh()
    from matplotlib import colormaps

    scene = trimesh.Scene()
    scene.graph.update(frame_to="world_gltf", frame_from=scene.graph.base_frame, matrix=GLTF_FROM_OPENCV)
    if len(points):
        rgba = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
        scene.add_geometry(trimesh.PointCloud(points, colors=rgba), node_name="points", geom_name="points",
                           parent_node_name="world_gltf")
    depth = frustum_depth(points, cameras)
    ramp = colormaps["turbo"]
    for i, cam in enumerate(cameras):
        lines = frustum_lines(cam, depth)
        colour = (np.array(ramp(0.1 + 0.8 * i / max(1, len(cameras) - 1))) * 255).astype(np.uint8)
        lines.colors = np.tile(colour, (len(lines.entities), 1))
        scene.add_geometry(lines, node_name=f"camera_{i:04d}", geom_name=f"camera_{i:04d}",
                           parent_node_name="world_gltf")
    return scene.export(file_type="glb")
