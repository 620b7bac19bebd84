"""Errors of ``leaps tune`` and of its preset files."""

from leaps.errors import LeapsError


class TuneError(LeapsError):
    """Bad tune input: an unknown dimension or objective, a malformed --grid / --range, a bad preset file."""


class PresetError(TuneError):
    """A preset file (or dict) that cannot be read: missing, not JSON, unknown options, wrong types."""
