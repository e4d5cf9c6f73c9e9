"""Entry point of the ``localdepth`` console script."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from ..errors import LocalDepthError

#: subcommand modules in this package; each defines ``register(subparsers)``
COMMANDS = ("run", "models", "export", "quantize", "bench", "align", "pointcloud", "eval", "video", "serve", "batch")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="localdepth", description="Monocular depth estimation on your own CPU or GPU.")
    parser.add_argument("--version", action="version", version=f"localdepth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"localdepth: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except LocalDepthError as e:
        print(f"localdepth: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("localdepth: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `localdepth models | head`: the reader left, nothing to report
        sys.stderr = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
