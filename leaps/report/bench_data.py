"""Benchmark JSON under a folder (``benchmarks/results/**.json``), sorted into the two kinds the page
charts: Table 4 runs (``benchmarks/table4.py``) and kernel runs (``benchmarks/kernel_latency.py``).

Table 4: ``{"meta": {...}, "results": [{"model", "frames", "size", "batch", "rows": {name: {"status",
"step_ms": {"median", "p90"}, "inference_ms", "peak_step_gib", "peak_inference_gib", ...}}}]}``.
Kernels: ``{"device", "torch", "results": [{"batch", "rows": [{"term", "backend", "ms", "graph_ms",
"gbps", "speedup", "check"}]}]}``. Other JSON files are listed, not charted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .files import as_dict, as_float, as_list, read_json
from .names import ASSETS_NAME


@dataclass
class Table4Row:
    name: str
    status: str
    reason: str
    step_ms: float | None
    step_p90: float | None
    inference_ms: float | None
    peak_step_gib: float | None
    peak_inference_gib: float | None
    step_vs_bare: float | None
    videos_per_hour: float | None
    superseded: bool


@dataclass
class Table4Setting:
    label: str              # e.g. "3D R50, 8 x 224^2, B=16"
    device: str
    rows: list[Table4Row]


@dataclass
class KernelRow:
    term: str
    backend: str
    ms: float | None
    graph_ms: float | None
    gbps: float | None
    speedup: float | None
    check: str              # "ok", "failed", "reference" or "–"


@dataclass
class KernelSetting:
    label: str
    device: str
    rows: list[KernelRow]
    skipped: dict


@dataclass
class BenchFile:
    path: Path
    kind: str               # "table4" | "kernels" | "other"
    settings: list = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchData:
    root: Path
    files: list[BenchFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _json_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json") if ASSETS_NAME not in p.relative_to(root).parts and p.is_file())


def _kind(payload) -> str:
    results = as_list(as_dict(payload).get("results"))
    first = as_dict(results[0]) if results else {}
    if isinstance(first.get("rows"), dict) and "model" in first:
        return "table4"
    rows = as_list(first.get("rows"))
    if rows and isinstance(rows[0], dict) and "term" in rows[0] and "backend" in rows[0]:
        return "kernels"
    return "other"


def detect(root: Path) -> bool:
    for path in _json_files(root)[:200]:
        if _kind(read_json(path, [], root)) != "other":
            return True
    return False


def collect(root: Path) -> BenchData:
    data = BenchData(root)
    paths = _json_files(root)
    if not paths:
        data.problems.append(f"no JSON files under {root}")
    for path in paths:
        payload = read_json(path, data.problems, root)
        if payload is None:
            continue
        kind = _kind(payload)
        entry = BenchFile(path, kind)
        if kind == "table4":
            _table4(payload, entry)
        elif kind == "kernels":
            _kernels(payload, entry)
        data.files.append(entry)
    return data


def _median(value) -> float | None:
    return as_float(as_dict(value).get("median"))


def _table4(payload: dict, entry: BenchFile) -> None:
    meta = as_dict(payload.get("meta"))
    entry.environment = {k: meta.get(k) for k in ("device_name", "torch", "iters", "warmup", "verifier")
                         if meta.get(k) is not None}
    superseded = as_dict(payload.get("superseded"))
    if superseded.get("note"):
        entry.notes.append(f"superseded ({', '.join(map(str, as_list(superseded.get('rows'))))}): "
                           f"{superseded['note']}")
    for result in as_list(payload.get("results")):
        result = as_dict(result)
        label = (f"{result.get('title') or result.get('model', '?')}, {result.get('frames', '?')} x "
                 f"{result.get('size', '?')}^2, B={result.get('batch', '?')}")
        rows = []
        for name, row in as_dict(result.get("rows")).items():
            row = as_dict(row)
            step = as_dict(row.get("step_ms"))
            rows.append(Table4Row(
                name=str(row.get("name") or name), status=str(row.get("status") or "?"),
                reason=str(row.get("reason") or row.get("inference_reason") or ""),
                step_ms=as_float(step.get("median")), step_p90=as_float(step.get("p90")),
                inference_ms=_median(row.get("inference_ms")),
                peak_step_gib=as_float(row.get("peak_step_gib")),
                peak_inference_gib=as_float(row.get("peak_inference_gib")),
                step_vs_bare=as_float(row.get("step_vs_bare")), videos_per_hour=as_float(row.get("videos_per_hour")),
                superseded=bool(row.get("superseded"))))
        entry.settings.append(Table4Setting(label, str(result.get("device") or meta.get("device") or "?"), rows))


def _check(check) -> str:
    if check is None:
        return "reference"
    ok = as_dict(check).get("ok")
    return "ok" if ok is True else ("failed" if ok is False else "–")


def _kernels(payload: dict, entry: BenchFile) -> None:
    config = as_dict(payload.get("config"))
    entry.environment = {k: payload.get(k) for k in ("device", "torch", "peak_gbps") if payload.get(k) is not None}
    entry.environment.update({k: config.get(k) for k in ("model", "verifier", "frames", "size", "dtype", "iters")
                              if config.get(k) is not None})
    geometry = f"{config.get('model', '?')}, {config.get('frames', '?')} x {config.get('size', '?')}^2"
    for result in as_list(payload.get("results")):
        result = as_dict(result)
        rows = [KernelRow(term=str(r.get("term")), backend=str(r.get("backend")), ms=as_float(r.get("ms")),
                          graph_ms=as_float(r.get("graph_ms")), gbps=as_float(r.get("gbps")),
                          speedup=as_float(r.get("speedup")), check=_check(r.get("check")))
                for r in map(as_dict, as_list(result.get("rows")))]
        label = f"{geometry}, B={result.get('batch', '?')}"
        device = str(payload.get("device", "?"))
        entry.settings.append(KernelSetting(label, device, rows, as_dict(result.get("skipped"))))
