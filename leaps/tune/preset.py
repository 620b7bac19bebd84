"""Preset files (``best_preset.json``) -> InversionConfig fields.

A preset is a JSON object of InversionConfig fields (plus an optional ``meta`` object, ignored), the
same as a dict, or the name of a preset shipped with leaps (:mod:`leaps.presets`, e.g. ``toy-demo``;
a file of that name in the working directory wins). Three entry points read it: ``InversionConfig(preset=...)``,
``build_model(..., preset=...)`` (λ₁, λ_L, r only) and ``leaps invert --preset FILE``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import PresetError, TuneError
from .space import coerce, field_types, tuple_fields

META_KEY = "meta"
#: Fields a preset must not hold: a preset naming another preset would be read in a loop.
NOT_IN_PRESET = {"preset"}


def load_preset(source) -> dict:
    """The InversionConfig fields of a preset file or dict (its ``meta`` left out); PresetError if bad."""
    if isinstance(source, dict):
        return preset_fields(source, "preset")
    if not isinstance(source, (str, os.PathLike)):
        raise PresetError(f"a preset is a file path or a dict of inversion options, not {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        from leaps.presets import NAMED_PRESETS, named_preset

        fields = named_preset(os.fspath(source))
        if fields is not None:
            return preset_fields(fields, f"preset {source}")
        if path.suffix == "" and os.sep not in os.fspath(source):  # meant as a name: list the names
            raise PresetError(f"no preset file or named preset {os.fspath(source)!r}; "
                              f"named presets: {', '.join(sorted(NAMED_PRESETS))}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PresetError(f"cannot read preset {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise PresetError(f"preset {path} is not JSON") from None
    return preset_fields(data, f"preset {path}")


def preset_fields(data, where: str) -> dict:
    """Check ``data`` (a preset's JSON object) and return its fields with their values coerced."""
    if not isinstance(data, dict):
        raise PresetError(f"{where} must hold a JSON object of inversion options")
    types = field_types()
    tuples = tuple_fields()
    fields = {k: v for k, v in data.items() if k != META_KEY}
    unknown = sorted(set(fields) - (set(types) - NOT_IN_PRESET))
    if unknown:
        raise PresetError(f"{where}: unknown inversion option(s) {', '.join(map(str, unknown))}")
    try:
        return {k: _coerced(k, v, types[k], k in tuples) for k, v in fields.items()}
    except TuneError as exc:  # a text value that is not of the field's type
        raise PresetError(f"{where}: {exc}") from None
    except (TypeError, ValueError):
        raise PresetError(f"{where}: a value has the wrong type") from None


def _coerced(name: str, value, kind: type, is_tuple: bool):
    # A JSON array fills a tuple field (model_input, extra_models, aug_scale, ...), item by item.
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if not is_tuple:
            raise TypeError(name)
        return tuple(coerce(name, item, kind) for item in value)
    return coerce(name, value, kind)
