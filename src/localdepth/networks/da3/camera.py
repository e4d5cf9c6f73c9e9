"""Depth Anything 3 cameras: the 9-number pose encoding, its decoder and its encoder.

Pose encoding per view: ``[t (3), q (4, x y z w), fov_h, fov_w]``, where ``[R(q) | t]`` is the
camera-to-world transform (OpenCV axes: x right, y down, z forward) and the fields of view are
in radians over the network input's height and width. Intrinsics follow as
``fx = (W/2) / tan(fov_w/2)``, ``fy = (H/2) / tan(fov_h/2)`` and ``(cx, cy) = (W/2, H/2)``, in
pixels of the network input, the principal point at the image centre in continuous coordinates
(pixel edges at integers), as upstream writes it and scales it when images are resized.
:func:`to_pixel_centres` gives localdepth's convention (pixel centres at integers).

* :class:`CameraDec` reads a view's camera token -> its pose encoding.
* :class:`CameraEnc` turns known cameras into tokens that replace the learnt camera tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import Block, Mlp

POSE_ENCODING_SIZE = 9
CAMERA_ENCODER_DEPTH = 4
CAMERA_ENCODER_HEADS = 16


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` quaternions ``(x, y, z, w)``, not necessarily unit -> ``(..., 3, 3)`` rotations."""
    x, y, z, w = q.unbind(-1)
    s = 2.0 / (q * q).sum(-1)
    return torch.stack([
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` rotations -> ``(..., 4)`` unit quaternions ``(x, y, z, w)`` with ``w >= 0``.

    Each of the four candidate formulas divides by the component it computes from the trace; the
    one with the largest such component is kept (numerically safe for every rotation).
    """
    m = R.reshape(R.shape[:-2] + (9,)).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    four = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    root = torch.sqrt(four.clamp(min=0))  # 2|w|, 2|x|, 2|y|, 2|z|
    candidates = torch.stack([  # rows: (w, x, y, z) * 2 * root_k, for k = w, x, y, z
        torch.stack([root[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, root[..., 1] ** 2, m10 + m01, m02 + m20], -1),
        torch.stack([m02 - m20, m10 + m01, root[..., 2] ** 2, m12 + m21], -1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, root[..., 3] ** 2], -1),
    ], -2) / (2.0 * root[..., None].clamp(min=0.1))
    best = root.argmax(-1)
    wxyz = torch.gather(candidates, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    xyzw = wxyz[..., [1, 2, 3, 0]]
    return torch.where(xyzw[..., 3:4] < 0, -xyzw, xyzw)


def invert_rigid(T: torch.Tensor) -> torch.Tensor:
    """Inverse of ``(..., 3|4, 4)`` rigid transforms ``[R | t]``: ``[R^T | -R^T t]`` (same shape)."""
    R, t = T[..., :3, :3], T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    return torch.cat([torch.cat([Rt, -Rt @ t], dim=-1), T[..., 3:, :]], dim=-2)


def decode_pose(encoding: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose encodings ``(..., 9)`` -> ``(camera_from_world (..., 4, 4), intrinsics (..., 3, 3))`` on an
    ``height x width`` input grid."""
    t, q, fov_h, fov_w = encoding[..., :3], encoding[..., 3:7], encoding[..., 7], encoding[..., 8]
    world_from_camera = torch.zeros(encoding.shape[:-1] + (4, 4), dtype=encoding.dtype, device=encoding.device)
    world_from_camera[..., :3, :3] = quaternion_to_matrix(q)
    world_from_camera[..., :3, 3] = t
    world_from_camera[..., 3, 3] = 1.0
    K = torch.zeros(encoding.shape[:-1] + (3, 3), dtype=encoding.dtype, device=encoding.device)
    K[..., 0, 0] = (width / 2.0) / torch.clamp(torch.tan(fov_w / 2.0), 1e-6)
    K[..., 1, 1] = (height / 2.0) / torch.clamp(torch.tan(fov_h / 2.0), 1e-6)
    K[..., 0, 2] = width / 2.0
    K[..., 1, 2] = height / 2.0
    K[..., 2, 2] = 1.0
    return invert_rigid(world_from_camera), K


def to_pixel_centres(K: torch.Tensor) -> torch.Tensor:
    """Intrinsics in continuous coordinates (pixel edges at integers) -> pixel centres at integers:
    the principal point moves by half a pixel, ``W/2`` becoming ``(W - 1)/2``."""
    K = K.clone()
    K[..., 0, 2] -= 0.5
    K[..., 1, 2] -= 0.5
    return K


def encode_pose(camera_from_world: torch.Tensor, K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`decode_pose` (up to the quaternion's sign): ``(..., 4, 4)`` poses and
    ``(..., 3, 3)`` intrinsics -> ``(..., 9)``."""
    world_from_camera = invert_rigid(camera_from_world)
    fov_h = 2 * torch.atan((height / 2) / K[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2) / K[..., 0, 0])
    return torch.cat([world_from_camera[..., :3, 3], matrix_to_quaternion(world_from_camera[..., :3, :3]),
                      fov_h[..., None], fov_w[..., None]], dim=-1).float()


class CameraDec(nn.Module):
    """Camera token ``(..., C)`` -> pose encoding ``(..., 9)``: an MLP trunk, then translation,
    rotation and (ReLU'd) field-of-view readouts."""

    def __init__(self, dim_in: int):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(dim_in, dim_in), nn.ReLU(), nn.Linear(dim_in, dim_in), nn.ReLU())
        self.fc_t = nn.Linear(dim_in, 3)
        self.fc_qvec = nn.Linear(dim_in, 4)
        self.fc_fov = nn.Sequential(nn.Linear(dim_in, 2), nn.ReLU())

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        h = self.backbone(token).float()
        return torch.cat([self.fc_t(h), self.fc_qvec(h), self.fc_fov(h)], dim=-1)


class CameraEnc(nn.Module):
    """Known cameras -> camera tokens ``(..., dim)``: pose encoding, MLP, four transformer blocks."""

    def __init__(self, dim: int):
        super().__init__()
        self.pose_branch = Mlp(POSE_ENCODING_SIZE, dim // 2, dim)
        self.token_norm = nn.LayerNorm(dim)
        self.trunk = nn.Sequential(*[Block(dim, CAMERA_ENCODER_HEADS, norm_eps=1e-5)
                                     for _ in range(CAMERA_ENCODER_DEPTH)])
        self.trunk_norm = nn.LayerNorm(dim)

    def forward(self, camera_from_world: torch.Tensor, K: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``(B, S, 4, 4)`` poses and ``(B, S, 3, 3)`` intrinsics on the input grid -> ``(B, S, dim)``."""
        tokens = self.token_norm(self.pose_branch(encode_pose(camera_from_world, K, height, width)))
        return self.trunk_norm(self.trunk(tokens))
