"""Peak memory of several views through a Depth Anything 3 network, one fresh process per view count.

    PYTHONPATH=src python benchmarks/da3_views_memory.py --model da3-small --views 1,4,8,16

Random weights of the real architecture (memory does not depend on the values), one forward pass of
``N`` views of ``--height x --width`` as one scene, fp32 on the CPU; prints the peak resident memory
(``ru_maxrss``) and the network's own share.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time


def one(model: str, views: int, height: int, width: int) -> None:
    import torch

    from localdepth.networks.da3 import build

    net = build(model).eval()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    x = torch.randn(views, 3, height, width)
    t0 = time.perf_counter()
    with torch.inference_mode():
        net(x, same_scene=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| {views} | {peak:.0f} | {base:.0f} | {time.perf_counter() - t0:.1f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="da3-small", help="official model name")
    p.add_argument("--views", default="1,4,8,16")
    p.add_argument("--height", type=int, default=378)
    p.add_argument("--width", type=int, default=504)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        one(args.model, args.one, args.height, args.width)
        return
    print(f"command: {' '.join(sys.argv)}")
    print(f"{args.model}, {args.height}x{args.width}, fp32, CPU\n")
    print("| views | peak RSS MB | network alone MB | seconds |")
    print("|---|---|---|---|")
    for v in args.views.split(","):
        subprocess.run([sys.executable, __file__, "--model", args.model, "--height", str(args.height),
                        "--width", str(args.width), "--one", v], check=True)


if __name__ == "__main__":
    main()
