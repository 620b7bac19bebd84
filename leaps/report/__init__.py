"""Static HTML reports of LEAPS results: ``leaps report DIR`` / :func:`write_report`.

One self-contained page (inline CSS/JS, relative links to the files on disk, charts as PNG in
``report_assets/``) for an inversion folder, a folder of benchmark JSON, or a sweep. Page kinds
are pluggable (:mod:`leaps.report.kinds`).
"""

from .names import ASSETS_NAME, REPORT_NAME
from .write import ReportError, write_report

__all__ = ["write_report", "ReportError", "REPORT_NAME", "ASSETS_NAME"]
