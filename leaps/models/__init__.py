"""Video classifiers that LEAPS can invert: a registry of specs plus builders.

Importing this package registers the pytorchvideo, torchvision, toy and transformer zoos without importing either
library; they are imported only when a model is built.
"""

from leaps.models import pytorchvideo_zoo as _pytorchvideo_zoo  # noqa: F401  (registers)
from leaps.models import torchvision_zoo as _torchvision_zoo  # noqa: F401  (registers)
from leaps.models import toy_zoo as _toy_zoo  # noqa: F401  (registers; loads no weights)
from leaps.models import transformer_zoo as _transformer_zoo  # noqa: F401  (registers; imports no model library)
from leaps.models.registry import (
    ModelSpec,
    Preset,
    build_model,
    get_spec,
    list_models,
    register,
)
from leaps.models.weights import load_weights, save_weights

__all__ = [
    "ModelSpec",
    "Preset",
    "build_model",
    "get_spec",
    "list_models",
    "load_weights",
    "register",
    "save_weights",
]
