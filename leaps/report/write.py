"""``write_report(dir)``: detect what a folder holds and write ``dir/report.html`` beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

from .._atomic import atomic_write_text
from ..errors import LeapsError
from . import kinds
from .html import notice, page, section, table
from .names import ASSETS_NAME, REPORT_NAME


class ReportError(LeapsError):
    """The report cannot be written (no such folder, unknown page kind, folder not writable)."""


def write_report(directory: str | Path, kind: str | None = None) -> Path:
    """Write ``directory/report.html`` (charts in ``directory/report_assets/``) and return its path.

    ``kind`` forces a page kind (``inversion``, ``benchmarks``, ``sweep``, ``tune``); by default the first
    kind whose files are found is used. A folder with nothing recognisable still gets a page,
    which says what was looked for. Bad or partial data gives a page that names what is missing.
    """
    root = Path(directory)
    if not root.exists():
        raise ReportError(f"cannot write a report: {root} does not exist")
    if not root.is_dir():
        raise ReportError(f"cannot write a report: {root} is not a directory")
    chosen = kinds.by_name(kind) if kind else kinds.find(root)
    if kind and chosen is None:
        raise ReportError(f"unknown report kind {kind!r}; choose one of {', '.join(k.name for k in kinds.KINDS)}")
    assets = root / ASSETS_NAME
    if assets.is_dir():
        shutil.rmtree(assets)  # charts of an earlier report
    if chosen is None:
        title, subtitle, sections = _nothing_found(root)
    else:
        title, subtitle, sections = chosen.build(root, assets)
    path = root / REPORT_NAME
    try:
        atomic_write_text(path, page(title, sections, subtitle))
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _nothing_found(root: Path) -> tuple[str, str, list[str]]:
    rows = [(k.name, k.describes) for k in kinds.KINDS]
    body = notice(f"nothing to report in {root}: none of the files below was found") + table(("page kind", "looks for"),
                                                                                             rows)
    return f"LEAPS report: {root.resolve().name}", "no results found", [section("Nothing found", body, "problems")]
