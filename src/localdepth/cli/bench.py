"""``localdepth bench``: models x backends x sizes x batch sizes x dtypes, against the Transformers pipeline."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .. import registry


def _list(kind):
    def parse(text: str):
        try:
            return [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got '{text}'") from None
    return parse


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="measure speed against the Transformers pipeline",
        description="Time model-only, end-to-end (decode -> write, one batch at a time) and folder (throughput "
                    "mode) inference for each combination of model, backend, dtype, input size and batch size, "
                    "in interleaved rounds with the Transformers pipeline on the same weights, and the FLOP count "
                    "against the machine's measured fp32 and bf16 matmul throughput. Without the released "
                    "weights, random weights of the released architecture are used (same FLOPs), and the report "
                    "says so.")
    p.add_argument("--model", "-m", type=_list(str), default=[registry.DEFAULT_MODEL], help="comma-separated models")
    p.add_argument("--weights", metavar="PATH", help="a Hugging Face-format folder (one model only)")
    p.add_argument("--backend", type=_list(str), default=None,
                   help="comma-separated: torch,onnx,openvino,tflite,mlx (default: torch)")
    p.add_argument("--size", type=_list(int), default=None, help="comma-separated input sides (default: 518)")
    p.add_argument("--batch", type=_list(int), default=None, help="comma-separated batch sizes (default: 1)")
    p.add_argument("--dtype", type=_list(str), default=None, help="comma-separated: fp32,bf16,fp16,int8 (default: fp32)")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or mps (default: auto: CUDA, else on a Mac MPS for torch rows and the GPU "
                        "for mlx rows, else the CPU)")
    p.add_argument("--rounds", type=int, help="interleaved rounds over all variants and the pipeline (default: 3)")
    p.add_argument("--runs", type=int, help="timed model-only calls per variant and round (default: 3)")
    p.add_argument("--warmup", type=int, help="untimed calls and passes per variant first (default: 1)")
    p.add_argument("--e2e-images", type=int, help="files per end-to-end pass (default: 6)")
    p.add_argument("--folder-images", type=int, help="files per folder pass in throughput mode; 0: none (default: 32)")
    p.add_argument("--image", metavar="PHOTO", action="append",
                   help="make the inputs from this photo (default: a synthetic scene); the GPU suite takes several "
                        "(repeat the option), for its folder and its fp16-vs-fp32 check")
    p.add_argument("--no-baseline", action="store_true", help="skip the Transformers pipeline")
    p.add_argument("--quick", action="store_true", help="small and fast (CI): 140 px, 1 round, a few files")
    p.add_argument("--json", type=Path, default=Path("bench.json"), help="JSON report (default: bench.json)")
    p.add_argument("--markdown", type=Path, default=Path("bench.md"), help="Markdown table (default: bench.md)")
    p.add_argument("--threads", type=int, help="PyTorch CPU threads (default: PyTorch's)")
    p.add_argument("--compile", action="store_true", help="PyTorch rows: torch.compile (the warm-up compiles)")
    p.add_argument("--cuda-graphs", action="store_true", help="PyTorch rows on CUDA: replay CUDA graphs")
    g = p.add_argument_group("GPU suite (--device cuda; localdepth.bench.gpu)")
    g.add_argument("--suite", choices=("auto", "cpu", "gpu"), default="auto",
                   help="auto: the GPU suite with --device cuda, else the CPU suite; gpu with --device cpu --quick: "
                        "a dry run of the GPU suite")
    g.add_argument("--reference-code", metavar="PATH",
                   help="a checkout of the official Depth Anything V2 code: adds its infer_image rows")
    g.add_argument("--time-budget", type=float, metavar="S",
                   help="seconds the GPU suite may take; parts that would not fit are skipped and listed (default: 420)")
    g.add_argument("--out-dir", type=Path, metavar="DIR",
                   help="GPU suite: write DIR/gpu-<card>-<model>.json and .md (instead of --json/--markdown)")
    g.add_argument("--compile-backend", default="inductor", help=argparse.SUPPRESS)  # tests: aot_eager
    g.add_argument("--note", action="append", default=[], help=argparse.SUPPRESS)  # gpu.sh: the GPU tests' summary
    p.set_defaults(func=main)


def _gpu_suite(args: argparse.Namespace) -> bool:
    return args.suite == "gpu" or (args.suite == "auto" and str(args.device).startswith("cuda"))


def _command() -> str:
    return "localdepth " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if sys.argv and not sys.argv[0].endswith("pytest") else "localdepth bench"


def main_gpu(args: argparse.Namespace) -> int:
    """The GPU suite (:mod:`localdepth.bench.gpu`); imports nothing that needs the image libraries."""
    from ..bench.gpu import GpuBenchConfig, card_slug, run_gpu_bench
    from ..bench.report import gpu_markdown, write

    if len(args.model) > 1:
        print("localdepth: error: the GPU suite measures one --model at a time", file=sys.stderr)
        return 2
    config = GpuBenchConfig.quick_config() if args.quick else GpuBenchConfig()
    config.model = args.model[0]
    config.device = "cuda" if args.device == "auto" else args.device
    config.weights = args.weights
    config.images = list(args.image or [])
    config.reference_code = args.reference_code
    config.compile_backend = args.compile_backend
    for option, name in (("size", "size"), ("batch", "batches")):
        value = getattr(args, option)
        if value:
            setattr(config, name, value[0] if name == "size" else value)
    for name in ("runs", "warmup", "folder_images"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    if args.time_budget is not None:
        config.time_budget_s = args.time_budget
    config.command = _command()
    config.notes = list(args.note)

    def paths(report: dict):
        if args.out_dir is None:
            return args.json, args.markdown
        stem = f"gpu-{card_slug(report)}-{registry.get(config.model).name}"
        return args.out_dir / f"{stem}.json", args.out_dir / f"{stem}.md"

    # written after every part too: a run stopped from outside (benchmarks/gpu.sh's timeout) keeps its rows
    report = run_gpu_bench(config, on_part=lambda partial: write(partial, *paths(partial)))
    json_path, md_path = paths(report)
    write(report, json_path, md_path)
    print(gpu_markdown(report))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


def main(args: argparse.Namespace) -> int:
    from ..safety import check_outputs

    # --image may be given several times: each photo is an input of its own (both suites read them)
    check_outputs([("--json", args.json), ("--markdown", args.markdown)],
                  [("--image", image) for image in args.image or ()])
    if _gpu_suite(args):
        return main_gpu(args)
    from ..bench import BenchConfig, markdown, run_bench, write

    if args.weights and len(args.model) > 1:
        print("localdepth: error: --weights applies to one --model", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = BenchConfig.quick_config() if args.quick else BenchConfig()
    config.models = args.model
    config.weights = args.weights
    config.device = args.device
    config.image = args.image[0] if args.image else None
    config.baseline = not args.no_baseline
    config.compile = args.compile
    config.cuda_graphs = args.cuda_graphs
    for name in ("backend", "size", "batch", "dtype"):
        value = getattr(args, name)
        if value:
            setattr(config, {"backend": "backends", "size": "sizes", "batch": "batches", "dtype": "dtypes"}[name], value)
    for name in ("rounds", "runs", "warmup", "e2e_images", "folder_images"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    config.command = _command()
    report = run_bench(config)
    write(report, args.json, args.markdown)
    print(markdown(report))
    print(f"wrote {args.json} and {args.markdown}", file=sys.stderr)
    return 0
