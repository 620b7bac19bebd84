"""The model registry: what each supported video classifier needs for inversion, and how to build it.

A :class:`ModelSpec` only holds plain data and callables; importing this module (or registering
specs) never imports torchvision or pytorchvideo — the builders import them when called.
"""

from __future__ import annotations

import dataclasses
import difflib
import http.client
import inspect
import os
import socket
import urllib.error
from dataclasses import dataclass
from typing import Callable, Union

from torch import nn

from leaps.errors import LeapsError, UnknownModelError, WeightsError
from leaps.models.weights import load_weights

#: Number of classes of every pretrained (hub) checkpoint: all are Kinetics-400 models.
HUB_NUM_CLASSES = 400
#: What a failed download raises (urllib inside torch.hub): no route, DNS, refused, timeout, HTTP status.
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, socket.gaierror, socket.timeout,
                  http.client.HTTPException)


@dataclass(frozen=True)
class Preset:
    """Hyper-parameters from Table S1 of the paper.

    ``lambda_first`` / ``lambda_last`` weight the priming loss of the first / last layer (the
    weights of the layers between are interpolated by the inversion), ``r`` scales the
    regulariser.
    """

    lambda_first: float
    lambda_last: float
    r: float


@dataclass(frozen=True)
class ModelSpec:
    """Everything the inversion needs to know about one registered model."""

    name: str  #: registry key, e.g. ``"slow_r50"``
    title: str  #: human name, e.g. ``"3D R50"``
    source: str  #: ``"pytorchvideo"`` or ``"torchvision"``
    kind: str  #: ``"cnn"`` or ``"transformer"``
    frames: int  #: native number of input frames T
    size: int  #: native spatial size S (input S x S)
    fixed_size: bool  #: True: the inversion interpolates x* to (frames, size, size) first
    mean: tuple[float, float, float]  #: input normalisation for pixels in [0, 1]
    std: tuple[float, float, float]
    preset: Preset
    builder: Callable[[int], nn.Module]  #: builder(num_classes) -> randomly initialised model
    hub: Callable[[int], nn.Module] | None  #: loads the published weights (pretrained=True)
    #: For transformers whose LAST LayerNorm sees B x N x C tokens: maps the model input
    #: (T, H, W) to (T', H'*W') of those tokens; leading extra tokens (class token) are
    #: N - T'*H'*W'. None for CNNs and for models whose last norm input is B x T' x H' x W' x C.
    token_grid: Callable[[tuple[int, int, int]], tuple[int, int]] | None = None
    notes: str = ""
    #: Where ``hub`` downloads its checkpoint from, quoted in the offline error message.
    url: str | None = None
    #: Class names, index = class, for models not trained on Kinetics-400 (``leaps.invert``
    #: resolves target names with them); None: Kinetics-400 names for 400-class models.
    class_names: tuple[str, ...] | None = None
    #: True when ``hub`` loads weights shipped inside the package (no network): the CLI loads
    #: them when no weights are given instead of inverting a randomly initialised network.
    ships_weights: bool = False
    #: (layer-name pattern, :class:`leaps.taps.FeatureLayout`) for tapped layers whose input does not
    #: hold the batch on axis 0 (folded rows, sequence-first tokens) or, for R_coh, whose tokens
    #: are not time-major; first match wins, unmatched layers keep the default reading.
    feature_layouts: tuple = ()
    #: Name pattern of the layers R_coh may read (the deepest that ran is read); None: the last
    #: tapped layer (right unless that layer has lost the time axis).
    coherence_layer: str | None = None
    #: Maps an official checkpoint's state dict to this builder's key names (e.g. SlowFast's MViT
    #: keys to torchvision's); applied to ``weights=PATH`` files before they are loaded.
    state_dict_converter: Callable[[dict], dict] | None = None
    #: True for a judge (``leaps.toy.JUDGES``): it only scores synthesised videos; leaps.invert
    #: refuses it as the inverted model or verifier, so it never enters an objective.
    judge: bool = False

    @property
    def input_geometry(self) -> tuple[int, int, int]:
        """The native input size ``(frames, size, size)``."""
        return (self.frames, self.size, self.size)


_REGISTRY: dict[str, ModelSpec] = {}


def _key(name: str) -> str:
    # "X3D-XS" and "x3d_xs" name the same model.
    return name.strip().lower().replace("-", "_")


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry under ``spec.name`` and return it.

    Registering the same data twice just updates the entry (module reloads create new builder
    objects); a spec with different data under a taken name raises ``ValueError`` unless
    ``replace=True``.
    """
    key = _key(spec.name)
    old = _REGISTRY.get(key)
    if old is not None and _data(old) != _data(spec) and not replace:
        raise ValueError(f"a different model is already registered as {spec.name!r}")
    _REGISTRY[key] = spec
    return spec


def _data(spec: ModelSpec) -> ModelSpec:
    # Callables compare by identity, so leave them out when comparing registrations.
    return dataclasses.replace(spec, builder=None, hub=None, token_grid=None, state_dict_converter=None)


def get_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``; :class:`UnknownModelError` with close matches if none."""
    spec = _REGISTRY.get(_key(name))
    if spec is not None:
        return spec
    close = difflib.get_close_matches(_key(name), list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}; {hint}run `leaps models` to list the supported models"
    )


def list_models() -> list[ModelSpec]:
    """All registered specs in registration order."""
    return list(_REGISTRY.values())


def build_model(
    name_or_spec: str | ModelSpec,
    *,
    weights: Union[str, os.PathLike, None] = None,
    pretrained: bool = False,
    num_classes: int = HUB_NUM_CLASSES,
    trust_weights: bool = False,
) -> nn.Module:
    """Build a registered model, frozen (``requires_grad=False``) and in ``eval()`` mode.

    ``weights`` is a local checkpoint file (see :func:`leaps.models.weights.load_weights`;
    ``trust_weights=True`` lets it unpickle more than tensors, which can run code from the file);
    ``pretrained=True`` loads the published weights instead (downloaded; the toy models' ship
    with leaps). Without either the model is randomly initialised (useful for tests only).
    """
    spec = name_or_spec if isinstance(name_or_spec, ModelSpec) else get_spec(name_or_spec)
    if weights is not None and pretrained:
        raise WeightsError("give either a weights file or pretrained=True (--pretrained), not both")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise LeapsError(f"num_classes must be a positive integer, not {num_classes!r}")
    if weights is not None and os.path.isdir(weights):
        raise WeightsError(f"weights path {os.fspath(weights)} is a directory, not a checkpoint file")
    if weights is not None and not os.path.isfile(weights):
        # Checked before building: some builders take seconds.
        raise WeightsError(f"weights file not found: {os.fspath(weights)}")

    if pretrained:
        model = _from_hub(spec, num_classes, trust_weights)
    else:
        model = spec.builder(num_classes)
        if weights is not None:
            # models built in the official layout of another code base rename its keys on load
            convert = {"convert": spec.state_dict_converter} if spec.state_dict_converter else {}
            load_weights(model, weights, trust_weights=trust_weights, **convert)
    model.eval()
    model.requires_grad_(False)
    # What leaps.invert needs to know about the model travels with it.
    model.leaps_spec = spec
    # Models with their own class list (the toy world) ignore the Kinetics default of 400.
    model.leaps_num_classes = len(spec.class_names) if spec.class_names and pretrained else num_classes
    return model


def _from_hub(spec: ModelSpec, num_classes: int, trust_weights: bool = False) -> nn.Module:
    """Run ``spec.hub``, turning any download failure into one actionable WeightsError.

    Hubs that read their download with :func:`load_weights` take ``trust_weights``; the others
    (torchvision: hash-checked files; the toy models: shipped tensors) have nothing to trust.
    """
    if spec.hub is None:
        raise WeightsError(
            f"no pretrained weights are published for {spec.name}; "
            f"pass a checkpoint with weights=PATH / --weights PATH"
            + (f" ({spec.notes})" if spec.notes else "")
        )
    published = len(spec.class_names) if spec.class_names else HUB_NUM_CLASSES
    if num_classes not in (published, HUB_NUM_CLASSES):
        raise WeightsError(
            f"the pretrained weights of {spec.name} have {published} classes, "
            f"not num_classes={num_classes}; drop --num-classes or pass your own --weights PATH"
        )
    try:
        if trust_weights and "trust_weights" in inspect.signature(spec.hub).parameters:
            return spec.hub(num_classes, trust_weights=True)
        return spec.hub(num_classes)
    except LeapsError:
        raise  # already actionable (e.g. a missing optional dependency)
    except NETWORK_ERRORS as exc:
        where = f" from {spec.url}" if spec.url else ""
        raise WeightsError(
            f"cannot download pretrained weights for {spec.name}{where} (no network?): "
            f"{type(exc).__name__}: {exc}. Download the checkpoint elsewhere and pass "
            f"weights=PATH / --weights PATH"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a corrupt cached file, a full disk, a bug: say what it was
        raise WeightsError(
            f"cannot load the pretrained weights of {spec.name}: {type(exc).__name__}: {exc}"
        ) from exc
