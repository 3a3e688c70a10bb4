"""The ``mskwb`` command line.

Each sub-command lives in its own module under :mod:`mskworkbench.commands` and exposes
``register(subparsers)``; this file only discovers and dispatches them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import sys
from collections.abc import Sequence

from mskworkbench import __version__, commands

logger = logging.getLogger(__name__)


class CommandError(Exception):
    """A failure to report to the user in one line, with a non-zero exit status."""

    def __init__(self, message: str, exit_status: int = 2) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="mskwb",
        description="MSK Workbench: priors from the PACS, bone reconstruction, orthopedic "
        "measurements, templating and reports, headless.",
    )
    parser.add_argument("--version", action="version", version=f"mskwb {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (repeat for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mskwb`` with ``argv`` and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        status = args.func(args)
    except CommandError as error:
        print(f"mskwb {args.command}: {error}", file=sys.stderr)
        return error.exit_status
    except json.JSONDecodeError as error:
        print(f"mskwb {args.command}: not valid JSON: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A file or folder the user named cannot be used (missing, a file where a folder is
        # expected, no permission, a port in use): one line, no traceback.
        where = f": {error.filename}" if error.filename else ""
        print(f"mskwb {args.command}: {error.strerror or error}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mskwb {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
