"""``localdepth models``: list, pull and add model weights."""

from __future__ import annotations

import argparse
import json

from .. import registry, weights
from ..limits import CONVERSION_CACHE_MAX_BYTES


def register(sub) -> None:
    p = sub.add_parser("models", help="list known models; pull or add their weights",
                       description="List the registry; `models pull NAME` downloads, `models add NAME PATH` imports, "
                                   "`models cache` shows and clears the conversion cache.")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown (the README's model table)")
    p.add_argument("--family", metavar="NAME",
                   help="only this family (depth-anything-v2, depth-pro, zoedepth, prompt-depth-anything, ...)")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    pull = actions.add_parser("pull", help="download and verify a model's weights into the cache")
    pull.add_argument("name")
    add = actions.add_parser("add", help="verify local weights and copy them into localdepth's cache")
    add.add_argument("name")
    add.add_argument("path", help="a Hugging Face-format folder, or the model's weights file")
    info = actions.add_parser("info", help="everything the registry knows about one model")
    info.add_argument("name")
    cache = actions.add_parser(
        "cache", help="show or clear the conversion cache (ONNX, OpenVINO, int8)",
        description="The converted models (ONNX, OpenVINO IR, int8) localdepth made and keeps, keyed by the weights' "
                    "content: each entry's size and last use, and the total against the budget (default "
                    f"{CONVERSION_CACHE_MAX_BYTES / 2**30:g} GiB, or LOCALDEPTH_CONVERSION_CACHE_MB); beyond it the "
                    "least recently used are removed after each new conversion. Leftovers of killed conversions "
                    "are removed here too.")
    cache.add_argument("name", nargs="?", help="only this model's conversions")
    cache.add_argument("--clear", action="store_true", help="remove the conversions (of NAME, or all)")
    cache.add_argument("--budget", metavar="MB",
                       help="remove the least recently used conversions until at most MB MiB remain")
    cache.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.set_defaults(func=main)


def _row(spec: registry.ModelSpec) -> dict:
    local = weights.cached(spec)
    return {
        "name": spec.name, "family": spec.family, "kind": spec.output, "metric": spec.metric,
        "output": _kind(spec), "max_depth": spec.max_depth,
        "params_m": spec.params_millions, "download_mb": spec.download_mb, "licence": spec.licence,
        "commercial_use": spec.commercial_use, "source": spec.source,
        "input_size": spec.preprocessing.fixed_hw or spec.preprocessing.target_hw or spec.preprocessing.input_size,
        "prompt_depth": spec.prompt is not None,
        "local": local is not None, "local_path": str(local.path) if local else None,
    }


def _size(mb: float) -> str:
    return f"{mb / 1000:.2f} GB" if mb >= 1000 else f"{mb:.0f} MB"


def _print_table(rows: list[dict]) -> None:
    headers = ("name", "kind", "params", "size", "licence", "local")
    table = [(r["name"], r["output"],
              f"{r['params_m']:g}M", _size(r["download_mb"]), r["licence"] + ("" if r["commercial_use"] else " *"),
              "yes" if r["local"] else "no") for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    print("\n* not for commercial use.  disparity = inverse depth; relative = unknown scale; metric = metres."
          f"\nweights cache: {weights.home() / 'models'} (LOCALDEPTH_HOME); Hub models also use the Hugging Face cache.")


def _kind(spec: registry.ModelSpec) -> str:
    """What the map holds, in a few words."""
    camera = " + camera" if spec.predicts_camera else ""
    video = ", video" if spec.temporal else ""
    if spec.output != "depth":
        return "relative disparity" + video
    if spec.relative_depth:
        return "relative depth" + camera + video
    if spec.prompt is not None:
        return "metric depth, from a prompt depth map"
    return (f"metric depth, ≤{spec.max_depth:g} m" if spec.max_depth else "metric depth (m)") + camera + video


def specs(family: str | None = None) -> list[registry.ModelSpec]:
    """The registry's entries, of one family if given (a one-line error names the families otherwise)."""
    from ..errors import LocalDepthError

    entries = list(registry.MODELS.values())
    if family is None:
        return entries
    families = list(dict.fromkeys(s.family for s in entries))
    chosen = [s for s in entries if s.family == registry.canonical(family)]
    if not chosen:
        raise LocalDepthError(f"unknown family '{family}'; families: {', '.join(families)}")
    return chosen


def markdown_table() -> str:
    """The registry as the README shows it (generated, so the README never drifts from the table)."""
    lines = ["| name | output | params | download | licence | source |", "|---|---|---|---|---|---|"]
    for spec in registry.MODELS.values():
        kind = _kind(spec)
        licence = spec.licence + ("" if spec.commercial_use else " (non-commercial)")
        lines.append(f"| `{spec.name}` | {kind} | {spec.params_millions:g}M | {_size(spec.download_mb)} | "
                     f"{licence} | `{spec.source}` |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.action == "pull":
        spec = registry.get(args.name)
        path = weights.pull(spec)
        print(f"{spec.name}: weights ready at {path} (licence: {spec.licence})")
        return 0
    if args.action == "add":
        spec = registry.get(args.name)
        path = weights.add(spec, args.path)
        print(f"{spec.name}: verified and added to {path}")
        return 0
    if args.action == "cache":
        return _cache(args)
    if args.action == "info":
        spec = registry.get(args.name)
        row = _row(spec)
        row.update(description=spec.description, paper=spec.paper, files=[f.filename for f in spec.files],
                   preprocessing=spec.preprocessing.as_dict(), postprocessing=spec.postprocessing.__dict__,
                   position_embedding=spec.position_embedding,
                   prompt=spec.prompt.__dict__ if spec.prompt else None, aliases=list(spec.aliases))
        print(json.dumps(row, indent=2, default=str))
        return 0
    if args.markdown:
        print(markdown_table())
        return 0
    rows = [_row(spec) for spec in specs(args.family)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    return 0


def _mib(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


def _cache(args: argparse.Namespace) -> int:
    """``localdepth models cache [NAME] [--clear] [--budget MB] [--json]``."""
    import time

    from ..conversion import cache

    name = registry.get(args.name).name if args.name else None
    limit = cache.budget()
    leftovers = cache.clean_stale()
    if leftovers:
        print(f"removed {len(leftovers)} leftover(s) of killed conversions")
    if args.clear:
        gone = cache.clear(name)
        print(f"removed {len(gone)} conversion(s) ({_mib(sum(e.bytes for e in gone))})"
              + (f" of {name}" if name else "") + f" from {cache.root()}")
        return 0
    if args.budget is not None:
        limit = cache.parse_budget(args.budget, "--budget")
        gone = cache.evict(limit)
        print(f"removed {len(gone)} least recently used conversion(s) ({_mib(sum(e.bytes for e in gone))})")
    entries = cache.entries(name)
    total = sum(e.bytes for e in cache.entries())
    if args.json:
        print(json.dumps({"root": str(cache.root()), "budget_bytes": limit, "total_bytes": total,
                          "entries": [e.as_dict() for e in entries]}, indent=2))
        return 0
    print(f"conversion cache: {cache.root()} (budget {_mib(limit)}; {cache.BUDGET_ENV} or --budget MB)")
    if entries:
        rows = [(e.model, e.weights_id, e.name, _mib(e.bytes),
                 time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))) for e in entries]
        headers = ("model", "weights", "conversion", "size", "last used")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        for row in (headers, *rows):
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"total: {len(cache.entries())} conversion(s), {_mib(total)} of {_mib(limit)}")
    return 0
