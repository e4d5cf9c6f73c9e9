"""``localdepth run``: images, folders, globs and lists -> depth files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import registry
from ..inputs import expand_inputs
from ..writers import WriteOptions
from .common import (add_format_args, add_limit_args, add_model_args, add_outdir_arg, add_prompt_args,
                     add_url_args, formats_from_args, load_from_args, prompt_source, url_limits_from_args)
from .geomopts import add_camera_args, camera_sidecar, run_with_geometry


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="predict depth for images, folders, globs or .txt lists",
        description="Predict depth for each input image and write the chosen formats under --outdir, "
                    "keeping each input's relative path. A .json sidecar per image records units and scales.")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image files, folders, glob patterns, .txt lists or http(s):// URLs")
    p.add_argument("--input", "-i", action="append", default=[], metavar="INPUT", help="another input (repeatable)")
    add_outdir_arg(p, default="depth_out", type=Path, help="output folder (default: ./depth_out)")
    add_format_args(p)
    p.add_argument("--batch-size", "-b", type=int, default=None,
                   help="images per forward pass (images of one network size; default: on a GPU, as many as its "
                        "free memory allows, at most 16; elsewhere 1)")
    p.add_argument("--skip-existing", action="store_true", help="skip inputs whose outputs are all there (resume)")
    add_limit_args(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--pointcloud", type=Path, metavar="PATH",
                   help="also write a coloured point cloud (.ply/.pcd); metric models give metres, relative ones "
                        "need --relative; several inputs: <outdir>/<name>_points<suffix>")
    p.add_argument("--mesh", type=Path, metavar="PATH", help="also write a mesh from the depth grid (.ply/.obj/.glb)")
    add_camera_args(p)
    p.add_argument("--no-pipeline", dest="pipeline", action="store_false",
                   help="decode, infer and write one after the other (default: overlapped)")
    p.add_argument("--workers", type=int, metavar="N", help="image decoding threads (default: up to 4)")
    add_prompt_args(p)
    add_url_args(p)
    add_model_args(p)
    p.set_defaults(func=main)


def output_names_of(formats: tuple[str, ...], args: argparse.Namespace):
    """``rel -> the files an input at rel writes`` (its formats, its sidecar, and its point cloud
    and mesh when there are several inputs), for the input layer to make every name unique."""
    from ..writers import output_names

    def names(rel):
        found = [name.as_posix() for name in output_names(rel, formats).values()]
        stem = rel.with_suffix("") if rel.suffix else rel
        for option, tag in ((getattr(args, "pointcloud", None), "points"), (getattr(args, "mesh", None), "mesh")):
            if option is not None:
                found.append(f"{stem.as_posix()}_{tag}{option.suffix or '.ply'}")
        return found

    return names


def main(args: argparse.Namespace) -> int:
    from ..runner import Runner

    specs = list(args.inputs) + list(args.input)
    if not specs:
        print("localdepth: error: no input given; e.g. `localdepth run photo.jpg`", file=sys.stderr)
        return 2
    formats = formats_from_args(args)
    registry.get(args.model)  # an unknown name is a usage error, said before anything else
    url_limits = url_limits_from_args(args)
    items = expand_inputs(specs, outputs=output_names_of(formats, args))
    if not items:
        print("localdepth: error: no images found in the given inputs", file=sys.stderr)
        return 2
    prompt_for = prompt_source(args, args.model, len(items))
    options = WriteOptions(formats=formats, cmap=args.cmap, grayscale=args.grayscale,
                           extra_sidecar=camera_sidecar(args), stereo_budget=args.stereo_budget,
                           controlnet_size=args.controlnet_size)

    def estimator():  # loaded once some input needs it: bad or finished inputs are reported at once
        # several inputs through the pipelined runner: throughput (OpenVINO keeps requests in
        # flight); one input, or geometry (one image at a time): latency
        many = len(items) > 1 and args.pipeline and not (args.pointcloud or args.mesh)
        return load_from_args(args, performance="throughput" if many else "latency")

    if args.pointcloud or args.mesh:
        return run_with_geometry(args, items, estimator, options, url_limits=url_limits, prompt_for=prompt_for)
    runner = Runner(estimator, args.outdir, options, batch_size=args.batch_size,
                    skip_existing=args.skip_existing, progress=not args.quiet,
                    pipeline=args.pipeline, workers=args.workers, url_limits=url_limits, prompt_for=prompt_for,
                    max_pixels=args.max_pixels)
    summary = runner.run(items)
    print(summary.line(args.outdir), file=sys.stderr)
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0
