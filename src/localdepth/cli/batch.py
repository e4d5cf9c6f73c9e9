"""``localdepth batch``: depth for large collections on a Ray cluster (or a local Ray)."""

from __future__ import annotations

import argparse
import sys

from .. import registry

from .common import (add_format_args, add_limit_args, add_model_args, add_outdir_arg, add_url_args, formats_from_args,
                     url_limits_from_args)


def register(sub) -> None:
    p = sub.add_parser(
        "batch", help="predict depth for large collections with Ray (local or a cluster)",
        description="Run a model over folders, globs, .txt lists or manifests (CSV/Parquet/JSONL with a "
                    "'path' column) as a Ray Data job: decoding in CPU tasks, inference in a pool of actors "
                    "(one model each), the same output files as `localdepth run`, and a Parquet manifest of "
                    "every input's status. Inputs whose outputs are complete are skipped, so re-running "
                    "the same command resumes. Needs `pip install 'localdepth[distributed]'`.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders, globs, .txt lists, manifests (.csv/.parquet/.jsonl) or fsspec URLs")
    add_outdir_arg(p, required=True,
                   help="output folder, or a URL (s3://bucket/depth) when its fsspec filesystem is installed")
    add_format_args(p)
    p.add_argument("--manifest", metavar="PATH", help="result manifest (default: OUTDIR/manifest.parquet)")
    p.add_argument("--overwrite", action="store_true", help="predict again even when the outputs are complete")
    add_limit_args(p)
    add_url_args(p)
    g = p.add_argument_group("ray")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="join a running cluster (auto, host:6379, ray://host:10001); default: start a local Ray")
    g.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the local Ray (default: all cores)")
    g.add_argument("--workers", "-w", type=int, default=1, help="inference actors, one model each (default: 1)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                   help="GPUs per actor; fractions share a GPU (0.5 = two actors per GPU; default: 0)")
    g.add_argument("--cpus-per-worker", type=float, metavar="C",
                   help="CPUs reserved per actor (default: 1, less on a small cluster so decoding can run)")
    g.add_argument("--batch-size", "-b", type=int, default=None,
                   help="images per forward pass (same-size images; default: with --gpus-per-worker, as many as "
                        "the actor's free GPU memory allows, at most 16; else 1)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_model_args(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..distributed.outputs import OutputTarget
    from ..distributed.pipeline import BatchConfig, connect, require_ray, run_batch
    from ..distributed.sources import collect
    from ..errors import LocalDepthError

    formats = formats_from_args(args)
    require_ray()  # before listing a large collection: say how to install Ray first
    spec = registry.get(args.model)  # an unknown model fails before Ray starts
    # the Ray stages carry the depth map only: no confidence, no camera, and no photo's EXIF or given camera
    # for the metres of models that depend on one (Depth Pro, DA3 Metric), which `run` would use
    if spec.predicts or spec.focal_dependent:
        raise LocalDepthError(f"localdepth batch carries the depth map only, not {spec.name}'s confidence, camera "
                              "or focal-dependent metres; use `localdepth run` for it")
    from .run import output_names_of

    url_limits = url_limits_from_args(args)
    sources = collect(args.inputs, outputs=output_names_of(formats, args))
    if not sources:
        print("localdepth: error: no images found in the given inputs", file=sys.stderr)
        return 2
    cfg = BatchConfig(model=args.model, weights=args.weights, backend=args.backend, device=args.device,
                      dtype=args.dtype, input_size=args.input_size, formats=formats, cmap=args.cmap,
                      grayscale=args.grayscale, batch_size=args.batch_size, workers=args.workers,
                      gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                      skip_existing=not args.overwrite, max_pixels=args.max_pixels, url_limits=url_limits,
                      stereo_budget=args.stereo_budget, controlnet_size=args.controlnet_size)
    OutputTarget(args.outdir, cfg.options).check()  # an unwritable --outdir fails before Ray starts
    ray = connect(args.ray_address, num_cpus=args.num_cpus, quiet=args.quiet)
    try:
        summary = run_batch(sources, args.outdir, cfg, manifest=args.manifest, progress=not args.quiet)
    except ray.exceptions.RayError as e:
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        raise LocalDepthError(f"the Ray job failed: {lines[-1] if lines else type(e).__name__}") from None
    print(summary.line(args.outdir), file=sys.stderr)
    return 1 if summary.failed else 0
