"""Flicker and speed of `localdepth video` per --stabilize mode, on a clip you give or on the
tests' synthetic clip (a slow pan and zoom over a real photo, optionally with an
auto-exposure pulse), made on the fly.

    PYTHONPATH=src python benchmarks/video_flicker.py --model pydnet \
        --weights ../shared/models/pydnet/optimized_pydnet++.tflite            # synthetic clip
    PYTHONPATH=src python benchmarks/video_flicker.py clip.mp4 --max-res 512   # your clip

Prints a Markdown table: mode, flicker (percent, see localdepth.video.stabilize.FlickerMeter),
frames, processing fps.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def synthetic_clip(folder: Path, photo: Path, exposure: bool) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_video import make_clip  # the tests' clip maker: one definition of the clip

    return make_clip(folder / ("clip_exposure.mp4" if exposure else "clip_steady.mp4"), photo, exposure=exposure)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clip", nargs="?", help="a video file (default: the synthetic clip)")
    p.add_argument("--photo", type=Path, default=ROOT.parent / "shared" / "data" / "images" / "demo01.jpg")
    p.add_argument("--no-exposure", action="store_true", help="synthetic clip without the brightness pulse")
    p.add_argument("--model", default="pydnet")
    p.add_argument("--weights")
    p.add_argument("--max-res", type=int)
    p.add_argument("--modes", default="off,align,align+ema")
    args = p.parse_args()

    import localdepth
    from localdepth.video import VideoFileReader, process_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = localdepth.load(args.model, weights=args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(args.clip) if args.clip else synthetic_clip(Path(tmp), args.photo, not args.no_exposure)
        print(f"clip: {clip.name if not args.clip else clip}, model: {model.name}, max-res: {args.max_res}\n")
        print("| --stabilize | flicker (%) | frames | fps |")
        print("|---|---|---|---|")
        for mode in args.modes.split(","):
            s = process_clip(VideoFileReader(clip, max_res=args.max_res), model, [], stabilize=mode, progress=False)
            print(f"| {mode} | {s.flicker:.2f} | {s.frames} | {s.fps:.1f} |")


if __name__ == "__main__":
    main()
