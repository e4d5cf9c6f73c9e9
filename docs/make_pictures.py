"""Make the README's pictures at docs-build time: a 3D photo GIF and a red-cyan anaglyph of a shared photo.

    python docs/make_pictures.py                      # -> docs/pictures/photo3d.gif, docs/pictures/anaglyph.png

The photo comes from the shared test data (``../shared/data/images/demo01.jpg``, or where
``LOCALDEPTH_SHARED`` points; an example photo of the Depth Anything V2 repository, Apache-2.0)
and the depth from the real PyDNet++ network there (``--model``/``--weights`` take any other).
``docs/pictures/`` is ignored by git: the pictures are made, never committed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOCALDEPTH_SHARED", ROOT.parent / "shared"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=SHARED / "data" / "images" / "demo01.jpg")
    parser.add_argument("--model", default="pydnet")
    parser.add_argument("--weights", default=str(SHARED / "models" / "pydnet" / "optimized_pydnet++.tflite"),
                        help="weights for --model (default: the shared PyDNet++ file)")
    parser.add_argument("--outdir", type=Path, default=ROOT / "docs" / "pictures")
    parser.add_argument("--size", type=int, default=320, help="short side of the pictures, pixels")
    args = parser.parse_args(argv)
    if not args.photo.is_file():
        print(f"make_pictures: {args.photo} is absent: the shared data lives beside the checkout "
              "(or set LOCALDEPTH_SHARED)", file=sys.stderr)
        return 2

    import warnings

    import cv2

    import localdepth
    from localdepth.geometry import resolve_intrinsics
    from localdepth.images import load_image
    from localdepth.render import Photo3DOptions, anaglyph, depth_for_rendering, prepare, render_to_file, stereo_views
    from localdepth.render.photo3d import output_size
    from localdepth.writers import atomic_write_bytes, encode_rgb_png

    with warnings.catch_warnings():  # PyDNet++'s research-only licence: fine for documentation pictures
        warnings.simplefilter("ignore")
        estimator = localdepth.load(args.model, weights=args.weights or None)
    image = load_image(args.photo)
    result = estimator.predict_decoded([image])[0]
    h, w = image.shape[:2]
    camera = resolve_intrinsics(w, h, image_path=args.photo, predicted=result.intrinsics)
    args.outdir.mkdir(parents=True, exist_ok=True)

    photo = prepare(image, result.map, result.kind, camera,
                    Photo3DOptions(path="circle", seconds=3.0, fps=12.0, size=args.size, amplitude=0.02),
                    metric=result.metric)
    render_to_file(photo, args.outdir / "photo3d.gif")

    sw, sh = output_size(w, h, args.size)
    small = cv2.resize(image if image.dtype.name == "uint8" else (image * 255).astype("uint8"), (sw, sh),
                       interpolation=cv2.INTER_AREA)
    depth = cv2.resize(result.map, (sw, sh), interpolation=cv2.INTER_AREA)
    z, _, _ = depth_for_rendering(depth, result.kind, result.metric)
    left, right, _ = stereo_views(small, z, camera.scaled(sw, sh).K, budget=3.0)
    atomic_write_bytes(args.outdir / "anaglyph.png", encode_rgb_png(anaglyph(left.image, right.image)))
    for name in ("photo3d.gif", "anaglyph.png"):
        print(f"make_pictures: wrote {args.outdir / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
