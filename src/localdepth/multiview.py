"""Several views of one scene through an any-view network together (Depth Anything 3).

:func:`predict_views` decodes and preprocesses the views as single images are (longer side to
the processing resolution, sides to multiples of 14), runs them through the network in one
forward pass as views of one scene, and returns one :class:`~localdepth.postprocess.DepthResult`
per view, in the given order, at that view's own resolution, with its confidence, its intrinsics
(pixels of that image) and its ``camera_from_world`` pose (OpenCV axes). All poses share one
world frame: the camera of the reference view, which the network picks among three or more
views (the official ``saddle_balanced`` strategy by default; ``first``, ``middle`` and
``saddle_sim_range`` as upstream). Depth is in the network's relative units (one scale for all
views), consistent with the poses' translations.

Views of different sizes are centre-cropped to the smallest network grid, as the reference
does; the cropped-off border of a view has no prediction (NaN depth, zero confidence). A view
whose grid would leave another view less than :data:`~localdepth.limits.SCENE_MIN_SHARED_GRID`
of its own cannot share the grid (:func:`shared_grid`): :func:`predict_views` refuses it in one
line, and ``localdepth scene`` and the server leave it out and compute the rest without it.

Memory: the backbone's activations grow linearly with the number of views (its cross-view
attention runs through PyTorch SDPA, whose CPU and CUDA kernels do not store the attention
matrix) and the head decodes :data:`~localdepth.networks.da3.heads.HEAD_CHUNK` views at a time.
One call takes at most ``max_views`` views (:data:`MAX_VIEWS` by default); more is refused.

On the GPU pipeline (:attr:`~localdepth.estimator.DepthEstimator.device_pipeline`) each view's 8-bit
pixels go to the device and are resized there, and each map comes back at its view's size: the
device holds the views' network inputs, the network's activations and the maps being resized, as
on the CPU path, never the decoded images of all views.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from . import limits
from .errors import LocalDepthError
from .postprocess import DepthResult

#: most views one call takes (about 1k tokens per view at the default 504 px)
MAX_VIEWS = 64


def shared_grid(grids: Sequence[tuple[int, int]],
                min_share: float = limits.SCENE_MIN_SHARED_GRID) -> tuple[list[int], tuple[int, int]]:
    """Which views can go through the network on one grid: ``(kept indices, (height, width) of the
    common grid)``. The common grid is the smallest height and width of the kept views' grids
    (centre crops); while it would keep less than ``min_share`` of some kept view's grid, the view
    whose grid is the most unlike the others' (the smallest side against the median) is left out.
    """
    keep = list(range(len(grids)))
    while True:
        th, tw = min(grids[i][0] for i in keep), min(grids[i][1] for i in keep)
        if len(keep) == 1 or min(th * tw / (grids[i][0] * grids[i][1]) for i in keep) >= min_share:
            return keep, (th, tw)
        med_h = float(np.median([grids[i][0] for i in keep]))
        med_w = float(np.median([grids[i][1] for i in keep]))
        keep.remove(min(keep, key=lambda i: min(grids[i][0] / med_h, grids[i][1] / med_w)))


def grid_outcasts(estimator, shapes: Sequence[tuple[int, int]]) -> dict[int, str]:
    """The views (by index) that cannot share the scene's network grid (:func:`shared_grid`), each
    with a one-line reason; ``shapes`` are the views' ``(height, width)``. Empty for an estimator
    without a network grid of its own."""
    size = getattr(estimator, "network_size", None)
    if size is None or len(shapes) < 2:
        return {}
    grids = [tuple(size(int(h), int(w))) for h, w in shapes]
    keep, (th, tw) = shared_grid(grids)
    if len(keep) == len(grids):
        return {}
    reasons = {}
    for i in sorted(set(range(len(grids))) - set(keep)):
        (h, w), (gh, gw) = shapes[i], grids[i]
        share = min(min(th, gh) * min(tw, gw) / (grids[k][0] * grids[k][1]) for k in keep)
        reasons[i] = (f"its {w}x{h} image gives a {gw}x{gh} network input, which cannot share the scene's {tw}x{th} "
                      f"grid (the others would keep {share:.1%} of theirs, at least "
                      f"{limits.SCENE_MIN_SHARED_GRID:.0%} must stay); left out of the scene")
    return reasons


def _centre_crop_box(h: int, w: int, th: int, tw: int) -> tuple[int, int]:
    """Top-left corner of a centred ``th x tw`` crop of ``h x w`` (the reference's rounding)."""
    return int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))


def predict_views(estimator, images: Sequence, *, sources: Sequence[str | None] | None = None,
                  reference_strategy: str = "saddle_balanced", max_views: int | None = None,
                  keep_image: bool = False) -> list[DepthResult]:
    """See the module docstring and :meth:`localdepth.estimator.DepthEstimator.predict_views`.

    ``images``: paths, encoded bytes, PIL images or arrays (as :meth:`DepthEstimator.predict`);
    ``sources``: what each result records as its source (default: the paths given).
    """
    from .networks.da3.backbone import REFERENCE_STRATEGIES

    spec = estimator.spec
    if "views" not in spec.predicts:
        raise LocalDepthError(f"{spec.name} predicts one image at a time; several views need an any-view model "
                              "(da3-small, da3-base, da3-large or da3-giant)")
    if estimator.backend.name != "torch":
        raise LocalDepthError("several views run on the PyTorch backend only; use --backend torch")
    if reference_strategy not in REFERENCE_STRATEGIES:
        raise LocalDepthError(f"unknown reference view strategy '{reference_strategy}'; "
                              f"choose one of {', '.join(REFERENCE_STRATEGIES)}")
    limit = MAX_VIEWS if max_views is None else max_views
    items = list(images)
    if not items:
        raise LocalDepthError("no views given")
    if len(items) > limit:
        raise LocalDepthError(f"{len(items)} views is over the limit of {limit} per scene; "
                              "sample fewer views (e.g. a larger --stride) or raise max_views")
    if sources is None:
        sources = [str(i) if isinstance(i, (str, os.PathLike)) else None for i in items]
    sources = list(sources)
    if len(sources) != len(items):
        raise LocalDepthError(f"{len(sources)} sources for {len(items)} views")

    t0 = time.perf_counter()
    decoded = [estimator._decode(item) for item in items]
    decode_ms = (time.perf_counter() - t0) * 1000 / len(items)
    outcasts = grid_outcasts(estimator, [img.shape[:2] for img in decoded])
    if outcasts:
        i, reason = next(iter(outcasts.items()))
        raise LocalDepthError(f"view {i} ({sources[i] or 'array'}): {reason}; give the views without it "
                              "(`localdepth scene` and the server leave such views out themselves)")
    t0 = time.perf_counter()
    if estimator.device_pipeline:  # each view resized on the device; the stack stays there
        inputs = [estimator.network_batch([img])[0] for img in decoded]
    else:
        inputs = [estimator.preprocess(img) for img in decoded]
    grids = [tuple(int(v) for v in x.shape[1:]) for x in inputs]
    th, tw = min(g[0] for g in grids), min(g[1] for g in grids)
    corners = [_centre_crop_box(g[0], g[1], th, tw) for g in grids]
    crops = [x[:, top:top + th, left:left + tw] for x, (top, left) in zip(inputs, corners)]
    pre_ms = (time.perf_counter() - t0) * 1000 / len(items)

    t0 = time.perf_counter()
    if estimator.device_pipeline:
        import torch

        out = estimator.backend.run_tensor(torch.stack(crops), same_scene=True,
                                           reference_strategy=reference_strategy)
        out = {k: list(v) for k, v in out.items()}  # per view, to put each crop back on its grid
        for j, (grid, (top, left)) in enumerate(zip(grids, corners)):
            if (top, left, th, tw) != (0, 0, *grid):
                _uncrop_tensors(out, j, grid, (top, left, th, tw))
        finish = estimator.device_results(out, decoded, grids, sources, t0, keep_image)
        results = finish()
        infer_ms = None
    else:
        out = estimator.run_network(np.stack(crops), same_scene=True, reference_strategy=reference_strategy)
        infer_ms = (time.perf_counter() - t0) * 1000 / len(items)
        results = []
        for j, (image, grid, (top, left)) in enumerate(zip(decoded, grids, corners)):
            if (top, left, th, tw) != (0, 0, *grid):  # put the crop back on the view's full grid
                _uncrop(out, j, grid, (top, left, th, tw))
            results.append(estimator._result(out, j, image, tuple(grid), sources[j], infer_ms, keep_image))

    for j, (result, grid, (top, left)) in enumerate(zip(results, grids, corners)):
        result.timings = {"decode": decode_ms, "preprocess": pre_ms, **result.timings}
        result.notes["views"] = {"count": len(items), "index": j, "reference_strategy": reference_strategy,
                                 "world_frame": "the reference view's camera (OpenCV axes)"}
        if (top, left, th, tw) != (0, 0, *grid):
            result.notes["views"]["cropped"] = {"network_grid": list(grid), "kept": [top, left, th, tw],
                                                "note": "centre crop to the smallest view; no depth outside it"}
    return results


def _uncrop(out, j: int, grid: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    """Network output ``j`` on the cropped grid ``box = (top, left, h, w)`` -> on the view's full grid
    (NaN depth, zero confidence outside the crop)."""
    top, left, h, w = box
    full = np.full(grid, np.nan, dtype=np.float32)
    full[top:top + h, left:left + w] = out.depth[j]
    out.depth = _replace_row(out.depth, j, full)
    if out.confidence is not None:
        conf = np.zeros(grid, dtype=np.float32)
        conf[top:top + h, left:left + w] = out.confidence[j]
        out.confidence = _replace_row(out.confidence, j, conf)
    if out.intrinsics is not None:
        out.intrinsics = out.intrinsics.copy()
        out.intrinsics[j, 0, 2] += left
        out.intrinsics[j, 1, 2] += top


def _uncrop_tensors(out: dict, j: int, grid: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    """:func:`_uncrop` for the device pipeline's per-view lists of device tensors."""
    import torch

    top, left, h, w = box
    depth = out["depth"][j]
    full = torch.full(grid, float("nan"), dtype=depth.dtype, device=depth.device)
    full[top:top + h, left:left + w] = depth
    out["depth"][j] = full
    if "confidence" in out:
        conf = out["confidence"][j]
        full = torch.zeros(grid, dtype=conf.dtype, device=conf.device)
        full[top:top + h, left:left + w] = conf
        out["confidence"][j] = full
    if "intrinsics" in out:
        K = out["intrinsics"][j].clone()
        K[0, 2] += left
        K[1, 2] += top
        out["intrinsics"][j] = K


def _replace_row(stack, j: int, row: np.ndarray):
    """``stack`` with item ``j`` replaced (a list once item shapes differ)."""
    items = list(stack)
    items[j] = row
    return items
