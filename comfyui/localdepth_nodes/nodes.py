"""The node classes. ComfyUI calls them as any custom node: ``INPUT_TYPES()`` for the sockets and
widgets, one instance per node in the graph (kept between runs, so a model loads once per node),
then the method named by ``FUNCTION`` with the inputs as keyword arguments; it returns a tuple
matching ``RETURN_TYPES``.

ComfyUI's types: ``IMAGE`` is a float32 torch tensor ``(B, H, W, 3)`` in [0, 1]; ``MASK`` a
float32 tensor ``(B, H, W)``. The depth travels as a ``MASK``: the normalised inverse depth (near =
1, far = 0) that depth ControlNets read, and that the 3D photo and stereo nodes take as a relative
disparity. Everything else is localdepth's own Python API: :func:`localdepth.load`,
:mod:`localdepth.render`.
"""

from __future__ import annotations

import numpy as np
import torch

from localdepth import load, registry
from localdepth.backends import BACKENDS, DTYPES
from localdepth.geometry import DEFAULT_FOV_DEG, from_fov
from localdepth.images import to_uint8
from localdepth.render import (DEFAULT_BUDGET, PATHS, Photo3DOptions, anaglyph, controlnet_depth,
                               depth_for_rendering, normalised_inverse_depth, prepare, render_view,
                               side_by_side_pair, stereo_views)

CATEGORY = "localdepth"


def images_to_arrays(image: torch.Tensor) -> list[np.ndarray]:
    """A ComfyUI ``IMAGE`` ``(B, H, W, C)`` float in [0, 1] -> B RGB uint8 arrays (rounded: an image that
    ComfyUI loaded from an 8-bit file comes back byte for byte)."""
    array = image.detach().cpu().float().numpy()
    if array.ndim == 3:
        array = array[None]
    return [to_uint8(np.ascontiguousarray(frame[..., :3])) for frame in array]


def arrays_to_images(arrays: list[np.ndarray]) -> torch.Tensor:
    """RGB uint8 arrays of one size -> a ComfyUI ``IMAGE`` ``(B, H, W, 3)`` float32 in [0, 1]."""
    return torch.from_numpy(np.stack(arrays).astype(np.float32) / 255.0)


def masks_to_arrays(mask: torch.Tensor, count: int) -> list[np.ndarray]:
    """A ComfyUI ``MASK`` ``(B, H, W)`` (or ``(H, W)``) -> ``count`` float32 maps (one mask serves every image)."""
    array = mask.detach().cpu().float().numpy()
    if array.ndim == 2:
        array = array[None]
    if len(array) not in (1, count):
        raise ValueError(f"{len(array)} depth masks for {count} images: give one, or one per image")
    return [array[i if len(array) > 1 else 0] for i in range(count)]


class LocalDepthDepth:
    """Depth of each image with any model of localdepth's registry, on any backend.

    ``depth``: the ControlNet depth picture (:func:`localdepth.render.controlnet_depth`: inverse depth
    over its min..max, near = white, 8-bit as ControlNet's preprocessors give it); ``depth_mask``: the
    same normalised inverse depth at full precision (near = 1), for the 3D photo and stereo nodes.
    """

    @classmethod
    def INPUT_TYPES(cls):
        # every model that predicts from one image alone (not those that need a prompt depth)
        names = [name for name in registry.names() if registry.get(name).prompt is None
                 or not registry.get(name).prompt.required]
        return {
            "required": {
                "image": ("IMAGE",),
                "model": (names, {"default": registry.DEFAULT_MODEL}),
                "backend": (list(BACKENDS), {"default": "auto"}),
                "device": (["auto", "cpu", "cuda", "mps"], {"default": "auto"}),
            },
            "optional": {
                "dtype": (list(DTYPES), {"default": "auto"}),
                "weights": ("STRING", {"default": "", "tooltip": "a weights file or folder instead of the cache"}),
                "input_size": ("INT", {"default": 0, "min": 0, "max": 8192,
                                       "tooltip": "network input size; 0 = the model's"}),
            },
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("depth", "depth_mask")
    FUNCTION = "estimate"
    CATEGORY = CATEGORY

    def __init__(self):
        self._estimator = None
        self._settings = None

    def estimator(self, model: str, backend: str, device: str, dtype: str, weights: str, input_size: int):
        """The model, loaded once per node instance (again only when a setting changes)."""
        settings = (model, backend, device, dtype, weights or None, input_size or None)
        if self._settings != settings:
            if self._estimator is not None:
                self._estimator.close()
            self._estimator = load(model, weights=weights or None, backend=backend, device=device, dtype=dtype,
                                   input_size=input_size or None)
            self._settings = settings
        return self._estimator

    def estimate(self, image, model, backend, device, dtype="auto", weights="", input_size=0):
        estimator = self.estimator(model, backend, device, dtype, weights, input_size)
        frames = images_to_arrays(image)
        results = estimator.predict(frames, batch_size=len(frames))
        pictures = [controlnet_depth(r.map, r.kind)[0] for r in results]
        masks = [normalised_inverse_depth(r.map, r.kind) for r in results]
        return arrays_to_images(pictures), torch.from_numpy(np.stack(masks).astype(np.float32))


class LocalDepthPhoto3D:
    """A 3D photo: the frames of a virtual camera moving in front of each image (``frames``: B x N
    images, image after image), and where the background had to be filled (``filled``, 1 = filled).
    ``depth``: a mask with near = 1 (the depth node's ``depth_mask``, or any normalised disparity)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE",),
                "depth": ("MASK",),
                "path": (list(PATHS), {"default": "circle"}),
                "seconds": ("FLOAT", {"default": 3.0, "min": 0.1, "max": 60.0, "step": 0.1}),
                "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 60.0, "step": 1.0}),
                "size": ("INT", {"default": 512, "min": 16, "max": 4096, "step": 2,
                                 "tooltip": "short side of the frames, pixels (at most the image's)"}),
            },
            "optional": {
                "amplitude": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.005,
                                        "tooltip": "camera movement, fraction of the focus depth; 0 = the path's default"}),
                "fov": ("FLOAT", {"default": DEFAULT_FOV_DEG, "min": 1.0, "max": 179.0, "step": 1.0,
                                  "tooltip": "horizontal field of view of the photo, degrees"}),
            },
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("frames", "filled")
    FUNCTION = "render"
    CATEGORY = CATEGORY

    def render(self, image, depth, path, seconds, fps, size, amplitude=0.0, fov=DEFAULT_FOV_DEG):
        frames, filled = [], []
        images = images_to_arrays(image)
        for rgb, disparity in zip(images, masks_to_arrays(depth, len(images))):
            h, w = rgb.shape[:2]
            options = Photo3DOptions(path=path, seconds=seconds, fps=fps, size=size, amplitude=amplitude or None)
            photo = prepare(rgb, disparity, "disparity", from_fov(fov, w, h), options)
            for view in photo.views:
                rendered = render_view(photo.scene, view)
                frames.append(rendered.image)
                filled.append(rendered.filled.astype(np.float32))
        return arrays_to_images(frames), torch.from_numpy(np.stack(filled))


class LocalDepthStereo:
    """A stereo pair from each image and its depth (``depth``: near = 1): ``side_by_side`` (left | right),
    the red-cyan ``anaglyph`` (Dubois), each eye, and ``filled`` (the side-by-side pixels whose
    background was filled). ``budget``: disparity of the nearest depth, percent of the width."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE",),
                "depth": ("MASK",),
                "budget": ("FLOAT", {"default": DEFAULT_BUDGET, "min": 0.1, "max": 20.0, "step": 0.1}),
            },
        }

    RETURN_TYPES = ("IMAGE", "IMAGE", "IMAGE", "IMAGE", "MASK")
    RETURN_NAMES = ("side_by_side", "anaglyph", "left", "right", "filled")
    FUNCTION = "render"
    CATEGORY = CATEGORY

    def render(self, image, depth, budget):
        pairs, glasses, lefts, rights, filled = [], [], [], [], []
        images = images_to_arrays(image)
        for rgb, disparity in zip(images, masks_to_arrays(depth, len(images))):
            h, w = rgb.shape[:2]
            if disparity.shape != (h, w):
                import cv2

                disparity = cv2.resize(disparity, (w, h), interpolation=cv2.INTER_LINEAR)
            z, _, _ = depth_for_rendering(disparity, "disparity")
            left, right, _ = stereo_views(rgb, z, from_fov(DEFAULT_FOV_DEG, w, h).K, budget=budget)
            pairs.append(side_by_side_pair(left.image, right.image))
            glasses.append(anaglyph(left.image, right.image))
            lefts.append(left.image)
            rights.append(right.image)
            filled.append(np.concatenate([left.filled, right.filled], axis=1).astype(np.float32))
        return (arrays_to_images(pairs), arrays_to_images(glasses), arrays_to_images(lefts), arrays_to_images(rights),
                torch.from_numpy(np.stack(filled)))


NODE_CLASS_MAPPINGS = {
    "LocalDepthDepth": LocalDepthDepth,
    "LocalDepthPhoto3D": LocalDepthPhoto3D,
    "LocalDepthStereo": LocalDepthStereo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LocalDepthDepth": "localdepth: depth",
    "LocalDepthPhoto3D": "localdepth: 3D photo",
    "LocalDepthStereo": "localdepth: stereo",
}
