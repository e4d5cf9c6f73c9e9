"""The benchmark report as Markdown (the README's table) and JSON."""

from __future__ import annotations

import json
from pathlib import Path


def _f(v, fmt: str = ".2f", none: str = "–") -> str:
    return none if v is None else format(v, fmt)


def markdown(report: dict) -> str:
    m = report["machine"]
    gpu = m["gpu"]["name"] if m.get("gpu") else "none"
    libs = ", ".join(f"{k} {m[k]}" for k in ("torch", "transformers", "onnxruntime", "openvino") if m.get(k))
    lines = [
        f"Measured {report['date']} with `{report['command']}`",
        "",
        f"- Machine: {m['cpu']}, {m['physical_cores']} physical cores ({m['logical_cpus']} logical), "
        f"CPU bf16: {'yes' if m['cpu_bf16'] else 'no'}; GPU: {gpu}",
        f"- Libraries: {libs}, Python {m['python']}",
        f"- Load average before / after: {_load(m.get('load_average'))} / {_load(m.get('load_average_after'))}",
        f"- Measured matmul throughput: fp32 {report['matmul_fp32_flops'] / 1e9:.1f} GFLOP/s"
        + (f", bf16 {report['matmul_bf16_flops'] / 1e9:.1f} GFLOP/s" if report.get("matmul_bf16_flops") else ""),
        f"- {report.get('rounds', 1)} interleaved rounds (every variant and the pipeline once per round); "
        f"medians; folder passes of {report.get('folder_images', 0)} files",
    ]
    for name, info in report["models"].items():
        flops = ", ".join(f"{s}px: {f / 1e9:.1f} GFLOPs" for s, f in info["flops"].items() if f)
        lines.append(f"- {name}: {info['weights']}" + (f"; {flops} per image" if flops else ""))
        for size, p in info["pipeline"].items():
            if p is None:
                lines.append(f"- Transformers has no `pipeline(\"depth-estimation\")` for {name}: no × pipeline column")
                continue
            lines.append(f"- Transformers `pipeline(\"depth-estimation\")`, fp32, {size}px, same weights, one image "
                         f"per call: {p['e2e_images_per_s']:.2f} images/s ({p['e2e_ms_per_image']['median_ms']:.0f} "
                         f"ms/image)")
    lines += [
        "",
        "| model | backend | dtype | size | batch | model ms/img | p90 | fp32 limit ms | × fp32 limit | bf16 limit ms "
        "| × bf16 limit | e2e img/s | × pipeline | folder img/s (requests) | × pipeline | deviation vs fp32 (max / mean) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        dev = r.get("deviation_vs_fp32")
        dev_s = "–" if not dev else f"{dev['max_rel']:.1e} / {dev['mean_rel']:.1e}"
        folder = "–" if r.get("folder_images_per_s") is None else \
            f"{r['folder_images_per_s']:.2f} ({r.get('folder_requests', 1)})"
        lines.append(
            f"| {r['model']} | {r['backend']}{_opts(r)} | {r['dtype']} | {r['size']} | {r['batch']} "
            f"| {r['model_ms_per_image']:.1f} | {r['model_p90_ms_per_image']:.1f} "
            f"| {_f(r.get('fp32_limit_ms_per_image'), '.0f')} | {_f(r.get('model_vs_fp32_limit'))} "
            f"| {_f(r.get('bf16_limit_ms_per_image'), '.0f')} | {_f(r.get('model_vs_bf16_limit'))} "
            f"| {r['e2e_images_per_s']:.2f} | {_f(r['e2e_vs_pipeline'])} | {folder} | {_f(r.get('folder_vs_pipeline'))} "
            f"| {dev_s} |")
    for s in report["skipped"]:
        lines.append(f"\nSkipped {s['backend']} {s['dtype']} for {s['model']}: {s['why']}")
    lines += ["", "limit: FLOPs ÷ measured matmul throughput of that precision (× limit ≥ 1: slower than it); "
              "e2e: one batch at a time, JPEG on disk → decode → preprocess → infer → `.npy` + sidecar written; "
              "folder: the pipelined runner in throughput mode (OpenVINO's optimal number of requests in flight); "
              "× pipeline: images/s ÷ the Transformers pipeline's in the same rounds; deviation: |output − PyTorch "
              f"fp32 (LiteRT for TFLite models)| ÷ the output's range. Peak RSS of the whole run: {report.get('peak_rss_mb', 0):.0f} MB."]
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
