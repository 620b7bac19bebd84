"""Reading a result folder without trusting it: JSON that may be missing, broken or oddly shaped."""

from __future__ import annotations

import json
from pathlib import Path


def read_json(path: Path, problems: list[str], root: Path | None = None):
    """The parsed JSON of ``path``, or None with a line appended to ``problems`` saying why."""
    name = _shown(path, root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{name} is missing")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{name} cannot be read ({exc.__class__.__name__}: {exc})")
        return None
    try:
        return json.loads(text)  # NaN / Infinity are accepted, as Python's json writes them
    except ValueError as exc:
        problems.append(f"{name} is not valid JSON ({exc})")
        return None


def read_jsonl(path: Path, problems: list[str], root: Path | None = None) -> list[dict]:
    """The JSON objects of a JSON-lines file; bad lines are skipped, each with a problem line."""
    name = _shown(path, root)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{name} cannot be read ({exc.__class__.__name__}: {exc})")
        return []
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            problems.append(f"{name} line {number} is not valid JSON ({exc})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{name} line {number} is not a JSON object")
            continue
        records.append(record)
    return records


def as_list(value) -> list:
    return value if isinstance(value, list) else []


def as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def as_float(value) -> float | None:
    """A JSON number as float (NaN kept); anything else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def inside(path: str | Path, root: Path) -> Path | None:
    """``path`` (relative to ``root`` or absolute) resolved, or None when it is empty or not a string."""
    if not isinstance(path, (str, Path)) or not str(path):
        return None
    p = Path(path)
    return p if p.is_absolute() else root / p


def _shown(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.relative_to(root))
        except ValueError:
            pass
    return path.name
