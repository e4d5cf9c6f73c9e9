"""The benchmark report as Markdown (the README's table) and JSON."""

from __future__ import annotations

import json
from pathlib import Path


def _f(v, fmt: str = ".2f", none: str = "–") -> str:
    return none if v is None else format(v, fmt)


def markdown(report: dict) -> str:
    m = report["machine"]
    gpu = m["gpu"]["name"] if m.get("gpu") else "none"
    lines = [
        f"Measured {report['date']} with `{report['command']}`",
        "",
        f"- Machine: {m['cpu']}, {m['physical_cores']} physical cores ({m['logical_cpus']} logical), "
        f"CPU bf16: {'yes' if m['cpu_bf16'] else 'no'}; GPU: {gpu}",
        f"- Libraries: torch {m['torch']}, transformers {m['transformers']}, onnxruntime {m.get('onnxruntime')}, "
        f"Python {m['python']}",
        f"- Load average before / after: {_load(m.get('load_average'))} / {_load(m.get('load_average_after'))}",
        f"- Measured fp32 matmul throughput: {report['matmul_fp32_flops'] / 1e9:.1f} GFLOP/s"
        + (f"; bf16: {report['matmul_bf16_flops'] / 1e9:.1f} GFLOP/s" if report.get("matmul_bf16_flops") else ""),
    ]
    for name, info in report["models"].items():
        flops = ", ".join(f"{s}px: {f / 1e9:.1f} GFLOPs" for s, f in info["flops"].items())
        lines.append(f"- {name}: {info['weights']}; {flops} per image")
        for size, p in info["pipeline"].items():
            if p is None:
                lines.append(f"- Transformers has no `pipeline(\"depth-estimation\")` for {name}: no × pipeline column")
                continue
            lines.append(f"- Transformers `pipeline(\"depth-estimation\")`, fp32, {size}px, same weights: "
                         f"{p['e2e_images_per_s']:.2f} images/s end to end "
                         f"({p['e2e_ms_per_image']['median_ms']:.0f} ms/image)")
    lines += [
        "",
        "| model | backend | dtype | device | size | batch | model ms/img (median) | p90 | model img/s "
        "| × roofline | e2e img/s | × pipeline | deviation vs fp32 (max / mean) | peak RSS MB | peak GPU MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        dev = r.get("deviation_vs_fp32")
        dev_s = "–" if not dev else f"{dev['max_rel']:.1e} / {dev['mean_rel']:.1e}"
        lines.append(
            f"| {r['model']} | {r['backend']}{_opts(r)} | {r['dtype']} | {r['device']} | {r['size']} | {r['batch']} "
            f"| {r['model_ms_per_image']:.1f} | {r['model_p90_ms_per_image']:.1f} | {r['model_images_per_s']:.2f} "
            f"| {r['model_vs_roofline']:.2f} | {r['e2e_images_per_s']:.2f} | {_f(r['e2e_vs_pipeline'])} "
            f"| {dev_s} | {r['peak_rss_mb']:.0f} | {_f(r['peak_gpu_mb'], '.0f')} |")
    for s in report["skipped"]:
        lines.append(f"\nSkipped {s['backend']} {s['dtype']} for {s['model']}: {s['why']}")
    lines += ["", "× roofline: model-only time per image / (FLOPs ÷ measured fp32 matmul throughput); "
              "× pipeline: end-to-end images/s (decode → write) / the Transformers pipeline's in the same run; "
              "deviation: |output − PyTorch fp32| relative to the output's range."]
    return "\n".join(lines) + "\n"


def _opts(row: dict) -> str:
    opts = [k.replace("_", "-") for k, v in row.get("options", {}).items() if v]
    return f" ({', '.join(opts)})" if opts else ""


def _load(v) -> str:
    return "?" if not v else " ".join(f"{x:.2f}" for x in v)


def write(report: dict, json_path: Path | None, md_path: Path | None) -> None:
    from ..writers import atomic_write_bytes

    if json_path is not None:
        atomic_write_bytes(Path(json_path), (json.dumps(report, indent=2) + "\n").encode())
    if md_path is not None:
        atomic_write_bytes(Path(md_path), markdown(report).encode())
