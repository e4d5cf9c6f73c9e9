"""The README's first command, `localdepth run photo.jpg`, in the environment CI has just built.

Cheap and offline: the photo is generated and the model is a tiny randomly initialised Depth
Anything of the real architecture (the tests' own, from tests/conftest.py) passed with
--weights, so no download is needed. It checks what a new user sees: the console script is
installed, it runs, and it writes depth_out/photo.npy, photo_color.png and photo.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import save_tiny_depth_anything  # noqa: E402


def main() -> int:
    script = shutil.which("localdepth")
    if script is None or not script.startswith(sys.prefix):
        print(f"smoke: the localdepth console script is not installed in {sys.prefix}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="localdepth-smoke-") as tmp:
        work = Path(tmp)
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(
            work / "photo.jpg")
        weights = save_tiny_depth_anything(work / "tiny-model")
        proc = subprocess.run([script, "run", "photo.jpg", "--weights", str(weights)], cwd=work,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"smoke: `localdepth run photo.jpg` failed ({proc.returncode}):\n{proc.stderr}", file=sys.stderr)
            return 1
        out = work / "depth_out"
        missing = [n for n in ("photo.npy", "photo_color.png", "photo.json") if not (out / n).is_file()]
        if missing:
            print(f"smoke: `localdepth run photo.jpg` did not write {', '.join(missing)}", file=sys.stderr)
            return 1
        depth = np.load(out / "photo.npy")
        meta = json.loads((out / "photo.json").read_text())
        if depth.shape != (96, 128) or not np.isfinite(depth).all() or meta["kind"] != "disparity":
            print(f"smoke: unexpected output: shape {depth.shape}, kind {meta.get('kind')}", file=sys.stderr)
            return 1
    print(f"smoke: `localdepth run photo.jpg` works in {sys.prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
