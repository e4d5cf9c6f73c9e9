"""What holds the server's memory during and after a burst of concurrent requests.

    PYTHONPATH=src python benchmarks/server_memory.py --requests 100 --size 2000x1500 --runs 2

Each run starts a fresh process with the app on a real uvicorn (`localdepth serve`'s configuration,
a tiny random Depth Anything V2: the network's own activations are bounded by ``--max-batch``
and are not what piles up), fires ``--requests`` concurrent uploads of one photo-like JPEG from a
separate client process, and samples the server's resident memory (RSS) every 20 ms. It prints:

* ``peak``: the largest RSS during the burst, above the idle baseline;
* ``after``: RSS 3 s after the burst, above the baseline: memory the process kept;
* ``live``: what Python and NumPy still hold then (tracemalloc, which NumPy reports to), i.e.
  objects still referenced;
* ``trimmed``: RSS after ``malloc_trim(0)`` (glibc), above the baseline: what the allocator
  cached in freed chunks rather than gave back.

Three configurations, in alternation: ``unbounded`` (the decoded-pixel budget out of reach and
glibc's default allocator settings: how the server behaved before), ``budget`` (the decoded-pixel
budget, ``--budget``, default ``SERVER_MAX_QUEUED_PIXELS``) and ``budget+mmap`` (also
:func:`localdepth.server.http.release_freed_memory`, as ``localdepth serve`` runs). Medians over
``--runs``; the machine is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SERVER = r"""
import ctypes, gc, json, subprocess, sys, threading, time, tracemalloc
import psutil
sys.path.insert(0, sys.argv[1])
from conftest import save_tiny_depth_anything
from server_support import serve_in_thread
import localdepth
from localdepth.server import ServerSettings, create_app

folder, queued, requests, image, tune = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6] == "1"
if tune:
    from localdepth.server.http import release_freed_memory
    assert release_freed_memory()
from pathlib import Path
estimator = localdepth.load("depth-anything-v2-small", weights=save_tiny_depth_anything(Path(folder)), device="cpu")
settings = ServerSettings(max_queued_pixels=queued, max_pixels=min(queued, 25_000_000), queue_size=max(64, requests),
                          timeout_s=600)
proc = psutil.Process()
tracemalloc.start()
with serve_in_thread(create_app([estimator], settings), settings=settings) as base:
    for _ in range(3):  # warm up: every code path once
        subprocess.run([sys.executable, "-c", CLIENT, base, image, "1"], check=True)
    gc.collect()
    baseline = proc.memory_info().rss
    samples, stop = [], threading.Event()
    def sample():
        while not stop.is_set():
            samples.append(proc.memory_info().rss)
            time.sleep(0.02)
    t = threading.Thread(target=sample); t.start()
    out = subprocess.run([sys.executable, "-c", CLIENT, base, image, str(requests)], check=True,
                         capture_output=True, text=True).stdout
    stop.set(); t.join()
    time.sleep(3)
    gc.collect()
    after = proc.memory_info().rss
    live = tracemalloc.get_traced_memory()[0]
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    trimmed = proc.memory_info().rss
print(json.dumps({"baseline": baseline, "peak": max(samples) - baseline, "after": after - baseline,
                  "live": live, "trimmed": trimmed - baseline, "answers": json.loads(out)}))
"""

CLIENT = r"""
import asyncio, collections, json, sys
import httpx
base, image, n = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3])
async def main():
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=n)) as c:
        rs = await asyncio.gather(*[c.post(f"{base}/v1/depth?format=png16", content=image) for _ in range(n)])
    return collections.Counter(str(r.status_code) for r in rs)
print(json.dumps(asyncio.run(main())))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--size", default="2000x1500", help="WxH of the uploaded JPEG")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--budget", type=int, help="decoded-pixel budget (default: SERVER_MAX_QUEUED_PIXELS)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from server_support import jpeg_bytes, smooth_image

    from localdepth import limits

    w, h = (int(v) for v in args.size.split("x"))
    args.budget = args.budget or limits.SERVER_MAX_QUEUED_PIXELS
    configs = {"unbounded": (10**12, False), "budget": (args.budget, False), "budget+mmap": (args.budget, True)}
    print(f"$ PYTHONPATH=src python benchmarks/{Path(__file__).name} --requests {args.requests} "
          f"--size {args.size} --runs {args.runs} --budget {args.budget}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; {args.requests} concurrent {w}x{h} JPEG uploads ({w * h / 1e6:.1f} Mpx each), "
          "format=png16, tiny random Depth Anything V2")
    results: dict[str, list[dict]] = {k: [] for k in configs}
    with tempfile.TemporaryDirectory(prefix="ld-mem-") as tmp:
        image = Path(tmp) / "photo.jpg"
        image.write_bytes(jpeg_bytes(smooth_image(h, w)))
        path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
        for run in range(args.runs):
            for name, (queued, tune) in configs.items():  # alternate, so that all see the same machine load
                folder = Path(tmp) / f"model-{name}-{run}"
                code = f"CLIENT = {CLIENT!r}\n" + SERVER
                out = subprocess.run([sys.executable, "-c", code, str(ROOT / "tests"), str(folder), str(queued),
                                      str(args.requests), str(image), str(int(tune))], capture_output=True, text=True,
                                     env=env)
                if out.returncode:
                    print(out.stderr[-3000:], file=sys.stderr)
                    return 1
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
                r = results[name][-1]
                print(f"  run {run + 1} {name:11s}: peak +{r['peak'] / 2**20:.0f} MiB, "
                      f"after +{r['after'] / 2**20:.0f} MiB, live {r['live'] / 2**20:.1f} MiB, "
                      f"trimmed +{r['trimmed'] / 2**20:.0f} MiB, answers {r['answers']}")
    print("\n| configuration | peak RSS over idle | kept 3 s later | still referenced | kept after malloc_trim |")
    print("|---|---|---|---|---|")
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("peak", "after", "live", "trimmed")}
           for name, rs in results.items()}
    for name, m in med.items():
        print(f"| {name} | {m['peak'] / 2**20:.0f} MiB | {m['after'] / 2**20:.0f} MiB | {m['live'] / 2**20:.1f} MiB "
              f"| {m['trimmed'] / 2**20:.0f} MiB |")
    for name in ("budget", "budget+mmap"):
        print(f"{name} / unbounded: peak x{med[name]['peak'] / med['unbounded']['peak']:.2f}, "
              f"kept x{med[name]['after'] / med['unbounded']['after']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
