"""The benchmark report as Markdown (the README's table) and JSON."""

from __future__ import annotations

import json
from pathlib import Path


def _f(v, fmt: str = ".2f", none: str = "–") -> str:
    return none if v is None else format(v, fmt)


def markdown(report: dict) -> str:
    m = report["machine"]
    gpu = m["gpu"]["name"] if m.get("gpu") else "none"
    libs = ", ".join(f"{k} {m[k]}" for k in ("torch", "transformers", "onnxruntime", "openvino", "mlx") if m.get(k))
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
            f"| {r['model']} | {r['backend']}{_opts(r)} | {r['dtype']} | {_size(r)} | {r['batch']} "
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


#: the CPU speed targets (docs/performance.md), checked on a report's openvino rows at batch 1:
#: (what, backend, dtype, row field, comparison, bound)
CPU_TARGETS = (
    ("end to end, one image at a time, vs the pipeline", "openvino", "bf16", "e2e_vs_pipeline", ">=", 2.0),
    ("end to end, one image at a time, vs the pipeline", "openvino", "int8", "e2e_vs_pipeline", ">=", 2.7),
    ("end to end, one image at a time, vs the pipeline", "openvino", "fp32", "e2e_vs_pipeline", ">=", 1.1),
    ("model only, vs the bf16 limit", "openvino", "bf16", "model_vs_bf16_limit", "<=", 1.5),
    ("folder in throughput mode, vs the pipeline", "openvino", "bf16", "folder_vs_pipeline", ">=", 2.2),
)

README_START = "<!-- bench-table:start -->"
README_END = "<!-- bench-table:end -->"


def target_lines(report: dict) -> list[str]:
    """One line per CPU target: the measured value, and met or missed by how much (only the
    targets whose row the report has)."""
    lines = []
    for what, backend, dtype, key, op, bound in CPU_TARGETS:
        row = next((r for r in report["results"] if (r["backend"], r["dtype"], r["batch"]) == (backend, dtype, 1)
                    and r.get(key) is not None), None)
        if row is None:
            continue
        value = row[key]
        met = value >= bound if op == ">=" else value <= bound
        dev = row.get("deviation_vs_fp32") or {}
        extra = f" (mean deviation {dev['mean_rel']:.1e} of the range)" if dtype == "int8" and dev else ""
        lines.append(f"{backend} {dtype}, {what}: {value:.2f}×{extra}; target {op.replace('>=', '≥').replace('<=', '≤')} "
                     f"{bound:g}×: {'met' if met else 'missed'}")
    return lines


def readme_table(report: dict) -> str:
    """The README's performance block (between :data:`README_START` and :data:`README_END`):
    where and when, the baseline and limits, one row per variant, and the targets."""
    m = report["machine"]
    libs = ", ".join(f"{k} {m[k]}" for k in ("torch", "transformers", "onnxruntime", "openvino") if m.get(k))
    gpu = m["gpu"]["name"] if m.get("gpu") else "no GPU"
    head = [f"Measured {report['date']} on {m['cpu']}, {m['physical_cores']} cores "
            f"(CPU bf16: {'yes' if m['cpu_bf16'] else 'no'}; {gpu}), load average {_load(m.get('load_average'))} "
            f"before and {_load(m.get('load_average_after'))} after ({libs}), with", "",
            "```", report["command"], "```", ""]
    facts = []
    for name, info in report["models"].items():
        for size, flops in info["flops"].items():
            rows = [r for r in report["results"] if r["model"] == name and str(r["size"]) == size]
            limits = ", ".join(f"{d} limit {rows[0][f'{d}_limit_ms_per_image']:.0f} ms"
                               for d in ("fp32", "bf16") if rows and rows[0].get(f"{d}_limit_ms_per_image"))
            pipe = info["pipeline"].get(size)
            facts.append(f"{name}, {info['weights']}: {flops / 1e9:.1f} GFLOPs per image at {size}×{size}"
                         + (f" ({limits})" if limits else "")
                         + (f"; Transformers pipeline fp32: {pipe['e2e_images_per_s']:.2f} images/s" if pipe else "")
                         + ".")
    results = report["results"]
    several = {k: len({r[k] for r in results}) > 1 for k in ("model", "size", "batch")}
    keys = [k for k in ("model", "size", "batch") if several[k]]
    lines = [*head, *facts, "",
             "| " + " | ".join([*keys, "backend", "dtype", "model ms/img", "× bf16 limit", "end-to-end img/s",
                                "× pipeline", "folder img/s (requests)", "× pipeline",
                                "deviation vs fp32 (mean, of range)"]) + " |",
             "|" + "---|" * (len(keys) + 9)]
    for r in results:
        dev = r.get("deviation_vs_fp32")
        folder = "–" if r.get("folder_images_per_s") is None else \
            f"{r['folder_images_per_s']:.2f} ({r.get('folder_requests', 1)})"
        cells = [_size(r) if k == "size" else str(r[k]) for k in keys] + [
            r["backend"] + _opts(r), r["dtype"], f"{r['model_ms_per_image']:.0f}", _f(r.get("model_vs_bf16_limit")),
            f"{r['e2e_images_per_s']:.2f}", _f(r.get("e2e_vs_pipeline")), folder, _f(r.get("folder_vs_pipeline")),
            "–" if not dev else ("0" if dev["mean_rel"] == 0 else f"{dev['mean_rel']:.1e}")]
        lines.append("| " + " | ".join(cells) + " |")
    targets = target_lines(report)
    if targets:
        lines += ["", "Against the CPU targets (same run):", ""] + [f"- {t}" for t in targets]
    return "\n".join(lines) + "\n"


def replace_readme_block(text: str, block: str) -> str:
    """``text`` (the README) with its performance block replaced by ``block``."""
    start, end = text.index(README_START), text.index(README_END)
    return text[:start + len(README_START)] + "\n" + block + text[end:]


def _size(row: dict) -> str:
    """The input side asked for, or the network input where the model fixes it (PyDNet++: 448x640)."""
    net = row.get("network_input")
    return f"{net[0]}×{net[1]} (fixed)" if net and list(net) != [row["size"], row["size"]] else str(row["size"])


def _opts(row: dict) -> str:
    """Options and, where it is not the CPU, the device: ``torch (compile)``, ``mlx (gpu)``, ``torch (mps)``."""
    opts = [k.replace("_", "-") for k, v in row.get("options", {}).items() if v]
    if row.get("device", "cpu") != "cpu":
        opts.insert(0, str(row["device"]))
    return f" ({', '.join(opts)})" if opts else ""


def _load(v) -> str:
    return "?" if not v else " ".join(f"{x:.2f}" for x in v)


def write(report: dict, json_path: Path | None, md_path: Path | None) -> None:
    """The report as JSON and Markdown (either may be None), each written atomically."""
    text = gpu_markdown(report) if report.get("suite") == "gpu" else markdown(report)
    for path, data in ((json_path, json.dumps(report, indent=2) + "\n"), (md_path, text)):
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(data)  # no localdepth.writers here: the GPU suite runs without the image libraries
            tmp.replace(path)


# ----------------------------------------------------------------------------- the GPU suite

#: the command that measures the GPU table (tests/test_gpu_bench.py runs its dry run)
GPU_COMMAND = "bash benchmarks/gpu.sh"
GPU_README_START = "<!-- gpu-bench-table:start -->"
GPU_README_END = "<!-- gpu-bench-table:end -->"

_VARIANTS = ("transformers pipeline", "official infer_image", "eager", "compiled", "compiled + CUDA graphs")


def _where(report: dict) -> str:
    m = report["machine"]
    gpu = m.get("gpu")
    card = f"{gpu['name']} ({gpu['memory_gb']} GB, CUDA {gpu['cuda']})" if gpu else f"no GPU ({m['cpu']})"
    libs = ", ".join(f"{k} {m[k]}" for k in ("torch", "transformers") if m.get(k))
    return f"{card}; {libs}"


def gpu_table(report: dict) -> list[str]:
    """One row per variant of the main model: batch-1 latency, throughput per batch, fraction of the
    bf16 matmul, the folder end to end against the pipeline, peak memory."""
    results = report["results"]
    batches = sorted({r["batch"] for r in results if r["kind"] == "model"})
    head = ["variant", "dtype", "batch 1 ms (model)"] + [f"img/s b{b}" for b in batches] + \
        ["× bf16 matmul (b ≥ 32)", "folder img/s", "× pipeline fp16", "peak GPU MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = sorted({(r["variant"], r["dtype"]) for r in results},
                  key=lambda k: (_VARIANTS.index(k[0]) if k[0] in _VARIANTS else 99, k[1] != "fp32", k[1]))
    for variant, dtype in keys:
        rows = [r for r in results if (r["variant"], r["dtype"]) == (variant, dtype)]
        model = {r["batch"]: r for r in rows if r["kind"] == "model"}
        folder = next((r for r in rows if r["kind"] == "folder"), None)
        fractions = [r["bf16_fraction"] for b, r in model.items() if b >= 32 and r.get("bf16_fraction")]
        peaks = [r["peak_gpu_mb"] for r in rows if r.get("peak_gpu_mb")]
        cells = [variant, dtype, _f(model[1]["model_ms_per_image"], ".2f") if 1 in model else "–"]
        cells += [_f(model[b]["images_per_s"], ".0f") if b in model else "–" for b in batches]
        cells += [_f(max(fractions), ".0%") if fractions else "–",
                  _f(folder["images_per_s"], ".1f") if folder else "–",
                  _f(folder.get("folder_vs_pipeline_fp16")) if folder else "–",
                  _f(max(peaks), ".0f") if peaks else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def gpu_other_lines(report: dict) -> list[str]:
    rows = report.get("other_models") or []
    if not rows:
        return []
    lines = ["| model | what | dtype | ms | per second | peak GPU MB |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['what']} | {r.get('dtype', '')} | {r['ms']:.1f} | {r['per_s']:.1f} "
                     f"| {_f(r.get('peak_gpu_mb'), '.0f')} |")
    return lines


def gpu_target_lines(report: dict) -> list[str]:
    lines = []
    for t in report.get("targets", []):
        op = t["op"].replace(">=", "≥").replace("<=", "≤")
        value = "not measured" if t["value"] is None else format(t["value"], ".3g")
        verdict = {True: "met", False: "missed", None: "no verdict (not a GPU run)"}[t["met"]]
        if t["value"] is None:
            verdict = "not measured in this run"
        lines.append(f"{t['target']}: {value}; target {op} {t['bound']:g}: {verdict}")
    return lines


def gpu_markdown(report: dict) -> str:
    """The GPU suite's report as Markdown (docs/bench/gpu-<card>-<model>.md)."""
    models = report.get("models", {})
    lines = [f"Measured {report['date']} with `{report['command']}`", "",
             f"- Machine: {_where(report)}; {report['machine']['cpu']}, {report['machine']['logical_cpus']} CPUs",
             f"- Device: {report['device']}; half precision: {report.get('half')}" + (" (quick: a dry run, tiny sizes; "
                                                                                  "numbers mean nothing)" if report.get("quick") else "")]
    mm = [f"{d} {report[f'matmul_{d}_flops'] / 1e12:.1f} TFLOP/s" for d in ("bf16", "fp16", "fp32")
          if report.get(f"matmul_{d}_flops")]
    if mm:
        lines.append(f"- Measured matmul throughput ({report.get('matmul_n')}²): " + ", ".join(mm))
    for name, info in models.items():
        flops = info.get("flops_per_image")
        lines.append(f"- {name}: {info['weights']}; input {info['size']} px, network input "
                     f"{info['network_input'][0]}×{info['network_input'][1]}"
                     + (f", {flops / 1e9:.1f} GFLOPs per image" if flops else ""))
    dev = report.get("deviation_half_vs_fp32")
    if dev:
        lines.append(f"- {dev['dtype']} vs fp32 on {dev['photos']} photos: mean {dev['mean_of_range']:.1e}, max "
                     f"{dev['max_of_range']:.1e} of each map's range (worst photo)")
    lines += [f"- Note: {n}" for n in report.get("notes", [])]
    lines += ["", *gpu_table(report), ""]
    other = gpu_other_lines(report)
    if other:
        lines += ["Other models (random weights of their released architectures, built on the device):", "", *other, ""]
    targets = gpu_target_lines(report)
    if targets:
        lines += ["Against the GPU targets (same run):", "", *[f"- {t}" for t in targets], ""]
    for s in report.get("skipped", []):
        lines.append(f"Skipped {s['part']}: {s['why']}")
    lines += ["", "model: the backend's forward on a device batch (synchronised; median of the runs); folder: JPEG "
              "files → decode → the network → `.npy` written, end to end (localdepth: `localdepth run`'s runner on "
              "the GPU pipeline with automatic batches; the pipeline and the official code: one image per call); "
              "× bf16 matmul: FLOPs × images/s ÷ the measured bf16 matmul throughput."
              f" The run took {report.get('seconds', 0):.0f} s of a {report.get('time_budget_s', 0):.0f} s budget."]
    return "\n".join(lines) + "\n"


def gpu_readme_table(report: dict | None, command: str) -> str:
    """The README's GPU block: the table of a GPU report, or, with none, what is measured and the command."""
    if report is None:
        return ("Not measured yet: no GPU was lent to the sessions that built this, so the GPU path is\n"
                "tested on the CPU (the same code on CPU tensors) and by GPU tests that have not run yet. On one\n"
                "NVIDIA GPU, in under 8 minutes and installing nothing, this command runs the GPU tests and\n"
                "measures Depth Anything V2 Small (localdepth eager, compiled, compiled + CUDA graphs; the\n"
                "Transformers pipeline in fp32 and fp16; the official `infer_image`), Depth Pro, Depth Anything 3\n"
                "and Video Depth Anything on random weights of their released architectures, writes\n"
                "`docs/bench/gpu-<card>-<model>.json` and `.md`, and puts the table here (`--dry-run` checks it\n"
                "on any CPU):\n\n```\n" + command + "\n```\n")
    lines = [f"Measured {report['date']} on {_where(report)}, with", "", "```", command, "```", "",
             *gpu_table(report), ""]
    other = gpu_other_lines(report)
    if other:
        lines += [*other, ""]
    lines += [f"- {t}" for t in gpu_target_lines(report)]
    return "\n".join(lines) + "\n"


def replace_gpu_readme_block(text: str, block: str) -> str:
    start, end = text.index(GPU_README_START), text.index(GPU_README_END)
    return text[:start + len(GPU_README_START)] + "\n" + block + text[end:]
