"""``leaps report DIR`` (wired into :mod:`leaps.cli` through :func:`add_report_parser`) and
``python -m leaps.report DIR``."""

from __future__ import annotations

import argparse
import sys

from ..errors import LeapsError

EXIT_BAD_INPUT = 2


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` command to an ``add_subparsers()`` object; returns its parser."""
    p = subparsers.add_parser("report", help="write DIR/report.html for an inversion, benchmark or sweep folder",
                              description="Write a self-contained HTML page (DIR/report.html, charts in "
                                          "DIR/report_assets/) of what DIR holds: an inversion (leaps invert / "
                                          "leaps demo output), benchmark JSON, or a sweep.")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="folder to report on")
    p.add_argument("--kind", choices=("inversion", "benchmarks", "sweep", "tune"),
                   help="page kind (default: detected from the files in DIR)")


def cmd_report(args) -> int:
    from .write import write_report

    path = write_report(args.dir, kind=args.kind)
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaps.report", description="Write DIR/report.html.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_report(args)
    except LeapsError as err:
        print(f"leaps: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
