"""Import another benchmark script of this folder as a module, once.

benchmarks/ is a folder of scripts run as ``python benchmarks/<name>.py``, not a package, and the
repository root has a ``kernels`` package of its own, so ``import kernels`` would be ambiguous.
A script is loaded by path as ``benchmarks_<name>`` and registered in ``sys.modules`` (dataclasses
look their module up there). The benchmark scripts and the tests share this one loader.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py as the module ``benchmarks_<name>`` (imported on the first call only)."""
    key = f"benchmarks_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[key]  # a failed import must not leave a half-made module behind
            raise
    return sys.modules[key]
