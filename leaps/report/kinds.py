"""Page kinds: each has a detector (does this folder hold its data?) and a builder of its sections.

A new kind (e.g. the tuner's output) registers here; :func:`leaps.report.write_report` picks the
first kind whose detector accepts the folder, in registration order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# (root, assets folder) -> (title, subtitle, HTML sections)
Builder = Callable[[Path, Path], tuple[str, str, list[str]]]


@dataclass(frozen=True)
class Kind:
    name: str
    detect: Callable[[Path], bool]
    build: Builder
    describes: str  # what the detector looks for, for the "nothing found" page


KINDS: list[Kind] = []


def register(kind: Kind) -> Kind:
    KINDS[:] = [k for k in KINDS if k.name != kind.name] + [kind]
    return kind


def find(root: Path) -> Kind | None:
    return next((kind for kind in KINDS if kind.detect(root)), None)


def by_name(name: str) -> Kind | None:
    return next((kind for kind in KINDS if kind.name == name), None)


def _register_builtin() -> None:
    from . import bench_data, bench_page, inversion_data, inversion_page, sweep_data, sweep_page, tune_data, tune_page

    # A tune folder first: its trials/ hold sweep-like records and JSON the other detectors might accept,
    # while study.log beside trials.csv / best_preset.json is written by nothing else.
    register(Kind("tune", tune_data.detect, tune_page.build,
                  "study.log with trials.csv or best_preset.json (leaps tune --out DIR)"))
    register(Kind("sweep", sweep_data.detect, sweep_page.build, "manifests/rank-*.jsonl (a sweep)"))
    register(Kind("inversion", inversion_data.detect, inversion_page.build,
                  "leaps_history.json or leaps.gif/.mp4/.png (leaps invert / leaps demo)"))
    register(Kind("benchmarks", bench_data.detect, bench_page.build,
                  "benchmark JSON with Table 4 or kernel rows (benchmarks/results/**.json)"))


_register_builtin()
