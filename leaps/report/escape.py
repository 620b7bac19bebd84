"""Everything user data passes through on its way into the page.

Class names, paths, config values and model names come from files a user (or a downloaded
checkpoint) chose, so none of them is trusted: text and attribute values are HTML-escaped
(quotes included, every attribute is double-quoted), links are relative, percent-encoded paths
(so no ``javascript:`` or other scheme can sneak in), numbers are formatted without raising.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from urllib.parse import quote


def text(value) -> str:
    """``value`` as HTML text (``<``, ``>``, ``&`` and both quotes escaped)."""
    return html.escape("" if value is None else str(value), quote=True)


def attr(value) -> str:
    """``value`` for a double-quoted attribute: the same escaping as :func:`text`."""
    return text(value)


def href(path: str | Path, base: str | Path) -> str:
    """A link from the page in ``base`` to ``path``: relative, '/'-separated, percent-encoded.

    Each segment is quoted with nothing kept safe, so ``:``, ``?``, ``#`` or ``%`` in a file name
    cannot turn the link into a scheme, a query or a fragment; a leading ``./`` makes it
    unambiguously relative. Returned already attribute-escaped.
    """
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
    parts = [quote(part, safe="") for part in Path(rel).parts]
    return attr("./" + "/".join(parts))


def number(value, digits: int = 3, unit: str = "") -> str:
    """A number for a table cell: ``digits`` significant digits; None as '–', NaN/inf spelled out."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return text(f"{value:.{digits}g}{unit}")


def percent(fraction) -> str:
    """A fraction in [0, 1] as '87.5%'; None / NaN as for :func:`number`."""
    if isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and math.isfinite(fraction):
        return text(f"{100 * fraction:.1f}%")
    return number(fraction)
