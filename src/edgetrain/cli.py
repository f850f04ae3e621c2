"""The `edgetrain` command line.

Each concern contributes its own subcommands through a `register(subparsers)` function in its
`cli` module, so this file only wires them together and turns our errors into clean exits.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgetrain.errors import EdgeTrainError, describe_os_error

# Subcommand modules, each with register(subparsers). Missing ones (work in progress) are skipped.
_COMMAND_MODULES = (
    "edgetrain.models.cli",
    "edgetrain.data.cli",
    "edgetrain.train.cli",
    "edgetrain.bench.cli",
    "edgetrain.worker",
    "edgetrain.search.cli",
    "edgetrain.report.cli",
    "edgetrain.deploy.cli",
)
# Commands whose module registers them alone when they are the command asked for, so that their
# start-up imports only what they need (`predict` on an .onnx loads no torch; importing the other
# command modules would, through their packages' __init__).
_STANDALONE = dict.fromkeys(("export", "predict", "evaluate"), "edgetrain.deploy.cli")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only `command`'s when its module can stand alone."""
    from edgetrain import __version__

    parser = argparse.ArgumentParser(
        prog="edgetrain",
        description="Train vision models on the edge device itself: which architecture gives the "
        "best accuracy that still trains in this device's memory, and how fast.",
    )
    parser.add_argument("--version", action="version", version=f"edgetrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in (_STANDALONE[command],) if command in _STANDALONE else _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        # building the parser imports the commands' modules (torch among them): seconds in
        # which a Ctrl-C must end the command as cleanly as one during its work
        args = build_parser(argv[0] if argv else None).parse_args(argv)
        return _run(args)
    except KeyboardInterrupt:
        print("edgetrain: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except EdgeTrainError as exc:
        print(f"edgetrain: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only or missing folder, /proc, permissions
        print(f"edgetrain: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
