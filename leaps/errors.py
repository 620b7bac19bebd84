"""Errors users can act on.

Every problem caused by bad input raises a subclass of :class:`LeapsError` with a message that
names the problem; the CLI prints that message on one line and exits with status 2.
"""


class LeapsError(Exception):
    """Base class of all errors the library raises on bad input or failed optimisation."""


class VideoError(LeapsError):
    """A video file is missing, corrupt, empty or cannot be written."""


class UnknownModelError(LeapsError):
    """A model name is not in the registry."""


class UnknownClassError(LeapsError):
    """A target class name or index does not exist for the model."""


class WeightsError(LeapsError):
    """A weights file is missing or does not fit the model, or hub weights cannot be fetched."""


class UntrustedWeightsError(WeightsError):
    """A checkpoint references Python objects whose unpickling could run code (no opt-in given)."""


class VerifierError(LeapsError):
    """The verifier cannot be used for R_feat (e.g. it has no BatchNorm layers)."""


class JudgeError(LeapsError):
    """A judge network (``leaps.toy.JUDGES``) was given as the inverted model or the verifier."""


class ShapeError(LeapsError):
    """A tensor has the wrong number of dimensions or sizes."""


class NonFiniteLossError(LeapsError):
    """The loss became NaN or inf during optimisation.

    ``last_finite`` holds the last video (pixel range [0, 1], B x 3 x T x H x W) whose loss was
    finite, ``step`` the step at which the problem appeared, and ``history`` the loss history
    until then, so that nothing computed so far is lost.
    """

    def __init__(self, message, *, step=None, last_finite=None, history=None):
        super().__init__(message)
        self.step = step
        self.last_finite = last_finite
        self.history = history


class OutputError(LeapsError):
    """The output directory cannot be created or written."""
