"""Feature taps: capture the inputs of a model's normalisation layers during a forward pass.

LEAPS reads every network at its normalisation layers: the channel means of their inputs for
priming (eq. 1), the last one's per-frame slices for temporal coherence (eq. 2), and the
verifier's BatchNorm inputs for feature-statistic matching (eq. 3). A tap keeps a *reference*
to each input (no copy) and its hooks are always removed when the ``with`` block ends.

    with FeatureTaps(model) as taps:
        logits = model(x)
        means = taps.channel_means()      # list of B x C, network order
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .errors import LeapsError, VerifierError

#: Layer types whose inputs are tapped, with the axis that holds their channels.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
CHANNEL_FIRST_NORMS = BATCH_NORMS + (nn.GroupNorm, nn.InstanceNorm3d)
CHANNEL_LAST_NORMS = (nn.LayerNorm,)
NORM_LAYERS = CHANNEL_FIRST_NORMS + CHANNEL_LAST_NORMS


def channel_dim_of(module: nn.Module) -> int:
    """Axis of a norm layer's input that holds the channels (1 for BatchNorm, -1 for LayerNorm)."""
    return -1 if isinstance(module, CHANNEL_LAST_NORMS) else 1


def norm_layers(model: nn.Module, types: tuple[type, ...] = NORM_LAYERS) -> list[tuple[str, nn.Module]]:
    """Named normalisation layers of ``model`` in definition order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, types)]


class FeatureTaps:
    """Context manager recording the input of each selected layer on every forward pass.

    ``layers``: (name, module) pairs to tap; default all normalisation layers of ``model``.
    After a forward, :meth:`activations` returns the inputs of the layers that ran, in
    definition order. A layer that runs twice in one forward keeps its last input.
    """

    def __init__(self, model: nn.Module, layers: Iterable[tuple[str, nn.Module]] | None = None):
        self.layers = list(layers) if layers is not None else norm_layers(model)
        if not self.layers:
            raise LeapsError(f"{type(model).__name__} has no normalisation layers to tap")
        self._inputs: list[torch.Tensor | None] = [None] * len(self.layers)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.recording = True  # False while activation checkpointing recomputes in backward

    def _hook(self, index: int):
        def record(_module, args):
            if self.recording:
                self._inputs[index] = args[0]
        return record

    def __enter__(self) -> "FeatureTaps":
        self._handles = [m.register_forward_pre_hook(self._hook(i)) for i, (_, m) in enumerate(self.layers)]
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

    def channel_means(self) -> list[torch.Tensor]:
        """mu(z^l): per-sample channel means, one B x C_l tensor per layer that ran."""
        from .losses import channel_means

        return [channel_means(z, d) for z, d in zip(self.activations(), self.channel_dims())]

    def last(self) -> tuple[str, nn.Module, torch.Tensor]:
        """The deepest layer that ran (name, module, input): the layer L of eq. (2)."""
        i = self._ran()[-1]
        return self.layers[i][0], self.layers[i][1], self._inputs[i]


class BatchNormTaps(FeatureTaps):
    """Taps on the BatchNorm layers with running statistics: the verifier side of eq. (3)."""

    def __init__(self, model: nn.Module):
        layers = [(n, m) for n, m in norm_layers(model, BATCH_NORMS) if m.track_running_stats and m.running_mean is not None]
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
