"""Class names of the target dataset and resolution of a user's ``--target`` to a class index.

The 400 Kinetics-400 names ship as ``leaps/data/kinetics400.txt`` (one per line, in the standard
index order used by torchvision and pytorchvideo), so reading them needs neither network nor
torchvision.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from importlib import resources

from leaps.errors import UnknownClassError

_KINETICS400_FILE = "data/kinetics400.txt"


@lru_cache(maxsize=1)
def _kinetics400() -> tuple[str, ...]:
    text = resources.files("leaps").joinpath(_KINETICS400_FILE).read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 400:  # a truncated install would silently shift every index
        raise RuntimeError(f"{_KINETICS400_FILE} holds {len(names)} names instead of 400")
    return names


def kinetics400_classes() -> list[str]:
    """The 400 Kinetics-400 class names, index ``i`` at position ``i`` (a fresh list each call)."""
    return list(_kinetics400())


def _normalise(name: str) -> str:
    # Case-insensitive, and "playing_guitar" == "playing guitar" (shell-friendly spelling).
    return re.sub(r"\s+", " ", name.replace("_", " ")).strip().casefold()


def _suggestions(query: str, names: list[str], limit: int = 3) -> list[str]:
    """Up to ``limit`` names close to ``query``: fuzzy matches first, then substring matches."""
    by_norm = {_normalise(n): n for n in names}
    close = difflib.get_close_matches(query, list(by_norm), n=limit, cutoff=0.6)
    if len(close) < limit:  # "guitar" is far from "playing guitar" for difflib, but contained
        close += [k for k in by_norm if query in k and k not in close][: limit - len(close)]
    return [by_norm[k] for k in close]


def _check_range(index: int, num_classes: int, shown: str) -> int:
    if not 0 <= index < num_classes:
        raise UnknownClassError(
            f"target class {shown} is out of range: the model has {num_classes} classes "
            f"(valid indices 0..{num_classes - 1})"
        )
    return index


def resolve_target(
    target: int | str,
    class_names: list[str] | None = None,
    num_classes: int | None = None,
) -> int:
    """Turn ``target`` (an index, a digit string or a class name) into a class index.

    Names are matched case-insensitively with spaces and underscores equivalent. Without
    ``class_names`` the Kinetics-400 names are used when the model has 400 classes (or
    ``num_classes`` is not given). The index is checked against ``num_classes`` (or the number
    of names). Raises :class:`UnknownClassError` for unknown names (with up to 3 close matches)
    and out-of-range indices.
    """
    if class_names is None and num_classes in (None, 400):
        class_names = kinetics400_classes()
    if num_classes is None:
        num_classes = len(class_names)  # type: ignore[arg-type]  # set just above

    if isinstance(target, bool):  # bool is an int subclass; True as "class 1" is surely a bug
        raise UnknownClassError(f"target class must be an index or a name, not {target!r}")
    if isinstance(target, int):
        return _check_range(target, num_classes, str(target))
    if not isinstance(target, str):
        raise UnknownClassError(
            f"target class must be an index or a name, not {type(target).__name__}"
        )

    text = target.strip()
    if re.fullmatch(r"[+-]?\d+", text):  # "-1" is an index out of range, not a class name
        return _check_range(int(text), num_classes, text)
    if class_names is None:
        raise UnknownClassError(
            f"cannot resolve class name {target!r}: class names are only known for "
            f"Kinetics-400 and this model has {num_classes} classes; give an index instead"
        )

    query = _normalise(text)
    for index, name in enumerate(class_names):
        if _normalise(name) == query:
            return _check_range(index, num_classes, repr(name))
    close = _suggestions(query, list(class_names))
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownClassError(f"unknown target class {target!r}{hint}")
