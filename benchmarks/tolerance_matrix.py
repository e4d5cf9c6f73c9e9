"""Measure every numeric tolerance of the test suite under the CPU conditions CI machines differ in.

    PYTHONPATH=src python benchmarks/tolerance_matrix.py                        # every condition, the default files
    PYTHONPATH=src python benchmarks/tolerance_matrix.py tests/test_onnx.py --conditions base,batch2
    PYTHONPATH=src python benchmarks/tolerance_matrix.py --report out/tolerances --write-docs docs/testing.md

Runs pytest once per condition with ``LOCALDEPTH_TOLERANCE_LOG`` set, so that every numeric
check of the suite records what it measured (tests/tolerance.py: ``assert_allclose``,
``np.allclose``, ``torch.testing.assert_close``, ``pytest.approx``, ``within``, ``correlated``),
then prints, for each check (file and line), the share of its tolerance used (measured /
allowed: above 1 fails) in the worst case of each condition, and the worst measured value. The
conditions (see :data:`CONDITIONS`): this machine's kernels with 1 and 2 threads; every network
input inside a batch of two; oneDNN without AMX (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``, as
an AMD Zen 4 runs it), oneDNN at AVX2; an AVX2 CPU: PyTorch's own kernels, oneDNN, NumPy's
BLAS and OpenCV at AVX2 (``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``,
``OPENBLAS_CORETYPE=Haswell``, ``OPENCV_CPU_DISABLE``). A
condition that cannot change this machine's arithmetic (a variable asking for more than the CPU
has) measures nothing new.

Each file runs in a fresh pytest process per condition; its checks are kept in
``REPORT/<condition>/<file>.jsonl``, so measuring one file again (after changing it) replaces
only its own rows, and ``--aggregate-only`` tabulates what is there. ``--write-docs FILE``
replaces the table between ``<!-- tolerances:start -->`` and ``<!-- tolerances:end -->`` in
FILE. On a shared machine give it time: about as long as the files' tests take, per condition.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> (column title, environment). Every condition fixes the thread count (the tests'
#: own defaults differ), and the kernel variables of the others are unset.
CONDITIONS: dict[str, tuple[str, dict[str, str]]] = {
    "base": ("1 thread", {"LOCALDEPTH_TOLERANCE_THREADS": "1"}),
    "threads2": ("2 threads", {"LOCALDEPTH_TOLERANCE_THREADS": "2"}),
    "batch2": ("batch 2", {"LOCALDEPTH_TOLERANCE_THREADS": "1", "LOCALDEPTH_TOLERANCE_BATCH": "2"}),
    "noamx": ("oneDNN no AMX", {"LOCALDEPTH_TOLERANCE_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}),
    "onednn_avx2": ("oneDNN AVX2", {"LOCALDEPTH_TOLERANCE_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"}),
    # every library at AVX2, as on a real AVX2 CPU: PyTorch's own kernels at AVX2 beside oneDNN's AMX
    # are no real machine (its bf16 matrix products stop on "pack_vnni2 is only supported when avx512")
    "aten_avx2": ("AVX2 CPU", {"LOCALDEPTH_TOLERANCE_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2",
                               "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell",
                               "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX512-CLX"}),
}
_KERNEL_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE",
                     "OPENCV_CPU_DISABLE", "LOCALDEPTH_TOLERANCE_BATCH", "LOCALDEPTH_TOLERANCE_THREADS")

#: the test files with numeric checks (the others check files, codes and messages)
DEFAULT_FILES = [
    "test_align.py", "test_bench.py", "test_comfyui_nodes.py", "test_conversion_grids.py", "test_coreml.py",
    "test_da3_outputs.py", "test_da3_parity.py", "test_distributed.py", "test_eval.py", "test_finetune.py",
    "test_geometry.py", "test_gpu_bench.py", "test_gpu_pipeline.py", "test_images.py", "test_mlx.py",
    "test_model_parity.py", "test_network_outputs.py", "test_onnx.py", "test_openvino.py",
    "test_performance_modes.py", "test_photo3d.py", "test_pointcloud.py", "test_poses.py", "test_postprocess.py",
    "test_precision.py", "test_preprocess.py", "test_prompt_depth.py", "test_reference_fidelity.py",
    "test_render.py", "test_scene.py", "test_scene_da3.py", "test_server_api.py", "test_server_load.py",
    "test_transformers_families.py", "test_video.py", "test_video_depth_anything.py", "test_writers.py",
]

START, END = "<!-- tolerances:start -->", "<!-- tolerances:end -->"


def run_file(name: str, file: str, folder: Path, extra: list[str]) -> dict:
    """pytest on one file under one condition; returns its outcome. The checks it made are in
    ``folder/<condition>/<file stem>.jsonl`` (replaced on each run, so one file can be measured
    again without the others)."""
    _, variables = CONDITIONS[name]
    log = folder / name / f"{Path(file).stem}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _KERNEL_VARIABLES}
    env.update(variables)
    env["LOCALDEPTH_TOLERANCE_LOG"] = str(log)
    env["OMP_NUM_THREADS"] = variables["LOCALDEPTH_TOLERANCE_THREADS"]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", file, "-q", "-p", "no:cacheprovider", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    tail = proc.stdout.strip().splitlines()
    failed = [line.split(" ", 1)[1].split(" - ")[0] for line in tail if line.startswith(("FAILED ", "ERROR "))]
    return {"condition": name, "file": Path(file).name, "returncode": proc.returncode,
            "seconds": round(time.perf_counter() - t0, 1), "summary": tail[-1] if tail else proc.stderr.strip()[-300:],
            "failed": failed}


def _function(test: str) -> str:
    """``tests/test_x.py::test_name[param]`` -> ``test_name``."""
    return re.sub(r"\[.*\]$", "", test.split("::")[-1])


def aggregate(folder: Path, conditions: list[str]) -> list[dict]:
    """One row per check (site and test function): its worst usage, measured and allowed value per condition."""
    rows: dict[tuple[str, str], dict] = {}
    for name in conditions:
        for log in sorted((folder / name).glob("*.jsonl")):
            for line in log.read_text().splitlines():
                rec = json.loads(line)
                key = (rec["site"], _function(rec["test"]))
                row = rows.setdefault(key, {"site": rec["site"], "test": key[1], "kind": rec["kind"],
                                            "tolerance": rec["what"], "worst": {}})
                usage = _number(rec["usage"])
                if usage >= max((w["usage"] for w in row["worst"].values()), default=-1.0):
                    row["kind"], row["tolerance"] = rec["kind"], rec["what"]  # the binding one of a parametrized check
                best = row["worst"].get(name)
                if best is None or usage > best["usage"]:
                    row["worst"][name] = {"usage": usage, "measured": _number(rec["measured"]),
                                          "limit": _number(rec["limit"]), "test": rec["test"]}
    return sorted(rows.values(), key=lambda r: (r["site"].split(":")[0], int(r["site"].split(":")[1])
                                                if r["site"] != "?" else 0))


def _number(x) -> float:
    return float(x)  # "inf" and "nan" are logged as strings


def _usage(u: float | None) -> str:
    if u is None:
        return "–"
    if u == 0:
        return "0"
    return f"{u:.2g}" if u < 10 else f"**{u:.3g}**"


def markdown(rows: list[dict], conditions: list[str], runs: list[dict], machine: str) -> str:
    titles = [CONDITIONS[c][0] for c in conditions]
    lines = [f"Measured on {machine}, {time.strftime('%Y-%m-%d')}, by "
             f"`python benchmarks/tolerance_matrix.py` (conditions: "
             + "; ".join(f"{CONDITIONS[c][0]}: {_variables(c)}" for c in conditions) + ").",
             "Each cell: the largest share of the tolerance a check used under that condition "
             "(measured / allowed; 1 fails); *worst* is the largest error measured and what was allowed there.",
             "", "| check | test | tolerance | " + " | ".join(titles) + " | worst (measured / allowed) |",
             "|---|---|---|" + "---|" * len(titles) + "---|"]
    for row in rows:
        cells = [_usage(row["worst"].get(c, {}).get("usage")) for c in conditions]
        worst = max(row["worst"].values(), key=lambda w: w["usage"])
        tolerance = (row["tolerance"] or row["kind"]).replace("|", "\\|")  # a Markdown cell
        lines.append(f"| `{row['site']}` | `{row['test']}` | {row['kind']}: {tolerance} | " + " | ".join(cells)
                     + f" | {worst['measured']:.2g} / {worst['limit']:.2g} |")
    lines.append("")
    for name in conditions:
        mine = [r for r in runs if r["condition"] == name]
        counts = {}
        for r in mine:
            for number, word in re.findall(r"(\d+) (passed|failed|skipped|error)", r["summary"]):
                counts[word] = counts.get(word, 0) + int(number)
        seconds = sum(r["seconds"] for r in mine)
        failed = [f for r in mine for f in r["failed"]]
        line = (f"{CONDITIONS[name][0]}: {len(mine)} files, " + ", ".join(f"{n} {w}" for w, n in counts.items())
                + f" in {seconds / 60:.0f} min.")
        if failed:
            line += " Failed: " + ", ".join(f"`{f}`" for f in failed) + "."
        lines.append(line)
    return "\n".join(lines) + "\n"


def _variables(name: str) -> str:
    shown = {k: v for k, v in CONDITIONS[name][1].items() if k != "LOCALDEPTH_TOLERANCE_THREADS"}
    threads = CONDITIONS[name][1]["LOCALDEPTH_TOLERANCE_THREADS"]
    parts = [f"{threads} thread{'s' if threads != '1' else ''}"] + [f"`{k}={v}`" for k, v in shown.items()]
    return ", ".join(parts)


def write_docs(path: Path, table: str) -> None:
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path} has no {START} ... {END} block to replace")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{table}{END}{tail}")


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        has = [f for f in ("avx512_bf16", "amx_bf16") if f" {f}" in text]
        flags = f" ({', '.join(has)})" if has else ""
    except OSError:
        pass
    import torch

    return f"{cpu}{flags}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", help="test files (default: the files with numeric checks)")
    p.add_argument("--conditions", default=",".join(CONDITIONS), help=f"comma-separated, of {', '.join(CONDITIONS)}")
    p.add_argument("--report", type=Path, default=ROOT / "tolerance-report", help="folder for the logs and tables")
    p.add_argument("--aggregate-only", action="store_true", help="tabulate the logs already in --report")
    p.add_argument("--write-docs", type=Path, help="replace the table block in this Markdown file")
    p.add_argument("-k", help="pytest -k expression")
    args = p.parse_args(argv)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        p.error(f"unknown condition(s) {', '.join(unknown)}; choose from {', '.join(CONDITIONS)}")
    files = args.files or [f"tests/{f}" for f in DEFAULT_FILES if (ROOT / "tests" / f).is_file()]
    args.report.mkdir(parents=True, exist_ok=True)
    runs_file = args.report / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.is_file() else []
    if not args.aggregate_only:
        extra = ["-k", args.k] if args.k else []
        for name in conditions:
            for file in files:
                print(f"[{name}] {CONDITIONS[name][0]}: {file} ...", file=sys.stderr, flush=True)
                outcome = run_file(name, file, args.report, extra)
                print(f"[{name}] {outcome['summary']} in {outcome['seconds']:.0f} s", file=sys.stderr, flush=True)
                runs = [r for r in runs if (r["condition"], r["file"]) != (name, outcome["file"])] + [outcome]
                runs_file.write_text(json.dumps(runs, indent=2) + "\n")
    done = [c for c in conditions if any((args.report / c).glob("*.jsonl"))]
    rows = aggregate(args.report, done)
    table = markdown(rows, done, [r for r in runs if r["condition"] in done], machine_line())
    (args.report / "tolerances.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.report / "tolerances.md").write_text(table)
    print(table)
    if args.write_docs:
        write_docs(args.write_docs, table)
    over = [r for r in rows if any(w["usage"] > 1 for w in r["worst"].values())]
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
