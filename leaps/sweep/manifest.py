"""The durable record of a sweep: one JSONL manifest per worker, ``OUT/manifests/rank-R.jsonl``.

A worker appends the records of a finished batch (one JSON line per video) with a single write,
then flush + fsync. Each execution of a batch is an *attempt* (a random id); its lines carry the
attempt's size, and a reader keeps only complete attempts, so a kill in the middle of a write
loses that batch (it is run again) but never leaves half of it. Every worker only appends to its
own file; anyone may read all of them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import SweepError

MANIFEST_DIR = "manifests"
OK, FAILED = "ok", "failed"


def manifest_path(out: Path, worker: int) -> Path:
    return Path(out) / MANIFEST_DIR / f"rank-{worker}.jsonl"


class ManifestWriter:
    """Appends whole attempts to one worker's manifest (fsynced)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_line(self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        self._file.write("".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _drop_partial_line(path: Path) -> None:
    """Cut a line left unfinished by a killed writer, so the next append starts on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)
        f.flush()
        os.fsync(f.fileno())


def read_records(out: Path) -> list[dict]:
    """Every record of every complete attempt in ``out``'s manifests (file order)."""
    folder = Path(out) / MANIFEST_DIR
    if not folder.is_dir():
        return []
    attempts: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the unfinished last line of a killed writer
                if isinstance(record, dict) and "job_id" in record and "attempt" in record:
                    attempts.setdefault(record["attempt"], []).append(record)
    return [r for group in attempts.values() if len(group) == group[0].get("attempt_size") for r in group]


def latest_records(records: list[dict]) -> dict[str, dict]:
    """One record per job: a success over a failure, else the most recent."""
    best: dict[str, dict] = {}
    for r in records:
        old = best.get(r["job_id"])
        if old is None or _rank(r) >= _rank(old):
            best[r["job_id"]] = r
    return best


def _rank(record: dict) -> tuple:
    return (record.get("status") == OK, record.get("finished", 0.0))


def finished_jobs(out: Path, retry_failed: bool) -> set[str]:
    """Ids of the jobs a restart skips: the successful ones, and the failed ones unless retried."""
    return {jid for jid, r in latest_records(read_records(out)).items()
            if r.get("status") == OK or not retry_failed}


def require_manifests(out: Path) -> list[dict]:
    out = Path(out)
    if not out.is_dir():
        raise SweepError(f"{out} is not a folder")
    records = read_records(out)
    if not records:
        raise SweepError(f"{out} holds no sweep records (expected {MANIFEST_DIR}/rank-*.jsonl)")
    return records
