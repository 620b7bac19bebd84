"""Feature taps: capture the inputs of a model's normalisation layers during a forward pass.

LEAPS reads every network at its normalisation layers: the channel means of their inputs for
priming (eq. 1), the last one's per-frame slices for temporal coherence (eq. 2), and the
verifier's BatchNorm inputs for feature-statistic matching (eq. 3). A tap keeps a *reference*
to each input (no copy) and its hooks are always removed when the ``with`` block ends.

    with FeatureTaps(model) as taps:
        logits = model(x)
        means = taps.channel_means()      # list of B x C, network order

Most networks hold the batch on axis 0 of every norm input. Some transformers do not: their
attention runs on rows that fold several per-sample units into the batch (TimeSformer's
``(B*T) x N x C`` spatial and ``(B*HW) x T x C`` temporal inputs) or on sequence-first tensors
(UniFormerV2's ``N x (B*T) x C``). A model's spec declares a :class:`FeatureLayout` for such
layers; :meth:`FeatureTaps.features` then reads every layer as ``B x M x C``, one row per sample.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from .errors import LeapsError, ShapeError, VerifierError

#: Layer types whose inputs are tapped, with the axis that holds their channels.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
CHANNEL_FIRST_NORMS = BATCH_NORMS + (nn.GroupNorm, nn.InstanceNorm3d)
CHANNEL_LAST_NORMS = (nn.LayerNorm,)
NORM_LAYERS = CHANNEL_FIRST_NORMS + CHANNEL_LAST_NORMS


def channel_dim_of(module: nn.Module) -> int:
    """Axis of a norm layer's input that holds the channels (1 for BatchNorm, -1 for LayerNorm)."""
    return -1 if isinstance(module, CHANNEL_LAST_NORMS) else 1


#: How the tokens of a layer's input hold the frames, for R_coh (see :class:`FeatureLayout`).
TIME_MAJOR, SPACE_MAJOR, FRAME_ROWS = TOKEN_ORDERS = ("time_major", "space_major", "frame_rows")


@dataclass(frozen=True)
class FeatureLayout:
    """Where a tapped layer's input keeps the samples, the channels and, for R_coh, the frames.

    ``batch_axis``: the axis of the batch. Its size may be a multiple k of the batch size B
    when attention folds k units of each sample into the batch (``(B*T) x N x C``): sample-major,
    the rows of sample b are b*k ... b*k + k - 1.
    ``channel_axis``: the axis of the channels.
    ``token_order`` (R_coh only): ``"time_major"``: tokens ``(t, hw)`` after the extra tokens;
    ``"space_major"``: tokens ``(hw, t)``, time fastest (TimeSformer); ``"frame_rows"``: the k
    rows folded into the batch are the frames (``(B*T) x N x C``), each with its own tokens.
    ``extra_tokens`` (``frame_rows`` only): leading tokens of every frame outside the spatial grid
    (a per-frame class token); with the other orders the extras are what the grid leaves over.
    """

    batch_axis: int = 0
    channel_axis: int = -1
    token_order: str = TIME_MAJOR
    extra_tokens: int = 0

    def __post_init__(self):
        if self.token_order not in TOKEN_ORDERS:
            raise LeapsError(f"unknown token order {self.token_order!r}; choose one of {', '.join(TOKEN_ORDERS)}")

    def _batch_channels_last(self, z: torch.Tensor, batch: int) -> torch.Tensor:
        """z with the batch rows first and the channels last: (B*k) x ... x C."""
        if z.dim() < 2:
            raise ShapeError(f"a tapped input needs batch and channel axes, got {tuple(z.shape)}")
        b, c = self.batch_axis % z.dim(), self.channel_axis % z.dim()
        if b == c:
            raise ShapeError("a layout's batch and channel axes must differ")
        z = z.movedim((b, c), (0, z.dim() - 1))
        if z.shape[0] % batch:
            raise ShapeError(f"{z.shape[0]} rows on the batch axis do not fold into a batch of {batch}")
        return z

    def per_sample(self, z: torch.Tensor, batch: int) -> torch.Tensor:
        """z as ``B x M x C``: every value of sample b in row b (a view where the strides allow)."""
        z = self._batch_channels_last(z, batch)
        return z.reshape(batch, -1, z.shape[-1])

    def frame_tokens(self, z: torch.Tensor, batch: int, grid: tuple[int, int] | None
                     ) -> tuple[torch.Tensor, tuple[int, int]]:
        """z as time-major tokens ``B x (T' H'W') x C`` without extra tokens, and its grid (T', H'W').

        ``grid`` is (T', H'W') of the tokens (from the spec's ``token_grid``); ``frame_rows``
        layouts read T' from the fold and H'W' from the token axis instead.
        """
        z = self._batch_channels_last(z, batch)
        if self.token_order == FRAME_ROWS:
            if z.dim() != 3:
                raise ShapeError(f"frame rows need (B*T) x N x C tokens, got {tuple(z.shape)} (batch first)")
            t, hw = z.shape[0] // batch, z.shape[1] - self.extra_tokens
            return z[:, self.extra_tokens:].reshape(batch, t * hw, z.shape[-1]), (t, hw)
        if grid is None:
            raise LeapsError("reading frames from tokens needs their grid (T', H'W'): the spec's token_grid "
                             "or token_grid=(T', H'W')")
        z = z.reshape(batch, -1, z.shape[-1])
        t, hw = grid
        extra = z.shape[1] - t * hw
        if extra < 0:
            raise ShapeError(f"{z.shape[1]} tokens cannot hold a {t} x {hw} grid")
        z = z[:, extra:]
        if self.token_order == SPACE_MAJOR:
            z = z.unflatten(1, (hw, t)).transpose(1, 2).flatten(1, 2)
        return z, grid


def layout_for(name: str, patterns: Iterable[tuple[str, FeatureLayout]]) -> FeatureLayout | None:
    """The layout of the first pattern (``fnmatch``, e.g. ``"blocks.*.norm1"``) matching ``name``."""
    for pattern, layout in patterns:
        if fnmatch.fnmatchcase(name, pattern):
            return layout
    return None


def _batch_size(args) -> int | None:
    x = args[0] if args else None
    if isinstance(x, (list, tuple)) and x:  # multi-pathway models take a list of tensors
        x = x[0]
    return x.shape[0] if isinstance(x, torch.Tensor) and x.dim() > 0 else None


def norm_layers(model: nn.Module, types: tuple[type, ...] = NORM_LAYERS) -> list[tuple[str, nn.Module]]:
    """Named normalisation layers of ``model`` in definition order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, types)]


class FeatureTaps:
    """Context manager recording the input of each selected layer on every forward pass.

    ``layers``: (name, module) pairs to tap; default all normalisation layers of ``model``.
    After a forward, :meth:`activations` returns the inputs of the layers that ran, in
    definition order, and :meth:`features` the same read one row per sample. A layer that runs
    twice in one forward keeps its last input.

    ``layouts``: (name pattern, :class:`FeatureLayout`) pairs for layers whose input does not keep
    the batch on axis 0; ``coherence_layer``: name pattern of the layers R_coh may read (the last
    that ran is read; default: the last tapped layer). Both default to the model's spec
    (``model.leaps_spec``, set by :func:`leaps.models.build_model`).
    """

    def __init__(self, model: nn.Module, layers: Iterable[tuple[str, nn.Module]] | None = None, *,
                 layouts: Iterable[tuple[str, FeatureLayout]] | None = None, coherence_layer: str | None = None):
        self.model = model
        self.layers = list(layers) if layers is not None else norm_layers(model)
        if not self.layers:
            raise LeapsError(f"{type(model).__name__} has no normalisation layers to tap")
        spec = getattr(model, "leaps_spec", None)
        if layouts is None:
            layouts = getattr(spec, "feature_layouts", ())
        if coherence_layer is None:
            coherence_layer = getattr(spec, "coherence_layer", None)
        self.coherence_layer = coherence_layer
        patterns = tuple(layouts)
        self.layouts = [layout_for(name, patterns) for name, _ in self.layers]
        self._inputs: list[torch.Tensor | None] = [None] * len(self.layers)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.batch_size: int | None = None  # of the last forward's input
        self.recording = True  # False while activation checkpointing recomputes in backward

    def _hook(self, index: int):
        def record(_module, args):
            if self.recording:
                self._inputs[index] = args[0]
        return record

    def _record_batch(self, _module, args):
        if self.recording:
            self.batch_size = _batch_size(args)

    def __enter__(self) -> "FeatureTaps":
        self._handles = [m.register_forward_pre_hook(self._hook(i)) for i, (_, m) in enumerate(self.layers)]
        if any(layout is not None for layout in self.layouts):  # folded rows need the batch size
            self._handles.append(self.model.register_forward_pre_hook(self._record_batch))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()

    def clear(self) -> None:
        """Drop the references to the last forward's activations."""
        self._inputs = [None] * len(self.layers)

    def _ran(self) -> list[int]:
        ran = [i for i, z in enumerate(self._inputs) if z is not None]
        if not ran:
            raise LeapsError("no tapped layer ran: call the model inside the `with FeatureTaps(...)` block")
        return ran

    def names(self) -> list[str]:
        """Names of the layers captured by the last forward."""
        return [self.layers[i][0] for i in self._ran()]

    def activations(self) -> list[torch.Tensor]:
        """Inputs of the layers that ran in the last forward, definition order."""
        return [self._inputs[i] for i in self._ran()]

    def channel_dims(self) -> list[int]:
        return [channel_dim_of(self.layers[i][1]) for i in self._ran()]

    def _batch(self) -> int:
        if self.batch_size is None:
            raise LeapsError("the batch size of the last forward is unknown: the model's input is not a tensor")
        return self.batch_size

    def features(self) -> list[torch.Tensor]:
        """The inputs of the layers that ran, one row per sample: the input itself where the batch is
        axis 0, else (a declared layout) ``B x M x C``. Channel axes: :meth:`feature_dims`."""
        ran = self._ran()
        if all(self.layouts[i] is None for i in ran):
            return [self._inputs[i] for i in ran]
        batch = self._batch()
        return [self._inputs[i] if self.layouts[i] is None else self.layouts[i].per_sample(self._inputs[i], batch)
                for i in ran]

    def feature_dims(self) -> list[int]:
        """The channel axis of each of :meth:`features` (-1 for declared layouts)."""
        return [channel_dim_of(self.layers[i][1]) if self.layouts[i] is None else -1 for i in self._ran()]

    def channel_means(self) -> list[torch.Tensor]:
        """mu(z^l): per-sample channel means, one B x C_l tensor per layer that ran."""
        from .losses import channel_means

        return [channel_means(z, d) for z, d in zip(self.features(), self.feature_dims())]

    def last(self) -> tuple[str, nn.Module, torch.Tensor]:
        """The deepest layer that ran (name, module, input): the layer L of eq. (2)."""
        i = self._ran()[-1]
        return self.layers[i][0], self.layers[i][1], self._inputs[i]

    def coherence_input(self) -> tuple[str, nn.Module, torch.Tensor, FeatureLayout | None]:
        """The layer R_coh reads (name, module, input, its declared layout or None): the deepest that
        ran among those matching ``coherence_layer``, or the deepest of all."""
        ran = self._ran()
        if self.coherence_layer is not None:
            ran = [i for i in ran if fnmatch.fnmatchcase(self.layers[i][0], self.coherence_layer)]
            if not ran:
                raise LeapsError(f"no tapped layer matching {self.coherence_layer!r} ran: R_coh has no input")
        i = ran[-1]
        return self.layers[i][0], self.layers[i][1], self._inputs[i], self.layouts[i]

    def coherence_frames(self, grid: tuple[int, int] | None = None
                         ) -> tuple[torch.Tensor, tuple[int, int] | None, nn.Module]:
        """R_coh's input as the losses read it: (z, token grid, module). A declared layout gives
        time-major ``B x T'H'W' x C`` tokens and their grid; else z as tapped, with ``grid``."""
        _, module, z, layout = self.coherence_input()
        if layout is None:
            return z, grid, module
        tokens, grid = layout.frame_tokens(z, self._batch(), grid)
        return tokens, grid, module


class BatchNormTaps(FeatureTaps):
    """Taps on the BatchNorm layers with running statistics: the verifier side of eq. (3)."""

    def __init__(self, model: nn.Module):
        layers = [(n, m) for n, m in norm_layers(model, BATCH_NORMS)
                  if m.track_running_stats and m.running_mean is not None]
        if not layers:
            raise VerifierError(
                f"verifier {type(model).__name__} has no BatchNorm layers with running statistics; "
                "R_feat needs a BatchNorm network (e.g. x3d_s) - pick another verifier or disable R_feat"
            )
        super().__init__(model, layers)

    def running_stats(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """running_mean and running_var of the layers that ran, aligned with :meth:`activations`."""
        mods = [self.layers[i][1] for i in self._ran()]
        return [m.running_mean for m in mods], [m.running_var for m in mods]
