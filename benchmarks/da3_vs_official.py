"""localdepth's Depth Anything 3 network against the official code, same weights, same input, same run.

    PYTHONPATH=src python benchmarks/da3_vs_official.py                      # da3-small, 504x378, CPU
    PYTHONPATH=src python benchmarks/da3_vs_official.py --views 1,4 --runs 7 --device cuda

Both networks get the same random weights of the real architecture (the official model
initialised, saved with its ``save_pretrained`` and loaded by localdepth strictly) and the same
input tensor. Calls alternate (official, localdepth, official, ...) so that load on a shared
machine weighs on both; the table gives medians over ``--runs`` timed calls after a warm-up, of
wall time and of the process's CPU time (steadier than wall time when other work shares the
cores), and the ratios official / localdepth (> 1: localdepth is faster).

Rows: fp32 (official run without autocast: the same arithmetic) and bf16 (localdepth's backbone
in bf16, heads in fp32; the official ``DepthAnything3.forward`` under its own bf16 autocast),
for each number of views (views of one scene go through the network together).

The official code is a test oracle in ``../shared/reference`` (never a dependency of the package);
this script imports it with the tests' stand-ins for the modules it imports but does not use here.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn, sync) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="da3-small", help="official model name (da3-small, da3-base, ...)")
    p.add_argument("--height", type=int, default=378)
    p.add_argument("--width", type=int, default=504)
    p.add_argument("--views", default="1,4", help="comma-separated numbers of views")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = p.parse_args()

    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from da3_reference import official_model, save_official  # the oracle, with the tests' stand-ins

    from localdepth import registry
    from localdepth.bench.machine import load_average, machine_info
    from localdepth.networks import load_network

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = next(s for s in registry.MODELS.values() if s.architecture == args.model)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    info = machine_info()
    print(f"command: {' '.join(shlex.quote(a) for a in ['python', *sys.argv])}")
    print(f"machine: {info['cpu']}, {info['physical_cores']} cores, torch {info['torch']}, "
          f"torch threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if cuda else "") + f", load average {load_average()}")
    print(f"model: {args.model} ({spec.name}), random weights of the real architecture, input "
          f"{args.height}x{args.width}, {args.runs} timed runs after {args.warmup} warm-up, alternating\n")

    off = official_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_official(off, Path(tmp))
        ours = {"fp32": load_network(spec, folder, device=str(device), dtype=torch.float32)}
        if "bf16" in args.dtypes:
            ours["bf16"] = load_network(spec, folder, device=str(device), dtype=torch.bfloat16)
    off = off.to(device)

    print("| views | dtype | official ms (median) | localdepth ms (median) | official / localdepth "
          "| official CPU s | localdepth CPU s | CPU ratio | max rel. diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for views in (int(v) for v in args.views.split(",")):
        x = torch.randn(1, views, 3, args.height, args.width, generator=torch.Generator().manual_seed(0)).to(device)
        for dtype in args.dtypes.split(","):
            if dtype == "fp32":
                def official():
                    with torch.inference_mode():
                        return off.model(x)
            else:
                def official():  # the official forward: autocast to bf16, heads in fp32
                    ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                    with torch.inference_mode(), ctx:
                        return off.model(x)
            net = ours[dtype]

            def localdepth():
                with torch.inference_mode():
                    return net(x[0], same_scene=True)

            ref, got = official(), localdepth()
            diff = float((got["depth"].float() - ref["depth"][0].float()).abs().max() / ref["depth"].abs().max())
            t_off, t_ours = [], []
            for _ in range(args.warmup + args.runs):  # interleaved: one call each, in turn
                t_off.append(_timed(official, sync))
                t_ours.append(_timed(localdepth, sync))
            m_off, c_off = (statistics.median(t[k] for t in t_off[args.warmup:]) for k in (0, 1))
            m_ours, c_ours = (statistics.median(t[k] for t in t_ours[args.warmup:]) for k in (0, 1))
            print(f"| {views} | {dtype} | {m_off * 1000:.0f} | {m_ours * 1000:.0f} | {m_off / m_ours:.2f} "
                  f"| {c_off:.2f} | {c_ours:.2f} | {c_off / c_ours:.2f} | {diff:.1e} |", flush=True)
    with contextlib.suppress(Exception):
        print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
