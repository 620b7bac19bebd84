"""Errors of a sweep: bad input to ``leaps sweep`` / ``leaps summarize`` (one-line messages)."""

from leaps.errors import LeapsError


class SweepError(LeapsError):
    """A sweep cannot start or cannot be summarised: bad options, output folder or manifests."""


class StimulusSetError(SweepError):
    """A stimulus set (folder, CSV/JSONL manifest or toy spec) cannot be read or names unknown classes."""
