"""How close localdepth's Depth Anything V2 maps are to the official code, cause by cause, and
what the official position-embedding rule costs.

    PYTHONPATH=src python benchmarks/reference_fidelity.py [--photo ../shared/data/images/demo01.jpg]

Builds the official ``DepthAnythingV2`` (``../shared/reference/depth-anything-v2``, relative and
metric_depth) at the tests' tiny size with random weights, loads the same weights through
localdepth, and prints the mean relative error ``mean|ours - official| / mean|official|`` of the
maps against the official ``infer_image`` on one photo, for each combination of the two
measured causes:

* the final resize: ``bilinear`` (``align_corners=False``, what localdepth did with
  ``cv2.INTER_LINEAR``) or ``bilinear-corners`` (``align_corners=True``, the official one);
* the position embeddings: ``transformers`` (Transformers' DINOv2 port) or ``dinov2`` (the
  official rule, :mod:`localdepth.networks.dinov2`);

with the random position embedding of the initialisation and with a smooth one (closer to
trained weights). Then times the position-embedding resize by each rule (the only place the two
differ), interleaved, with medians, their ratio, and a whole ViT-S forward pass for scale.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mean_relative_error(ours, official) -> float:
    import numpy as np

    return float(np.abs(ours - official).mean() / np.abs(official).mean())


def fidelity_rows(photo: Path, input_size: int) -> list[str]:
    import cv2

    import localdepth
    from localdepth.postprocess import to_original_size
    from localdepth.registry import Postprocessing

    sys.path.insert(0, str(ROOT / "tests"))
    import da2_reference as official_code  # the tests' builder: one definition of the oracle

    rows = []
    bgr = cv2.imread(str(photo))
    h, w = bgr.shape[:2]
    for kind in ("relative", "metric"):
        name = "depth-anything-v2-small" if kind == "relative" else "depth-anything-v2-metric-indoor-small"
        for smooth in (False, True):
            model = official_code.build_reference(kind, smooth_pos_embed=smooth)
            expected = model.infer_image(bgr, input_size)
            with tempfile.TemporaryDirectory() as tmp:
                folder = official_code.save_as_hf(model, Path(tmp), kind)
                # PyTorch: the network itself is compared (auto would pick OpenVINO on x86 CPUs)
                est = localdepth.load(name, weights=folder, backend="torch", device="cpu", input_size=input_size)
            x = est.preprocess(localdepth.images.load_image(photo))[None]
            embeddings = est.backend.model.model.backbone.embeddings
            for rule in ("transformers", "dinov2"):
                if rule == "transformers":  # the class's own method again
                    patched = embeddings.__dict__.pop("interpolate_pos_encoding")
                raw = est.infer(x)[0]
                if rule == "transformers":
                    embeddings.interpolate_pos_encoding = patched
                for resize, corners in (("bilinear", False), ("bilinear-corners", True)):
                    post = Postprocessing(interpolation="bilinear", align_corners=corners)
                    ours = to_original_size(raw, h, w, est.kind, post)
                    rows.append(f"| {kind} | {'smooth' if smooth else 'random'} | {resize} | {rule} | "
                                f"{mean_relative_error(ours, expected):.2e} |")
    return rows


def timing_rows(runs: int, height: int, width: int) -> list[str]:
    """The two rules differ only in the position-embedding resize, so time that call alone (on the
    embeddings of ViT-S and ViT-L, interleaved) and set it against a whole ViT-S forward pass."""
    import torch
    from transformers import Dinov2Config
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings, Dinov2Model

    from localdepth.networks.dinov2 import reference_interpolate_pos_encoding

    rows = []
    for label, dim in (("ViT-S", 384), ("ViT-L", 1024)):
        embeddings = Dinov2Embeddings(Dinov2Config(hidden_size=dim, patch_size=14, image_size=518)).eval()
        tokens = torch.zeros(1, 1 + (height // 14) * (width // 14), dim)
        rules = {"transformers": lambda: embeddings.interpolate_pos_encoding(tokens, height, width),
                 "dinov2": lambda: reference_interpolate_pos_encoding(embeddings, tokens, height, width)}
        times = {k: [] for k in rules}
        with torch.inference_mode():
            for _ in range(runs * 20):
                for rule, call in rules.items():
                    t0 = time.perf_counter()
                    call()
                    times[rule].append((time.perf_counter() - t0) * 1000)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows += [f"| {label} | {k} | {med[k]:.3f} | {med[k] / med['transformers']:.2f} |" for k in rules]
    torch.manual_seed(0)
    vit_s = Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                     patch_size=14, image_size=518)).eval()
    x = torch.randn(1, 3, height, width)
    with torch.inference_mode():
        vit_s(pixel_values=x)
        forward = []
        for _ in range(max(3, runs // 2)):
            t0 = time.perf_counter()
            vit_s(pixel_values=x)
            forward.append((time.perf_counter() - t0) * 1000)
    rows.append(f"| ViT-S backbone, whole forward pass | - | {statistics.median(forward):.0f} | - |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", type=Path, default=ROOT.parent / "shared" / "data" / "images" / "demo01.jpg")
    ap.add_argument("--input-size", type=int, default=518)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--size", type=int, nargs=2, default=(518, 784), metavar=("H", "W"),
                    help="network input for the timing (default: demo01's 518x784)")
    args = ap.parse_args()
    import torch

    print("$ " + " ".join(["python", *sys.argv]))
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print(f"\nmean relative error against the official infer_image on {args.photo.name} (input {args.input_size})\n")
    print("| model | position embedding weights | final resize | position rule | mean relative error |")
    print("|---|---|---|---|---|")
    print("\n".join(fidelity_rows(args.photo, args.input_size)))
    print(f"\nposition-embedding resize for a {args.size[0]}x{args.size[1]} input, {args.runs * 20} "
          f"interleaved calls each, median ms\n")
    print("| table | position rule | median ms | x transformers |")
    print("|---|---|---|---|")
    print("\n".join(timing_rows(args.runs, *args.size)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
