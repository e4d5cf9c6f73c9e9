"""Evaluating depth models on a dataset: predict -> (align) -> clamp -> metrics -> report.

Per image and model: the prediction is resized to the ground truth's size, aligned to the
ground truth over the evaluation mask (``alignment``, below), clamped to the depth range,
and scored over the mask (finite ground truth > 0, inside ``[min_depth, max_depth]`` and
the crop). Alignments (reusing :mod:`localdepth.align`):

=========================  =============================================================
``none``                   the prediction as is (metric models only)
``scale``                  one least-squares scale (in depth space for depth maps, metric
                           or relative (Depth Anything 3), in disparity space for disparity)
``scale-shift-disparity``  scale and shift of inverse depth (the MiDaS / Depth Anything
                           protocol for relative models; metric maps are inverted first)
``scale-shift-depth``      scale and shift of depth (relative maps are inverted first)
=========================  =============================================================

The model ``gt`` is the ground truth itself (an oracle): AbsRel 0 and δ1 1 by
construction, a check of the pipeline.

A frame with too few valid ground-truth pixels for the alignment (none at all, say, after
the depth range and the crop) is skipped and listed in the report's ``skipped`` with the
reason; it never ends the run. An unreadable frame is listed in ``failed``.

Models that take a prompt depth (Prompt Depth Anything) get a simulated low-resolution LiDAR: the
ground truth averaged over blocks of ``prompt_downsample`` x ``prompt_downsample`` pixels (valid
pixels only), as such models are evaluated with a phone's LiDAR beside a dense ground truth; the
report says so. Models that predict a camera (Depth Pro's field of view) are also scored on it
where the dataset knows the intrinsics: ``focal_abs_rel`` = |f_pred - f| / f.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .. import align as alignment
from ..errors import LocalDepthError
from ..safety import under_root
from .datasets import Dataset, Sample
from .metrics import METRICS, Aggregate, valid_mask

ALIGNMENTS = ("none", "scale", "scale-shift-disparity", "scale-shift-depth")
#: valid ground-truth pixels each alignment needs (a scale and a shift need two)
MIN_VALID_PIXELS = {"none": 1, "scale": 1, "scale-shift-disparity": 2, "scale-shift-depth": 2}
ORACLE = "gt"


@dataclass
class Predictor:
    """A model to evaluate: ``predict(rgb, sample) -> (map, kind)`` with kind "depth" or "disparity",
    or ``(map, kind, camera)`` with the :class:`~localdepth.geometry.Intrinsics` the model predicted."""

    label: str
    predict: Callable[[np.ndarray, Sample], tuple[np.ndarray, str]]
    info: dict = field(default_factory=dict)
    #: its depth maps are in metres (False: relative depth, as Depth Anything 3 predicts)
    metric: bool = True


def oracle() -> Predictor:
    return Predictor(ORACLE, lambda rgb, sample: (sample.depth(), "depth"),
                     {"model": ORACLE, "note": "the ground truth itself (a perfect model)"})


def simulated_lidar(gt: np.ndarray, factor: int) -> np.ndarray:
    """The ground truth ``(H, W)`` averaged over ``factor x factor`` blocks of valid pixels: a
    low-resolution depth sensor's view of the scene (0 where a block has no valid pixel)."""
    gt = np.asarray(gt, dtype=np.float32)
    valid = (np.isfinite(gt) & (gt > 0)).astype(np.float32)
    h, w = max(1, gt.shape[0] // factor), max(1, gt.shape[1] // factor)
    total = cv2.resize(np.where(valid > 0, gt, 0.0), (w, h), interpolation=cv2.INTER_AREA)
    count = cv2.resize(valid, (w, h), interpolation=cv2.INTER_AREA)
    return np.where(count > 0, total / np.maximum(count, 1e-12), 0.0).astype(np.float32)


def estimator_predictor(estimator, label: str | None = None, prompt_downsample: int = 8) -> Predictor:
    info = estimator.describe()
    takes_prompt = estimator.spec.prompt is not None
    if takes_prompt:
        info["prompt_depth"] = (f"simulated low-resolution LiDAR: the ground truth averaged over "
                                f"{prompt_downsample}x{prompt_downsample} blocks")

    def predict(rgb: np.ndarray, sample: Sample):
        prompts = [simulated_lidar(sample.depth(), prompt_downsample)] if takes_prompt else None
        if estimator.spec.metric_focal and sample.intrinsics and "fx" in sample.intrinsics:
            # the dataset's camera sets the metres of a focal-dependent model (Depth Anything 3 Metric)
            from ..geometry import camera_from_dict

            cam = camera_from_dict(sample.intrinsics, rgb.shape[1], rgb.shape[0])
            estimator.camera = {"intrinsics": f"{cam.fx!r},{cam.fy!r},{cam.cx!r},{cam.cy!r}"}
        r = estimator.predict_decoded([rgb], sources=[sample.rgb_path], prompt_depths=prompts)[0]
        return r.map, r.kind, r.intrinsics

    return Predictor(label or estimator.name, predict, info, metric=estimator.metric)


def focal_error(camera, sample: Sample, width: int, height: int) -> float | None:
    """|f_pred - f| / f (horizontal focal) for a predicted camera, where the sample states its intrinsics."""
    if camera is None or not sample.intrinsics or "fx" not in sample.intrinsics:
        return None
    from ..geometry import camera_from_dict

    known = camera_from_dict(sample.intrinsics, width, height)
    predicted = camera if (camera.width, camera.height) == (width, height) else camera.scaled(width, height)
    return abs(predicted.fx - known.fx) / known.fx


def align_prediction(pred: np.ndarray, kind: str, gt: np.ndarray, valid: np.ndarray, mode: str,
                     robust: str | None = None, metric: bool | None = None
                     ) -> tuple[np.ndarray, alignment.AlignmentFit | None]:
    """Metric depth from a prediction under alignment ``mode`` (see module docstring).

    ``metric``: a ``depth`` prediction is in metres (default: yes; Depth Anything 3's is not)."""
    if mode not in ALIGNMENTS:
        raise LocalDepthError(f"unknown alignment '{mode}'; choose from {', '.join(ALIGNMENTS)}")
    pred = np.asarray(pred, dtype=np.float64)
    if mode == "none":
        if kind != "depth" or metric is False:
            raise LocalDepthError("a relative model needs an alignment: --align scale-shift-disparity (or scale)")
        return pred.astype(np.float32), None
    if mode == "scale":
        space, scale_only, source = ("depth" if kind == "depth" else "disparity"), True, pred
    else:
        space = "disparity" if mode == "scale-shift-disparity" else "depth"
        scale_only = False
        wanted = "disparity" if space == "disparity" else "depth"
        if kind == wanted:
            source = pred
        else:  # invert: depth <-> inverse depth (the unknown shift makes this approximate for relative maps)
            with np.errstate(divide="ignore"):
                source = np.where(pred > 0, 1.0 / np.where(pred > 0, pred, 1.0), np.nan)
    usable = valid & np.isfinite(source)
    fit = alignment.fit_scale_shift(source, gt, usable, space=space, scale_only=scale_only, robust=robust)
    return fit.apply(np.where(np.isfinite(source), source, 0.0)), fit


def _resize(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if pred.shape == tuple(shape):
        return pred
    return cv2.resize(np.asarray(pred, dtype=np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


@dataclass
class EvalSettings:
    alignment: str = "scale-shift-disparity"
    robust: str | None = None
    min_depth: float | None = None  # None: the dataset's (per sample)
    max_depth: float | None = None
    crop: str | None = None  # None: the dataset's; "none": no crop
    error_maps: Path | None = None


def evaluate(predictors: list[Predictor], dataset: Dataset, settings: EvalSettings,
             progress: Callable[[str], None] | None = None) -> dict:
    """Run every predictor over every sample; returns the report (see :func:`to_markdown`)."""
    aggregates = {p.label: Aggregate() for p in predictors}
    rows: dict[str, list[dict]] = {p.label: [] for p in predictors}
    failed: list[dict] = []
    skipped: list[dict] = []
    for k, sample in enumerate(dataset.samples, 1):
        try:
            rgb = sample.rgb()
            gt = np.asarray(sample.depth(), dtype=np.float32)
        except Exception as e:  # one unreadable frame costs its own row only
            failed.append({"name": sample.name, "error": str(e).splitlines()[0] if str(e) else type(e).__name__})
            if progress:
                progress(f"[{k}/{len(dataset.samples)}] {sample.name}: skipped ({failed[-1]['error']})")
            continue
        lo = settings.min_depth if settings.min_depth is not None else sample.min_depth
        hi = settings.max_depth if settings.max_depth is not None else sample.max_depth
        crop = sample.crop if settings.crop is None else (None if settings.crop == "none" else settings.crop)
        try:
            valid = valid_mask(gt, sample.valid() if sample.valid else None, min_depth=lo, max_depth=hi, crop=crop)
        except ValueError as e:
            raise LocalDepthError(str(e)) from None
        n_valid = int(valid.sum())
        if n_valid < MIN_VALID_PIXELS.get(settings.alignment, 1):
            where = (f"in [{lo if lo is not None else 0:g}, {hi if hi is not None else 'inf'}] m"
                     + (f" inside the {crop} crop" if crop else ""))
            skipped.append({"name": sample.name, "reason": f"no valid ground truth ({n_valid} pixels {where})"})
            if progress:
                progress(f"[{k}/{len(dataset.samples)}] {sample.name}: skipped ({skipped[-1]['reason']})")
            continue
        clamp_hi = hi if hi is not None else float(gt[valid].max())
        for p in predictors:
            raw, kind, *camera = p.predict(rgb, sample)
            focal = focal_error(camera[0] if camera else None, sample, rgb.shape[1], rgb.shape[0])
            raw = _resize(raw, gt.shape)
            try:
                depth, fit = align_prediction(raw, kind, gt, valid, settings.alignment, settings.robust, p.metric)
            except ValueError as e:  # e.g. no finite prediction where the ground truth is valid
                failed.append({"name": f"{sample.name} ({p.label})", "error": str(e).splitlines()[0]})
                continue
            # the usual protocol: clamp predictions into the evaluated range
            depth = np.clip(np.nan_to_num(depth, nan=lo or 1e-3, posinf=clamp_hi or np.finfo(np.float32).max),
                            lo or 1e-3, clamp_hi if clamp_hi is not None else None)
            m = aggregates[p.label].add(depth, gt, valid)
            rows[p.label].append({"name": sample.name, **{key: m[key] for key in (*METRICS, "n")},
                                  "fit": fit.as_dict() if fit else None,
                                  **({"focal_abs_rel": focal} if focal is not None else {})})
            if settings.error_maps:
                write_error_map(under_root(settings.error_maps, f"{_safe(p.label)}/{_safe(sample.name)}.png"),
                                rgb, gt, depth, valid)
        if progress:
            progress(f"[{k}/{len(dataset.samples)}] {sample.name}")
    return {
        "dataset": dataset.name, "samples": len(dataset.samples), "alignment": settings.alignment,
        "robust": settings.robust, "min_depth": settings.min_depth, "max_depth": settings.max_depth,
        "crop": settings.crop, "failed": failed, "skipped": skipped,
        "average": "mean = mean over images of per-image metrics; pooled = over all valid pixels together",
        "models": {p.label: {"info": p.info, **aggregates[p.label].result(),
                             # a negative fitted scale means the map runs the wrong way (larger = farther
                             # for a "disparity" model): the figures then describe a flipped prediction
                             "negative_scale_fits": sum(bool(r["fit"] and r["fit"]["scale"] < 0) for r in rows[p.label]),
                             **_focal_summary(rows[p.label]),
                             "per_image": rows[p.label]}
                   for p in predictors},
    }


def _focal_summary(rows: list[dict]) -> dict:
    errors = [r["focal_abs_rel"] for r in rows if "focal_abs_rel" in r]
    return {"focal_abs_rel": float(np.mean(errors)), "focal_images": len(errors)} if errors else {}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


HEADERS = {"abs_rel": "AbsRel ↓", "sq_rel": "SqRel ↓", "rmse": "RMSE ↓", "rmse_log": "RMSE log ↓",
           "log10": "log10 ↓", "silog": "SILog ↓", "d1": "δ1 ↑", "d2": "δ2 ↑", "d3": "δ3 ↑"}


def to_markdown(report: dict, which: str = "mean") -> str:
    """The report as a Markdown table, one row per model (``which``: "mean" or "pooled")."""
    head = "| model | " + " | ".join(HEADERS[m] for m in METRICS) + " | images |"
    lines = [f"Dataset `{report['dataset']}` ({report['samples']} frames), alignment `{report['alignment']}`; "
             f"{'mean over images' if which == 'mean' else 'pooled over all pixels'}.", "",
             head, "|" + "---|" * (len(METRICS) + 2)]
    for label, res in report["models"].items():
        vals = " | ".join(f"{res[which][m]:.4f}" for m in METRICS)
        lines.append(f"| {label} | {vals} | {res['images']} |")
    if report.get("skipped"):
        lines += ["", f"{len(report['skipped'])} frame(s) skipped: no valid ground truth "
                  f"({', '.join(s['name'] for s in report['skipped'][:5])}"
                  f"{', …' if len(report['skipped']) > 5 else ''})."]
    flipped = [f"{label} ({res['negative_scale_fits']}/{res['images']})" for label, res in report["models"].items()
               if res.get("negative_scale_fits")]
    if flipped:
        lines += ["", "Negative fitted scales (the map correlates the wrong way with the ground truth): "
                  + ", ".join(flipped) + "."]
    focal = [f"{label} {res['focal_abs_rel']:.4f} ({res['focal_images']} images)"
             for label, res in report["models"].items() if "focal_abs_rel" in res]
    if focal:
        lines += ["", "Predicted focal length against the dataset's intrinsics, |f_pred - f| / f: " + ", ".join(focal) + "."]
    prompted = [label for label, res in report["models"].items() if res["info"].get("prompt_depth")]
    if prompted:
        lines += ["", f"Prompt depth for {', '.join(prompted)}: {report['models'][prompted[0]]['info']['prompt_depth']}."]
    return "\n".join(lines) + "\n"


def write_error_map(path: Path, rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, valid: np.ndarray) -> None:
    """Picture ``image | ground truth | prediction | AbsRel error`` (error 0..0.5, black = not evaluated).

    Depths share one colour range (the ground truth's 1st-99th percentile), closer = warmer.
    """
    from ..images import to_uint8
    from ..writers import atomic_write_bytes, colorize, colormap_lut, encode_rgb_png

    h, w = gt.shape
    image = to_uint8(rgb)
    if image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    if valid.any():
        vmin, vmax = (float(v) for v in np.percentile(gt[valid], (1, 99)))
    else:
        vmin, vmax = 0.0, 1.0
    gt_pic, _ = colorize(np.where(valid, gt, 0.0), "depth", vmin=vmin, vmax=vmax)
    gt_pic[~valid] = 0
    pred_pic, _ = colorize(pred, "depth", vmin=vmin, vmax=vmax)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(valid, np.abs(pred - gt) / gt, 0.0)
    err_pic = colormap_lut("magma")[np.rint(np.clip(err / 0.5, 0, 1) * 255).astype(np.uint8)]
    err_pic[~valid] = 0
    atomic_write_bytes(path, encode_rgb_png(np.concatenate([image, gt_pic, pred_pic, err_pic], axis=1)))
