"""Video Depth Anything against per-frame depth + stabilisation: flicker and cost per frame,
and resident memory over a long clip.

    PYTHONPATH=src python benchmarks/video_depth_anything.py                    # all of it
    PYTHONPATH=src python benchmarks/video_depth_anything.py --vda-weights video_depth_anything_vits.pth
    PYTHONPATH=src python benchmarks/video_depth_anything.py --skip-flicker --rss-frames 600

Variants, interleaved round by round in one process (medians over ``--rounds``, ratios against
PyDNet++ per frame measured in the same round):

* PyDNet++ per frame (``--stabilize off``) and with ``--stabilize align+ema``;
* Video Depth Anything Small in 32-frame windows (offline) and streaming (cached temporal state).

Clips: the living-room RGB-D sequence (../shared/data/rgbd/livingroom/color, 5 frames) and the
tests' synthetic clip (48 frames, a pan and zoom over a photo with an auto-exposure pulse).

Without ``--vda-weights`` (the released checkpoints cannot be downloaded here) the Small
architecture gets random weights: its flicker then means nothing, only its cost does; the
report says which rows are which. ``--rss-frames N`` runs VDA over an N-frame synthetic clip
at a low resolution and prints the resident memory every 50 frames (the window logic holds
about 50 frames whatever the length).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def random_vda(folder: Path, arch: str = "vits", seed: int = 0) -> Path:
    """The released architecture with random weights, as a safetensors checkpoint."""
    import torch

    from localdepth.checkpoints import save_safetensors
    from localdepth.networks.vda import SIZES, VideoDepthAnything

    torch.manual_seed(seed)
    return save_safetensors(VideoDepthAnything(SIZES[arch]).state_dict(), folder / f"random_{arch}.safetensors")


def clips(tmp: Path) -> dict:
    from localdepth.video import ImageSequenceReader, VideoFileReader

    sys.path.insert(0, str(ROOT / "tests"))
    from test_video import make_clip  # the tests' clip maker: one definition of the clip

    synthetic = make_clip(tmp / "synthetic.mp4", SHARED / "data" / "images" / "demo01.jpg")
    livingroom = SHARED / "data" / "rgbd" / "livingroom" / "color"
    return {
        "livingroom (5 frames, 640x480)": lambda: ImageSequenceReader([str(livingroom)], fps=5),
        "synthetic (48 frames, 256x192)": lambda: VideoFileReader(synthetic),
    }


def flicker_table(args, vda_weights: Path, real_weights: bool) -> None:
    import localdepth
    from localdepth.video import process_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # licence notes
        pydnet = localdepth.load("pydnet", weights=args.pydnet)
        vda = localdepth.load("video-depth-anything-small", weights=vda_weights, input_size=args.input_size)
    variants = {
        "PyDNet++ per frame": (pydnet, {"stabilize": "off"}),
        "PyDNet++ + align+ema": (pydnet, {"stabilize": "align+ema"}),
        "VDA-S windows": (vda, {}),
        "VDA-S streaming": (vda, {"streaming": True}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        sources = clips(Path(tmp))
        for clip_name, make_source in sources.items():
            times: dict[str, list[float]] = {v: [] for v in variants}
            ratios: dict[str, list[float]] = {v: [] for v in variants}
            flicker: dict[str, float | None] = {}
            for _ in range(args.rounds):
                per_round = {}
                for name, (model, options) in variants.items():
                    summary = process_clip(make_source(), model, [], progress=False, **options)
                    per_round[name] = summary.seconds * 1000.0 / max(1, summary.frames)
                    flicker[name] = summary.flicker
                for name, ms in per_round.items():
                    times[name].append(ms)
                    ratios[name].append(ms / per_round["PyDNet++ per frame"])
            print(f"\n#### {clip_name}\n")
            print("| variant | weights | flicker (%) | ms per frame (median) | x PyDNet++ per frame |")
            print("|---|---|---|---|---|")
            for name in variants:
                real = name.startswith("PyDNet") or real_weights
                weights = "real" if real else "random: cost only"
                f = f"{flicker[name]:.2f}" if flicker[name] is not None and real else "n/a"
                print(f"| {name} | {weights} | {f} | {statistics.median(times[name]):.0f} | "
                      f"{statistics.median(ratios[name]):.2f} |")


def rss_over_a_long_clip(args, vda_weights: Path) -> None:
    import localdepth
    from localdepth.bench.measure import _rss_bytes
    from localdepth.video import process_clip
    from localdepth.video.readers import Frame

    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (72, 96, 3)).astype(np.float32)

    class LongClip:  # frames made on the fly: nothing of the clip is held by the source
        skipped, missing, expected_frames, output_fps = 0, 0, args.rss_frames, 24

        def __iter__(self):
            for i in range(args.rss_frames):
                rgb = np.clip(np.roll(texture, i, axis=1) * (0.8 + 0.2 * np.sin(i / 7)), 0, 255).astype(np.uint8)
                yield Frame(i, i / 24, rgb, f"f{i:05d}")

        def describe(self):
            return {"type": "synthetic", "frames": args.rss_frames}

        def close(self):
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vda = localdepth.load("video-depth-anything-small", weights=vda_weights, input_size=70)
    samples: list[tuple[int, float]] = []

    def sample(k, frame, depth):
        if k % 50 == 0 or k == args.rss_frames - 1:
            samples.append((k + 1, _rss_bytes() / 2**20))

    t0 = time.perf_counter()
    summary = process_clip(LongClip(), vda, [], progress=False, on_frame=sample)
    print(f"\n#### resident memory over {summary.frames} frames (VDA-S windows, 96x72 frames, input 70x98)\n")
    print("| frames done | RSS (MiB) |")
    print("|---|---|")
    for k, mib in samples:
        print(f"| {k} | {mib:.0f} |")
    later = [mib for k, mib in samples if k > 100]
    first = 100 if later else 0  # a short run (--rss-frames 100 or fewer): every sample
    later = later or [mib for _, mib in samples]
    print(f"\nafter frame {first}: min {min(later):.0f} MiB, "
          f"max {max(later):.0f} MiB (spread {max(later) - min(later):.0f} MiB); {summary.temporal['windows']} "
          f"windows in {time.perf_counter() - t0:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pydnet", default=str(SHARED / "models" / "pydnet" / "optimized_pydnet++.tflite"))
    p.add_argument("--vda-weights", help="a real Video Depth Anything Small checkpoint (.pth or .safetensors)")
    p.add_argument("--input-size", type=int, default=518, help="VDA input size (default 518, the model's)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rss-frames", type=int, default=600)
    p.add_argument("--skip-flicker", action="store_true")
    p.add_argument("--threads", type=int, help="intra-op threads of PyTorch and TFLite (default: theirs)")
    args = p.parse_args()
    if args.threads:
        import os

        import torch

        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # TFLite reads it when the model loads
        torch.set_num_threads(args.threads)

    from localdepth.bench.machine import machine_info

    info = machine_info()
    print(f"command: PYTHONPATH=src python {' '.join(shlex.quote(a) for a in sys.argv)}")
    print(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, torch {info['torch']} with "
          f"{info['torch_threads']} threads, load average {info['load_average']}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(args.vda_weights) if args.vda_weights else random_vda(Path(tmp))
        if not args.skip_flicker:
            flicker_table(args, weights, real_weights=bool(args.vda_weights))
        if args.rss_frames:
            rss_over_a_long_clip(args, weights)


if __name__ == "__main__":
    main()
