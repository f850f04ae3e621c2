"""The `edgetrain` command line.

Each concern contributes its own subcommands through a `register(subparsers)` function in its
`cli` module, so this file only wires them together and turns our errors into clean exits.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgetrain.errors import EdgeTrainError

# Subcommand modules, each with register(subparsers). Missing ones (work in progress) are skipped.
_COMMAND_MODULES = (
    "edgetrain.models.cli",
    "edgetrain.data.cli",
    "edgetrain.train.cli",
    "edgetrain.bench.cli",
)


def build_parser() -> argparse.ArgumentParser:
    from edgetrain import __version__

    parser = argparse.ArgumentParser(
        prog="edgetrain",
        description="Train vision models on the edge device itself: which architecture gives the "
        "best accuracy that still trains in this device's memory, and how fast.",
    )
    parser.add_argument("--version", action="version", version=f"edgetrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgeTrainError as exc:
        print(f"edgetrain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgetrain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
