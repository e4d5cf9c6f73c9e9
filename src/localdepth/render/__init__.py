"""Rendering from a photo and its depth: 3D photos, stereo pairs, anaglyphs, ControlNet pictures.

Builds on :mod:`localdepth.geometry`; pure functions on arrays (shapes and conventions in each
docstring) but for the encoders of :mod:`.photo3d`.

* :mod:`.scene`: the map as a z-depth for rendering, depth edges cut, the layered scene with an
  inpainted background layer;
* :mod:`.warp`: a view of the scene from a nearby camera (z-buffered splat, hole filling,
  backward bilinear sampling);
* :mod:`.paths`: camera paths of 3D photos (circle, swing, zoom-in, dolly-zoom);
* :mod:`.stereo`: stereo pairs with a disparity budget, Dubois red-cyan anaglyphs;
* :mod:`.controlnet`: depth ControlNet pictures (inverse depth, near = white) and their sizes;
* :mod:`.photo3d`: 3D photo videos (MP4, GIF, WebP).
"""

from .controlnet import controlnet_depth, controlnet_size, normalised_inverse_depth, resize_for_controlnet
from .paths import DEFAULT_AMPLITUDE, PATHS, camera_path
from .photo3d import OUTPUT_SUFFIXES, Photo3D, Photo3DOptions, prepare, render_to_file, write_frames
from .scene import LayeredScene, build_scene, cut_depth_edges, depth_for_rendering, depth_percentiles
from .stereo import DEFAULT_BUDGET, anaglyph, baseline_for_budget, side_by_side_pair, stereo_views
from .warp import Rendered, View, render_view

__all__ = [
    "DEFAULT_AMPLITUDE", "DEFAULT_BUDGET", "OUTPUT_SUFFIXES", "PATHS", "LayeredScene", "Photo3D", "Photo3DOptions",
    "Rendered", "View", "anaglyph", "baseline_for_budget", "build_scene", "camera_path", "controlnet_depth",
    "controlnet_size", "cut_depth_edges", "depth_for_rendering", "depth_percentiles", "normalised_inverse_depth",
    "prepare", "render_to_file", "render_view", "resize_for_controlnet", "side_by_side_pair", "stereo_views",
    "write_frames",
]
