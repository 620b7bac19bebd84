"""Errors of ``leaps tune``."""

from leaps.errors import LeapsError


class TuneError(LeapsError):
    """Bad tune input: an unknown dimension or objective, a malformed --grid / --range, a bad preset file."""
