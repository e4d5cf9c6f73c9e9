"""Point clouds and meshes from depth maps, through Open3D.

Points come from :func:`localdepth.geometry.unproject` (z-depth, pixel centres at integer
coordinates), which gives the same points as Open3D's ``PointCloud.create_from_rgbd_image``
for the same intrinsics. Coordinates are in the camera frame (x right, y down, z forward),
in metres for metric maps and in arbitrary units for relative ones (``relative=True``).

File types follow the suffix: point clouds ``.ply``/``.pcd`` (and ``.xyz``…, whatever Open3D
writes); meshes ``.ply``/``.obj``/``.glb``/``.gltf``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import LocalDepthError
from .geometry import PSEUDO_DEPTH_FORMULA, invert_pose, pseudo_depth, pseudo_depth_range, transform_points, unproject
from .writers import atomic_path, atomic_write_bytes

POINTCLOUD_SUFFIXES = (".ply", ".pcd", ".xyz", ".xyzrgb", ".pts")
MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".off", ".stl")


def _o3d():
    try:
        import open3d as o3d
    except (ImportError, OSError) as e:  # the wheel loads system libraries (libusb) with ctypes: OSError
        hint = ("apt-get install libusb-1.0-0" if "libusb" in str(e) or isinstance(e, OSError)
                else "pip install 'localdepth[geometry]'")
        raise LocalDepthError(f"point clouds and meshes need Open3D ({str(e).splitlines()[0]}); {hint}") from None
    return o3d


def metric_depth_or_refuse(depth: np.ndarray, kind: str, *, relative: bool = False,
                           aligned: bool = False, metric: bool | None = None,
                           scene: bool = False) -> tuple[np.ndarray, str]:
    """The depth to build geometry from, and its units ("m", "scene" or "arbitrary").

    A metric map (``metric``, by default ``kind == "depth"``) or an aligned one is used as is.
    ``scene``: the map is a view of the scene whose camera and pose it is placed with (a
    ``localdepth scene`` map with that scene's ``cameras.json``): a relative depth map is then in
    the scene's units, the one scale its cameras and fused points share, and is used as is.
    A relative map has no scale: it is refused unless ``relative`` is set, and then a relative
    depth map is used as is and a disparity map through its :func:`pseudo_depth`, in arbitrary units.
    """
    if (kind == "depth" if metric is None else metric) or aligned:
        return np.asarray(depth, dtype=np.float32), "m"
    if scene and kind == "depth":
        return np.asarray(depth, dtype=np.float32), "scene"
    if not relative:
        what = ("depth with unknown scale, so the cloud would be in arbitrary units" if kind == "depth" else
                "inverse depth with unknown scale and shift, so a point cloud from it would be distorted")
        raise LocalDepthError(
            f"this map is relative ({what}); use a metric model, align it first (`localdepth align` / --points / "
            "--reference), or pass --relative to accept arbitrary units")
    if kind == "depth":
        return np.asarray(depth, dtype=np.float32), "arbitrary"
    return pseudo_depth(depth), "arbitrary"


@dataclass
class CloudInfo:
    path: str
    points: int
    units: str
    voxel_size: float | None
    normals: bool

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def colors_for(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """RGB image -> float64 ``(H, W, 3)`` colours in [0, 1] at the map's size (or None)."""
    if image is None:
        return None
    import cv2

    from .images import to_float

    rgb = to_float(image)
    if rgb.shape[:2] != tuple(shape):
        rgb = cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return rgb.astype(np.float64)


def make_point_cloud(depth: np.ndarray, K: np.ndarray, image: np.ndarray | None = None, *,
                     max_depth: float | None = None, voxel_size: float | None = None,
                     estimate_normals: bool = False, camera_from_world: np.ndarray | None = None):
    """An ``open3d.geometry.PointCloud`` from a z-depth map ``(H, W)`` and intrinsics ``K``.

    Points are in row-major pixel order (as Open3D's ``create_from_rgbd_image``), invalid
    depths (0, NaN, inf, beyond ``max_depth``) skipped. ``image``: RGB for colours.
    ``voxel_size`` (in the map's units) downsamples; ``estimate_normals`` adds normals
    oriented towards the camera. ``camera_from_world``: the camera's ``(4, 4)`` pose
    (world -> camera, as Open3D's ``extrinsic``); points are then in world coordinates.
    """
    o3d = _o3d()
    pts = unproject(depth, K)
    valid = np.isfinite(pts[..., 2])
    if max_depth is not None:
        valid &= pts[..., 2] <= max_depth
    world_from_camera = np.eye(4) if camera_from_world is None else invert_pose(camera_from_world)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(transform_points(pts[valid], world_from_camera)))
    colours = colors_for(image, depth.shape)
    if colours is not None:
        pcd.colors = o3d.utility.Vector3dVector(colours[valid])
    if voxel_size:
        pcd = pcd.voxel_down_sample(voxel_size)
    if estimate_normals and len(pcd.points) >= 3:
        radius = voxel_size * 3 if voxel_size else float(np.nanmedian(pts[valid][:, 2])) * 0.02 + 1e-9
        pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=30))
        pcd.orient_normals_towards_camera_location(world_from_camera[:3, 3])
    return pcd


def cloud_from_arrays(points: np.ndarray, colors: np.ndarray | None = None):
    """An ``open3d.geometry.PointCloud`` from ``(N, 3)`` points and ``(N, 3)`` uint8 RGB colours."""
    o3d = _o3d()
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    if colors is not None:
        pcd.colors = o3d.utility.Vector3dVector(np.asarray(colors, dtype=np.float64) / 255.0)
    return pcd


def make_mesh(depth: np.ndarray, K: np.ndarray, image: np.ndarray | None = None, *,
              edge_threshold: float = 0.05, max_depth: float | None = None,
              camera_from_world: np.ndarray | None = None):
    """An ``open3d.geometry.TriangleMesh`` from the depth grid.

    Each 2x2 block of valid pixels gives two triangles; a triangle whose corners' depths
    differ by more than ``edge_threshold`` (``max / min - 1``, 0.05 = 5 %) spans a depth
    discontinuity and is dropped, so foreground and background are not joined by "rubber
    sheets". Vertex colours come from ``image``. ``camera_from_world``: as for
    :func:`make_point_cloud`.
    """
    o3d = _o3d()
    h, w = depth.shape
    pts = unproject(depth, K)
    valid = np.isfinite(pts[..., 2])
    if max_depth is not None:
        valid &= pts[..., 2] <= max_depth
    index = np.full((h, w), -1, dtype=np.int64)
    index[valid] = np.arange(int(valid.sum()))
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    # counter-clockwise as seen from the camera (y down), so normals face the camera
    tris = np.concatenate([np.stack([a, c, b], axis=1), np.stack([b, c, d], axis=1)])
    tris = tris[(tris >= 0).all(axis=1)]
    z = pts[valid][:, 2][tris]
    tris = tris[z.max(axis=1) <= z.min(axis=1) * (1.0 + edge_threshold)].astype(np.int32)
    vertices = pts[valid] if camera_from_world is None else transform_points(pts[valid], invert_pose(camera_from_world))
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(tris))
    colours = colors_for(image, depth.shape)
    if colours is not None:
        mesh.vertex_colors = o3d.utility.Vector3dVector(colours[valid])
    mesh.remove_unreferenced_vertices()
    mesh.compute_vertex_normals()
    return mesh


def _check_suffix(path: Path, allowed: tuple[str, ...], what: str) -> None:
    if path.suffix.lower() not in allowed:
        raise LocalDepthError(f"{path}: unsupported {what} file type; use one of {', '.join(allowed)}")


def write_point_cloud(path: str | Path, pcd) -> None:
    o3d = _o3d()
    path = Path(path)
    _check_suffix(path, POINTCLOUD_SUFFIXES, "point cloud")
    with atomic_path(path) as tmp:
        if not o3d.io.write_point_cloud(str(tmp), pcd, write_ascii=False):
            raise LocalDepthError(f"{path}: Open3D could not write the point cloud")


def write_mesh(path: str | Path, mesh) -> None:
    """Write an ``open3d.geometry.TriangleMesh`` by the path's suffix. ``.glb`` goes through trimesh:
    Open3D's own GLB writer (0.19) declares buffer views its reader, Assimp, refuses ("Buffer view ...
    out of range"), so such a file opened nowhere but in trimesh."""
    o3d = _o3d()
    path = Path(path)
    _check_suffix(path, MESH_SUFFIXES, "mesh")
    if path.suffix.lower() == ".glb":
        atomic_write_bytes(path, _glb_bytes(mesh))
        return
    if path.suffix.lower() == ".gltf":
        mesh.triangle_normals = o3d.utility.Vector3dVector()  # glTF stores vertex normals only
    with atomic_path(path) as tmp:
        if not o3d.io.write_triangle_mesh(str(tmp), mesh):
            raise LocalDepthError(f"{path}: Open3D could not write the mesh")


def _glb_bytes(mesh) -> bytes:
    """Binary glTF of a mesh: positions as they are (the camera or world frame of the other formats), the
    triangles, vertex normals and vertex colours (RGBA uint8)."""
    try:
        import trimesh
    except ImportError:
        raise LocalDepthError("meshes as .glb need trimesh: pip install 'localdepth[geometry]'") from None
    colours = np.asarray(mesh.vertex_colors) if mesh.has_vertex_colors() else None
    tm = trimesh.Trimesh(vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.triangles),
                         vertex_normals=np.asarray(mesh.vertex_normals) if mesh.has_vertex_normals() else None,
                         vertex_colors=None if colours is None else np.rint(colours * 255).astype(np.uint8),
                         process=False)
    return tm.export(file_type="glb")


def export(depth: np.ndarray, kind: str, K: np.ndarray, image: np.ndarray | None = None, *,
           pointcloud: str | Path | None = None, mesh: str | Path | None = None, relative: bool = False,
           aligned: bool = False, voxel_size: float | None = None, estimate_normals: bool = False,
           max_depth: float | None = None, edge_threshold: float = 0.05, metric: bool | None = None,
           camera_from_world: np.ndarray | None = None, scene: bool = False) -> dict:
    """Write a point cloud and/or a mesh for one map; returns the sidecar entry.

    Refuses relative maps unless ``relative`` or ``aligned`` (see :func:`metric_depth_or_refuse`).
    ``camera_from_world``: the camera's pose; the geometry is then in world coordinates.
    ``scene``: the map is a view of the scene that pose comes from (see :func:`metric_depth_or_refuse`).
    """
    z, units = metric_depth_or_refuse(depth, kind, relative=relative, aligned=aligned, metric=metric, scene=scene)
    report: dict = {"units": units, "frame": "camera" if camera_from_world is None else "world"}
    if units == "scene":
        report["note"] = "a view of a scene: in the scene's units (relative; the scale its cameras and points share)"
    elif units != "m" and kind == "depth":
        report["note"] = "built from a relative depth map: arbitrary units (the scale is unknown), shapes are right"
    elif units != "m":
        report["note"] = ("built from a relative disparity map: arbitrary units, pseudo-depth (shapes are only "
                          "indicative: the disparity's scale and shift are unknown)")
        p1, p99 = pseudo_depth_range(depth) or (None, None)
        report["pseudo_depth"] = {"formula": PSEUDO_DEPTH_FORMULA, "p1": p1, "p99": p99}
    if pointcloud:
        pcd = make_point_cloud(z, K, image, max_depth=max_depth, voxel_size=voxel_size,
                               estimate_normals=estimate_normals, camera_from_world=camera_from_world)
        if len(pcd.points) == 0:
            raise LocalDepthError(f"{pointcloud}: no point to write: every depth in the {z.shape[1]}x{z.shape[0]} "
                                  "map is 0, NaN, infinite" + (" or beyond --max-depth" if max_depth is not None else ""))
        write_point_cloud(pointcloud, pcd)
        report["pointcloud"] = CloudInfo(str(pointcloud), len(pcd.points), units, voxel_size, estimate_normals).as_dict()
    if mesh:
        m = make_mesh(z, K, image, edge_threshold=edge_threshold, max_depth=max_depth,
                      camera_from_world=camera_from_world)
        if len(m.triangles) == 0:
            raise LocalDepthError(f"{mesh}: no triangle to write: a mesh needs 2x2 blocks of valid depth within "
                                  f"--edge-threshold ({edge_threshold:g}) of each other, and the "
                                  f"{z.shape[1]}x{z.shape[0]} map has none")
        write_mesh(mesh, m)
        report["mesh"] = {"path": str(mesh), "vertices": len(m.vertices), "triangles": len(m.triangles),
                          "units": units, "edge_threshold": edge_threshold}
    return report
