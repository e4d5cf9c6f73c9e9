"""Peak memory and time of `localdepth scene` around the network: views, maps, fusion and writers.

    PYTHONPATH=src python benchmarks/scene_memory.py --views 8 32 --size 1920x1440

For each view count, a fresh process decodes that many copies of a shared photo resized to
``--size``, has a stand-in any-view model return a depth, a confidence and a camera per view
(a slanted plane seen from cameras stepping sideways: no network, so only localdepth's own
memory is measured), and writes the whole scene. It prints the peak resident memory of that
process, the memory per megapixel of input, and the time of each stage. The network's own
memory comes on top (see docs/scene.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOCALDEPTH_SHARED", ROOT.parent / "shared"))

CHILD = r"""
import json, resource, sys, time
import cv2, numpy as np
from pathlib import Path
from localdepth import geometry
from localdepth.postprocess import DepthResult
from localdepth.scene import collect_views, reconstruct

n, w, h, photo, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
folder = Path(out) / "in"
folder.mkdir(parents=True)
rgb = cv2.resize(cv2.imread(photo), (w, h), interpolation=cv2.INTER_CUBIC)
for i in range(n):
    cv2.imwrite(str(folder / f"view{i:03d}.jpg"), rgb)
import open3d, trimesh  # noqa: F401  (libraries loaded before the baseline, as in a real run)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

class Plane:
    name = "plane-standin"
    def describe(self):
        return {"model": self.name, "kind": "depth"}
    def predict_views(self, images, *, sources=None):
        out = []
        for i, image in enumerate(images):
            hh, ww = image.shape[:2]
            cam = geometry.from_fov(60.0, ww, hh, "model")
            u, _ = geometry.pixel_grid(hh, ww)
            pose = np.eye(4)
            pose[0, 3] = -0.1 * i
            depth = ((2.0 + 0.03 * i) / (1.0 - 0.3 * (u - cam.cx) / cam.fx)).astype(np.float32)
            conf = (1.0 + u / ww).astype(np.float32)
            out.append(DepthResult(map=depth, kind="depth", model=self.name, input_size=(hh, ww),
                                   confidence=conf, intrinsics=cam, camera_from_world=pose))
        return out

t0 = time.perf_counter()
views, problems, _ = collect_views([str(folder)], max_views=n)
decode = (time.perf_counter() - t0) * 1000
report = reconstruct(Plane(), views, Path(out) / "scene")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"views": n, "megapixels": n * w * h / 1e6, "baseline_mb": base / 1024, "peak_mb": peak / 1024,
                  "decode_ms": decode, **report["timings_ms"], "points": report["fusion"]["points"]}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--size", default="1920x1440", help="WxH of each view")
    ap.add_argument("--photo", default=str(SHARED / "data/images/demo01.jpg"))
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    print(f"$ PYTHONPATH=src python benchmarks/scene_memory.py --views {' '.join(map(str, args.views))} "
          f"--size {args.size}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; Python {platform.python_version()}")
    print("| views | input MP | peak RSS MB | above baseline MB | MB per input MP | predict+write views s | "
          "fuse+GLB+COLMAP s | fused points |\n|---|---|---|---|---|---|---|---|")
    for n in args.views:
        with tempfile.TemporaryDirectory(prefix="ld-scene-") as tmp:
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
            done = subprocess.run([sys.executable, "-c", CHILD, str(n), str(w), str(h), args.photo, tmp],
                                  capture_output=True, text=True, env=env)
            if done.returncode:
                print(done.stderr, file=sys.stderr)
                return 1
            r = json.loads(done.stdout.strip().splitlines()[-1])
        above = r["peak_mb"] - r["baseline_mb"]
        print(f"| {n} | {r['megapixels']:.0f} | {r['peak_mb']:.0f} | {above:.0f} | {above / r['megapixels']:.1f} | "
              f"{(r['predict_ms'] + r['views_ms']) / 1000:.1f} | {r['fuse_and_write_ms'] / 1000:.1f} | "
              f"{r['points']:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
