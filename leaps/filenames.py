"""File names from user data: what a sweep, tune or report derives from class folders, manifest
rows, stimulus files or model names becomes a path only through :func:`safe_name`.

A sanitised name has no separators, no ``..``, no control characters, no leading dot or dash, is
not a reserved device name on Windows (``con``, ``nul``, ``com1`` ...), and is at most
``max_len`` bytes of UTF-8. :func:`unique_names` disambiguates names that collide after
sanitising or that differ only by case (case-insensitive file systems), and :func:`inside`
checks that a path stays under an output folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path
from typing import Iterable

from .errors import LeapsError

MAX_NAME_BYTES = 100  # well below every file system's 255-byte limit, leaving room for suffixes

_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)  # anything but letters, digits, _ . - and space
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe_name(name: object, max_len: int = MAX_NAME_BYTES) -> str:
    """A single path component made from ``name`` (any object; its ``str``).

    Unsafe characters become ``_``; names that were changed keep a short hash of the original, so
    two different inputs cannot silently map to one file.
    """
    text = str(name)
    clean = unicodedata.normalize("NFC", text)
    clean = "".join(" " if unicodedata.category(c).startswith("C") else c for c in clean)  # control chars
    clean = _UNSAFE.sub("_", clean).strip(" .")
    clean = re.sub(r"_+", "_", clean).lstrip("-")
    if not clean or set(clean) <= {"_", "."}:
        clean = "unnamed"
    if clean.split(".")[0].lower() in _RESERVED:
        clean = "_" + clean
    changed = clean != text
    suffix = f"-{_digest(text)}" if changed else ""
    budget = max_len - len(suffix.encode())
    if len(clean.encode()) > budget:
        clean = clean.encode()[:budget].decode("utf-8", "ignore").rstrip(" .")
        suffix = f"-{_digest(text)}"
        budget = max_len - len(suffix.encode())
        clean = clean.encode()[:budget].decode("utf-8", "ignore").rstrip(" .")
    return clean + suffix


def unique_names(names: Iterable[object], max_len: int = MAX_NAME_BYTES) -> list[str]:
    """:func:`safe_name` of each name, made unique case-insensitively (order kept, deterministic)."""
    out, seen = [], set()
    for name in names:
        candidate = safe_name(name, max_len)
        if candidate.lower() in seen:
            tag = f"-{_digest(str(name))}"
            base = candidate.encode()[: max_len - len(tag) - 3].decode("utf-8", "ignore")
            candidate, n = base + tag, 1
            while candidate.lower() in seen:
                n += 1
                candidate = f"{base}{tag}-{n}"
        seen.add(candidate.lower())
        out.append(candidate)
    return out


def inside(root: str | os.PathLike, *parts: str) -> Path:
    """``root / parts`` resolved, refusing any result outside ``root`` (symlinks included)."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise LeapsError(f"refusing to write {path}: it is outside the output folder {base}")
    return path
