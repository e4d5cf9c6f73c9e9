"""Speed of 3D photos: a 4-second 720p video at 30 fps from a 12 MP photo, beside the time of its depth.

    PYTHONPATH=src python benchmarks/photo3d_speed.py                       # every path, PyDNet++ and DA2-Small
    PYTHONPATH=src python benchmarks/photo3d_speed.py --paths circle --models pydnet

The photo is the shared ``demo01.jpg`` enlarged to 12 megapixels (4243 x 2822). The depth comes
from the real PyDNet++ network (shared file) and from Depth Anything V2 Small with random weights
of the released architecture (same FLOPs; the released weights are not on this machine), each on
the backend ``auto`` picks. The video's time is everything after the depth exists: the scene
(depth conversion, edges, background layer), every frame, the H.264 encoding, the file. Wall
and CPU seconds are both printed (the machine may be shared: the load average is printed too).
The target (docs/photo3d.md): under 20 s of wall time on the 2-core development VM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOCALDEPTH_SHARED", ROOT.parent / "shared"))
TARGET_S = 20.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def twelve_megapixels(photo: Path):
    import cv2

    from localdepth.images import load_image

    image = load_image(photo)
    h, w = image.shape[:2]
    scale = (12_000_000 / (w * h)) ** 0.5
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)


def load_model(name: str, folder: Path):
    import localdepth
    from localdepth import registry
    from localdepth.bench.arch import random_weights_folder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "pydnet":
            return localdepth.load("pydnet", weights=SHARED / "models" / "pydnet" / "optimized_pydnet++.tflite"), "real"
        weights = random_weights_folder(registry.get(name), folder / name)
        return localdepth.load(name, weights=weights), "random weights of the released architecture"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photo", type=Path, default=SHARED / "data" / "images" / "demo01.jpg")
    p.add_argument("--models", default="pydnet,depth-anything-v2-small")
    p.add_argument("--paths", default="circle,swing,zoom-in,dolly-zoom")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--size", type=int, default=720)
    p.add_argument("--json", type=Path, help="also write the measurements here")
    args = p.parse_args()

    from localdepth.geometry import resolve_intrinsics
    from localdepth.render import Photo3DOptions, prepare, render_to_file

    load_before = os.getloadavg()
    image = twelve_megapixels(args.photo)
    h, w = image.shape[:2]
    rows, depth_rows = [], []
    with tempfile.TemporaryDirectory(prefix="localdepth-photo3d-bench-") as tmp:
        folder = Path(tmp)
        maps = {}
        for name in args.models.split(","):
            model, weights = load_model(name, folder)
            model.predict_decoded([image])  # warm-up (first-run conversions, allocations)
            t0, c0 = time.perf_counter(), cpu_seconds()
            result = model.predict_decoded([image])[0]
            depth_rows.append({"model": name, "weights": weights,
                               "backend": f"{model.backend.name} {model.backend.dtype}",
                               "depth_s": round(time.perf_counter() - t0, 2), "depth_cpu_s": round(cpu_seconds() - c0, 2)})
            maps[name] = result
            model.close()
        camera = resolve_intrinsics(w, h)
        result = maps[args.models.split(",")[0]]
        for path in args.paths.split(","):
            options = Photo3DOptions(path=path, seconds=args.seconds, fps=args.fps, size=args.size)
            t0, c0 = time.perf_counter(), cpu_seconds()
            photo = prepare(image, result.map, result.kind, camera, options, metric=result.metric)
            prepared = time.perf_counter() - t0
            written = render_to_file(photo, folder / f"{path}.mp4")
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            rows.append({"path": path, "frames": written["frames"], "size": f"{photo.info['width']}x{photo.info['height']}",
                         "prepare_s": round(prepared, 2), "render_s": written["render_s"], "encode_s": written["encode_s"],
                         "total_s": round(wall, 2), "cpu_s": round(cpu, 2),
                         "ms_per_frame": round(1000 * wall / written["frames"], 1),
                         "background_points": photo.info["background_points"], "band_px": photo.info["band_px"]})
    load_after = os.getloadavg()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    try:
        machine = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")) \
            + f", {os.cpu_count()} cores"
    except (OSError, StopIteration):
        pass

    print(f"Machine: {machine}; load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} before, "
          f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} after")
    print(f"Photo: {args.photo.name} enlarged to {w}x{h} ({w * h / 1e6:.1f} MP); video {args.seconds:g} s at "
          f"{args.fps:g} fps, short side {args.size}\n")
    print("| model | weights | backend | depth of the 12 MP photo, s (CPU s) |\n|---|---|---|---|")
    for r in depth_rows:
        print(f"| {r['model']} | {r['weights']} | {r['backend']} | {r['depth_s']} ({r['depth_cpu_s']}) |")
    print(f"\nVideos from the {args.models.split(',')[0]} depth (after it exists):\n")
    print("| path | frames | size | scene s | frames s | encoding s | total s | CPU s | ms/frame | target < "
          f"{TARGET_S:g} s |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        verdict = "met" if r["total_s"] < TARGET_S else "missed"
        print(f"| {r['path']} | {r['frames']} | {r['size']} | {r['prepare_s']} | {r['render_s']} | {r['encode_s']} | "
              f"{r['total_s']} | {r['cpu_s']} | {r['ms_per_frame']} | {verdict} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "load_before": load_before, "load_after": load_after,
                                         "photo": [w, h], "depth": depth_rows, "videos": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
