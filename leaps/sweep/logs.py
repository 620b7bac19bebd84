"""Per-process log files of sweeps and tunes (one logger per file; reopened cleanly on a rerun)."""

from __future__ import annotations

import logging
from pathlib import Path


def file_logger(name: str, path: Path) -> logging.Logger:
    """A logger named ``name`` that writes only to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger(name)
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in list(log.handlers):  # a second run in the same process: close the old file first
        log.removeHandler(h)
        h.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return log
