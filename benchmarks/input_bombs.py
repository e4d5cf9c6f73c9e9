"""Peak memory of reading small files that declare huge sizes (issue 20, items 8 and 9).

Builds the bombs of ``tests/bombs.py`` and reads each with the depth-file reader every command
uses for prompt depths, references, masks and ground truth (``load_depth_values``, default
budget), then a video bomb with the video reader; prints the file size, the growth of this
process's peak resident memory (Linux: VmHWM, reset per case) and what came back. Run it with
another checkout's ``src`` first on ``PYTHONPATH`` to compare (the bombs stay this checkout's):

    PYTHONPATH=src python benchmarks/input_bombs.py
    PYTHONPATH=/path/to/other/src python benchmarks/input_bombs.py

An address-space limit keeps a reader without the gate from taking the machine down (``--limit-gb``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT / "tests"))  # after PYTHONPATH: the localdepth measured is the one given


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-gb", type=float, default=8.0, help="address-space limit of this process (default: 8)")
    args = parser.parse_args()
    limit = int(args.limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    import localdepth
    from bombs import (jpeg_header_only, npy_lying, npz_bomb, peak_growth, pfm_lying, png_header_only, tiff_bomb,
                       video_bomb, webp_header_only)
    from localdepth.depthfile import load_depth_values

    print(f"localdepth from {Path(localdepth.__file__).parent}")
    cases = {
        "npz, 8200x8200 float32 zeros": ("p.npz", lambda: npz_bomb((8200, 8200))),
        "npz member declaring 40 GB": ("p.npz", lambda: npz_bomb((100_000, 100_000), zero_bytes=2**20)),
        "npy declaring 40 GB": ("p.npy", npy_lying),
        "tiff, 9000x9000 16-bit zeros": ("p.tiff", lambda: tiff_bomb(9000, 9000)),
        "tiff declaring 100000x100000": ("p.tif", lambda: tiff_bomb(100_000, 100_000, zero_bytes=2**20)),
        "jpeg declaring 9000x9000": ("p.jpg", lambda: jpeg_header_only(9000, 9000)),
        "16-bit png declaring 9000x9000": ("p.png", lambda: png_header_only(9000, 9000)),
        "webp declaring 8200x8200": ("p.webp", lambda: webp_header_only(8200, 8200)),
        "pfm declaring 100000x100000": ("p.pfm", pfm_lying),
    }
    folder = Path(tempfile.mkdtemp(prefix="localdepth-bombs-"))
    print("| file | bytes | peak growth | result |\n|---|---|---|---|")
    for case, (name, build) in cases.items():
        path = folder / name
        path.write_bytes(build())
        with peak_growth() as grown:
            try:
                values, _ = load_depth_values(path)
                result = f"decoded {values.shape}"
                del values
            except Exception as e:  # noqa: BLE001 - what each reader does is the measurement
                result = f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"
        print(f"| {case} | {path.stat().st_size} | {grown():.0f} MiB | {result} |")
        path.unlink()
    import av

    from localdepth.video.readers import VideoFileReader

    path = folder / "bomb.mkv"
    video_bomb(path)
    with av.open(str(path)):  # load PyAV's libraries before measuring
        pass
    with peak_growth() as grown:
        try:
            frames = sum(1 for _ in VideoFileReader(path))
            result = f"decoded {frames} frames"
        except Exception as e:  # noqa: BLE001
            result = f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"
    print(f"| mkv of 8200x8200 Motion-JPEG frames | {path.stat().st_size} | {grown():.0f} MiB | {result} |")
    path.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
