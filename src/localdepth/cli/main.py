"""Entry point of the ``localdepth`` console script."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from ..errors import LocalDepthError
from ..safety import one_line

#: subcommand modules in this package; each defines ``register(subparsers)``
COMMANDS = ("run", "models", "export", "quantize", "bench", "align", "pointcloud", "eval", "video", "serve", "batch",
            "scene", "evalposes", "photo3d", "finetune")


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


def _subcommand_parser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Distrust the command line once, before any command runs: every numeric option finite and in
    range (:data:`localdepth.safety.NUMERIC_OPTIONS`), ``--intrinsics`` four finite numbers, an
    ``--outdir`` that is not an existing file, and every optional extra the command will use
    installed (:mod:`localdepth.extras`), before any input is read or model loaded. A ``--model``
    left out becomes the command's default, or the model a fine-tuned ``--weights`` folder was
    trained from."""
    from ..extras import check_command
    from ..safety import check_intrinsics_text, check_options, check_outdir

    check_options(vars(args))
    if getattr(args, "default_model", None) and getattr(args, "model", "") is None:
        from .common import model_from_args

        args.model = model_from_args(args)
    if getattr(args, "intrinsics", None):
        check_intrinsics_text(args.intrinsics)
    if getattr(args, "outdir", None) is not None:
        check_outdir(args.outdir)
    check_command(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would blame the top-level parser and print its usage; the subcommand's helps
        sub = _subcommand_parser(parser, args.command)
        if args.command == "models" and getattr(args, "action", None):  # models pull/add/info
            sub = _subcommand_parser(sub, args.action)
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    warnings.showwarning = _show_warning
    try:
        check_args(args)
        with warnings.catch_warnings():  # the filter below lasts for this command only (in-process callers)
            if getattr(args, "quiet", False):
                from ..estimator import NonCommercialLicenceWarning

                # -q: the licence is still recorded in every sidecar and in `localdepth models`
                warnings.filterwarnings("ignore", category=NonCommercialLicenceWarning)
            return int(args.func(args) or 0)
    except LocalDepthError as e:
        print(f"localdepth: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `localdepth models | head`: the reader left, nothing to report
        sys.stderr = open(os.devnull, "w")
        return 0
    except OSError as e:  # the filesystem (a full disk, a read-only folder) where no layer below named it
        from ..errors import storage_error

        print(f"localdepth: error: {one_line(str(storage_error(e, action='use')))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("localdepth: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
