"""Importing the optional model libraries (pytorchvideo, torchvision) on demand.

pytorchvideo 0.1.5 predates current torchvision: it imports
``torchvision.transforms.functional_tensor``, which torchvision 0.17 renamed to
``_functional_tensor``. :func:`install_functional_tensor_shim` puts an alias in ``sys.modules``
before pytorchvideo is imported, so the old import keeps working.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings

from leaps.errors import LeapsError

_SHIM_NAME = "torchvision.transforms.functional_tensor"


class MissingDependencyError(LeapsError, ImportError):
    """An optional package needed by the chosen model is not installed."""


def install_functional_tensor_shim() -> bool:
    """Alias ``torchvision.transforms.functional_tensor`` if this torchvision lacks it.

    Attributes are looked up in ``torchvision.transforms._functional_tensor`` (the renamed
    module, whose ``affine`` takes a matrix as pytorchvideo expects) and then in
    ``torchvision.transforms.functional``. Returns True if a shim was installed, False if the
    real module exists, a shim is already there, or torchvision is not installed.
    """
    if _SHIM_NAME in sys.modules:
        return False
    try:
        importlib.import_module(_SHIM_NAME)
        return False  # old torchvision: the real module exists
    except ImportError:
        pass
    try:
        functional = importlib.import_module("torchvision.transforms.functional")
    except ImportError:
        return False  # no torchvision: pytorchvideo cannot work anyway, reported elsewhere
    try:
        renamed = importlib.import_module("torchvision.transforms._functional_tensor")
    except ImportError:
        renamed = None
    sources = [m for m in (renamed, functional) if m is not None]

    shim = types.ModuleType(_SHIM_NAME, "leaps shim: alias of torchvision's functional tensor ops")

    def __getattr__(name: str):  # PEP 562 module-level attribute fallback
        for module in sources:
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {_SHIM_NAME!r} has no attribute {name!r}")

    shim.__getattr__ = __getattr__  # type: ignore[attr-defined]
    sys.modules[_SHIM_NAME] = shim
    return True


def _missing(package: str, exc: ImportError) -> MissingDependencyError:
    return MissingDependencyError(
        f"this model needs the {package} package, which cannot be imported ({exc}); "
        f"install it with `pip install {package}`"
    )


def pytorchvideo_hub() -> types.ModuleType:
    """``pytorchvideo.models.hub`` (only the model builders), importable on new torchvision."""
    install_functional_tensor_shim()
    try:
        with warnings.catch_warnings():
            # pytorchvideo decorates helpers with torch.jit.script, deprecated in recent torch.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module("pytorchvideo.models.hub")
    except ImportError as exc:
        raise _missing("pytorchvideo", exc) from exc


def pytorchvideo_module(name: str) -> types.ModuleType:
    """A submodule of ``pytorchvideo.models`` such as ``"csn"``, after the shim."""
    pytorchvideo_hub()
    return importlib.import_module(f"pytorchvideo.models.{name}")


def torchvision_video() -> types.ModuleType:
    """``torchvision.models.video``, or a clear error if torchvision is missing; its MViT's relative
    positions are computed on the model's device (:mod:`leaps.models.mvit_rel_pos`: CUDA graphs)."""
    try:
        video = importlib.import_module("torchvision.models.video")
    except ImportError as exc:
        raise _missing("torchvision", exc) from exc
    from leaps.models import mvit_rel_pos

    mvit_rel_pos.install()
    return video
