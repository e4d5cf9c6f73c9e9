"""The known-answer set-up of tests/test_finetune.py (and benchmarks/finetune_known_answer.py).

A *teacher* (random weights of the real Depth Anything architecture, tiny widths) labels square
views of the shared photos; a *student* (the teacher with its head re-initialised) is fine-tuned on
the labels of some photos and compared with the teacher on the others. The views are square and
as large as the network input, so a training crop is the whole view and the labels are exactly
what the teacher predicts for what the student sees.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch

from conftest import RGBD, _lift_relative_head, _rescale_output, save_tiny_depth_anything
from localdepth.images import load_image

SIZE = 70  # network input and view size: 5 x 5 patches of 14
METRIC = "depth-anything-v2-metric-indoor-small"
RELATIVE = "depth-anything-v2-small"
HELD = (0, 4, 7, 12)  # photos whose views validate; the other 11 train


def photos(shared_images: Path) -> list[Path]:
    return (sorted(shared_images.glob("*.jpg")) + [RGBD / "tum" / "color.png"]
            + sorted((RGBD / "livingroom" / "color").glob("*.jpg")) + sorted((RGBD / "kitti" / "rgb").glob("*.png")))


def teacher_and_student(root: Path, mode: str) -> tuple[Path, Path]:
    """A tiny random teacher whose output spreads over its range (metric: sigmoid inputs 0 +- 1.5,
    1 to 19 m; relative: the conftest lift, disparity 4 +- 1), and the student: the same network
    with its head (conv1, conv2, conv3) drawn again from another seed."""
    from transformers import DepthAnythingForDepthEstimation

    teacher = save_tiny_depth_anything(root / "teacher", mode, 20, seed=1)
    if mode == "metric":
        model = DepthAnythingForDepthEstimation.from_pretrained(str(teacher))
        x = torch.randn(1, 3, SIZE, 98, generator=torch.Generator().manual_seed(0))
        _rescale_output(model.head.conv3, lambda: model(pixel_values=x), 0.0, 1.5)
        model.save_pretrained(teacher)
    model = DepthAnythingForDepthEstimation.from_pretrained(str(teacher))
    torch.manual_seed(123)
    for conv in model.head.modules():
        if isinstance(conv, torch.nn.Conv2d):
            torch.nn.init.normal_(conv.weight, std=model.config.initializer_range)
            torch.nn.init.zeros_(conv.bias)
    if mode == "relative":
        _lift_relative_head(model)  # a dead ReLU head could not learn anything
    student = root / "student"
    model.save_pretrained(student)
    shutil.copy(teacher / "preprocessor_config.json", student)
    return teacher, student


def labelled_views(root: Path, shared_images: Path, teacher: Path, mode: str) -> None:
    """Three square views (left, centre, right) of each photo at SIZE px, the teacher's depth of each
    as .npy (relative: 1 / disparity, 0 where the disparity is 0), and manifests train.csv / held.csv."""
    import localdepth

    est = localdepth.load(METRIC if mode == "metric" else RELATIVE, weights=teacher, backend="torch",
                          input_size=SIZE)
    (root / "views").mkdir()
    rows: dict[str, list[str]] = {"train": [], "held": []}
    for i, photo in enumerate(photos(shared_images)):
        full = load_image(photo)
        h, w = full.shape[:2]
        side = min(h, w)
        for k, f in enumerate((0.0, 0.5, 1.0)):
            top, left = int((h - side) * f), int((w - side) * f)
            rgb = cv2.resize(full[top:top + side, left:left + side], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            stem = f"p{i:02d}_{k}"
            cv2.imwrite(str(root / "views" / f"{stem}.png"), rgb[:, :, ::-1])
            out = est.predict(rgb).map
            depth = out if mode == "metric" else np.where(out > 0, 1.0 / np.maximum(out, 1e-9), 0.0)
            np.save(root / "views" / f"{stem}.npy", depth.astype(np.float32))
            rows["held" if i in HELD else "train"].append(f"views/{stem}.png,views/{stem}.npy,1,photo{i:02d}")
    for name, lines in rows.items():
        (root / f"{name}.csv").write_text("rgb,depth,depth_scale,scene\n" + "\n".join(lines) + "\n")


def held_abs_rel(weights: Path, data: Path, model: str, trained: bool = False) -> float:
    """AbsRel of ``weights`` against the teacher's labels of the held views, computed here, apart from
    the trainer's own validation (metric: as predicted; relative: after the usual scale-and-shift
    fit in disparity, by the evaluator's alignment)."""
    import localdepth
    from localdepth.evaluation.evaluate import align_prediction
    from localdepth.evaluation.metrics import compute_metrics

    est = localdepth.load(model, weights=weights, backend="torch", input_size=SIZE)
    errors = []
    for row in csv.DictReader((data / "held.csv").open()):
        gt = np.load(data / row["depth"])
        pred = est.predict(load_image(data / row["rgb"])).map
        valid = gt > 0
        depth, fit = align_prediction(pred, est.kind, gt, valid, "none" if est.metric else "scale-shift-disparity")
        # a trained disparity map runs the right way (larger = closer): a negative fitted scale would mean
        # the network learnt depth, which an affine fit over a narrow range would otherwise hide
        assert not trained or fit is None or fit.scale > 0, f"{row['rgb']}: fitted scale {fit.scale:.3g}"
        depth = np.clip(np.nan_to_num(depth, nan=1e-3), 1e-3, gt[valid].max())
        errors.append(compute_metrics(depth, gt, valid)["abs_rel"])
    return float(np.mean(errors))
