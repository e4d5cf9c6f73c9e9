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
    p.add_argument("--image", metavar="PHOTO", help="make the inputs from this photo (default: a synthetic scene)")
    p.add_argument("--no-baseline", action="store_true", help="skip the Transformers pipeline")
    p.add_argument("--quick", action="store_true", help="small and fast (CI): 140 px, 1 round, a few files")
    p.add_argument("--json", type=Path, default=Path("bench.json"), help="JSON report (default: bench.json)")
    p.add_argument("--markdown", type=Path, default=Path("bench.md"), help="Markdown table (default: bench.md)")
    p.add_argument("--threads", type=int, help="PyTorch CPU threads (default: PyTorch's)")
    p.add_argument("--compile", action="store_true", help="PyTorch rows: torch.compile (the warm-up compiles)")
    p.add_argument("--cuda-graphs", action="store_true", help="PyTorch rows on CUDA: replay CUDA graphs")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..bench import BenchConfig, markdown, run_bench, write
    from ..safety import check_outputs

    check_outputs([("--json", args.json), ("--markdown", args.markdown)], [("--image", args.image)])
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
    config.image = args.image
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
    config.command = "localdepth " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if sys.argv and not sys.argv[0].endswith("pytest") else "localdepth bench"
    report = run_bench(config)
    write(report, args.json, args.markdown)
    print(markdown(report))
    print(f"wrote {args.json} and {args.markdown}", file=sys.stderr)
    return 0
