"""``best_preset.json`` -> InversionConfig fields (``leaps.invert(..., **load_preset(path))``)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import TuneError
from .space import coerce, field_types

META_KEY = "meta"


def load_preset(path) -> dict:
    """The InversionConfig fields of a preset file (its ``meta`` left out); TuneError for a bad file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TuneError(f"cannot read preset {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise TuneError(f"preset {path} is not JSON") from None
    if not isinstance(data, dict):
        raise TuneError(f"preset {path} must hold a JSON object of inversion options")
    types = field_types()
    fields = {k: v for k, v in data.items() if k != META_KEY}
    unknown = sorted(set(fields) - set(types))
    if unknown:
        raise TuneError(f"preset {path}: unknown inversion option(s) {', '.join(unknown)}")
    try:
        return {k: v if v is None else coerce(k, v, types[k]) for k, v in fields.items()}
    except (TypeError, ValueError):
        raise TuneError(f"preset {path}: a value has the wrong type") from None
