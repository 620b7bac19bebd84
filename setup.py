"""Build script for LEAPS (package metadata lives here; pyproject.toml only names the backend).

By default LEAPS installs as pure Python: nothing is compiled and torch is not needed to build.

The optional C++/CUDA extension ``leaps._C`` (sources in csrc/, one .cpp and one cuda/.cu per
primitive of kernels/; operators registered as ``torch.ops.leaps.*``, used by ``backend="cuda"``)
is built only when asked for with the environment variable
``LEAPS_BUILD_EXT``, and it needs torch importable at build time, so pass
``--no-build-isolation``::

    LEAPS_BUILD_EXT=1 pip install --no-build-isolation -e .

LEAPS_BUILD_EXT values (case-insensitive; combine with ',' or '+', e.g. ``strict,cuda``):

    unset, 0, off  pure Python, no extension.
    1, on, cpu     build the extension; CUDA kernels are added when a CUDA toolkit (CUDA_HOME)
                   and a CUDA build of torch are found and a GPU is visible (or FORCE_CUDA=1).
                   Any problem (torch not importable, compiler error, ...) prints one warning
                   and the install goes on as pure Python. If only the CUDA part fails, the
                   CPU-only extension is built instead.
    cuda           like 1 but the CUDA kernels are required (no GPU needed at build time; set
                   TORCH_CUDA_ARCH_LIST, e.g. "8.0;9.0", otherwise torch's own arch list is
                   used when no GPU is visible). Failure still only warns.
    strict         like 1 (or cuda, if given too) but any failure aborts the install with an
                   error. CI uses this to make sure the extension really builds.

MAX_JOBS limits the number of parallel compile jobs (ninja is used when installed). CUDA
builds need the toolkit headers under CUDA_HOME (torch guesses it from the location of nvcc;
set CUDA_HOME=/usr/local/cuda when nvcc on PATH is a wrapper script).
"""

import glob
import os
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = "0.1.0"

_ENV = "LEAPS_BUILD_EXT"
_OFF = {"", "0", "off", "no", "false", "none"}
_ON = {"1", "on", "yes", "true", "cpu"}


def _parse_mode(value):
    tokens = {t.strip().lower() for t in value.replace("+", ",").split(",")}
    tokens.discard("")
    if not tokens or tokens <= _OFF:
        return None
    unknown = tokens - _ON - _OFF - {"cuda", "strict"}
    message = (
        f"{_ENV}={value!r}: unknown value(s) {sorted(unknown)}; use 0, 1, cuda or strict "
        "(strict may be combined with cuda, e.g. 'strict,cuda')."
    )
    if unknown and "strict" in tokens:
        _fail(message)
    if unknown:
        _warn(message)
        return None
    return {"strict": "strict" in tokens, "cuda": "cuda" in tokens}


def _warn(message):
    bar = "=" * 78
    sys.stderr.write(
        f"\n{bar}\nWARNING (leaps): {message}\n"
        f"Installing LEAPS as pure Python; leaps._C will be unavailable "
        f"(set {_ENV}=strict to turn this into an error).\n{bar}\n\n"
    )
    sys.stderr.flush()


def _fail(message):
    raise SystemExit(f"error (leaps, {_ENV}=strict): {message}")


def _readme():
    path = os.path.join(HERE, "README.md")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    return "LEAPS: model inversion of video classifiers in PyTorch."


def _sources(pattern):
    # Relative paths: setuptools wants them relative to setup.py.
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


# csrc/ mirrors kernels/: per primitive, csrc/<name>.cpp (CPU and Meta kernels) and
# csrc/cuda/<name>.cu (CUDA kernels); csrc/ops.cpp defines the schemas, csrc/module.cpp is the
# Python module. The globs below pick up every file of that layout.
CPP_SOURCES = "csrc/*.cpp"
CUDA_SOURCES = "csrc/cuda/*.cu"


def _default_cuda_arch_list(torch):
    """TORCH_CUDA_ARCH_LIST for builds without a visible GPU: the arches torch was built for."""
    arches = []
    for arch in torch.cuda.get_arch_list():  # e.g. ['sm_75', 'sm_80', 'sm_90', 'sm_100']
        if arch.startswith("sm_"):
            digits = "".join(ch for ch in arch[3:] if ch.isdigit())
            if len(digits) >= 2:
                arches.append(f"{digits[:-1]}.{digits[-1]}")
    return ";".join(arches)


def _extension_setup(mode):
    """Returns (ext_modules, cmdclass) for the requested mode, or ([], {}) after a warning."""
    strict = mode["strict"]
    try:
        import torch
        from torch.utils import cpp_extension
    except Exception as exc:  # ImportError, or a broken torch install
        msg = (
            f"{_ENV} is set but torch cannot be imported in the build environment ({exc!r}). "
            "Install torch first and build with: "
            f"{_ENV}=1 pip install --no-build-isolation -e ."
        )
        if strict:
            _fail(msg)
        _warn(msg)
        return [], {}

    cpp_sources = _sources(CPP_SOURCES)
    cuda_sources = _sources(CUDA_SOURCES)
    cuda_home = cpp_extension.CUDA_HOME
    cuda_ready = (
        cuda_home is not None
        and torch.version.cuda is not None
        and os.path.exists(os.path.join(cuda_home, "include", "cuda_runtime.h"))
    )
    force_cuda = os.environ.get("FORCE_CUDA", "0") == "1"
    if mode["cuda"]:
        if not cuda_ready:
            msg = (
                f"{_ENV} asks for the CUDA kernels but no CUDA toolkit was found "
                f"(CUDA_HOME={cuda_home!r} has no include/cuda_runtime.h; set CUDA_HOME, e.g. "
                "CUDA_HOME=/usr/local/cuda) or torch is not a CUDA build "
                f"(torch.version.cuda={torch.version.cuda!r})."
            )
            if strict:
                _fail(msg)
            _warn(msg)
            return [], {}
        with_cuda = True
    else:
        with_cuda = bool(cuda_sources) and cuda_ready and (torch.cuda.is_available() or force_cuda)
    with_cuda = with_cuda and bool(cuda_sources)
    if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        arch_list = _default_cuda_arch_list(torch)
        if arch_list:
            os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list

    include_dirs = [os.path.join(HERE, "csrc")]
    # No -std flag: torch.utils.cpp_extension adds the standard this torch needs (C++20 for
    # recent releases, C++17 for older ones).
    cxx_flags = ["-O3"] if os.name != "nt" else ["/O2"]
    if with_cuda:
        ext = cpp_extension.CUDAExtension(
            "leaps._C",
            sources=cpp_sources + cuda_sources,
            include_dirs=include_dirs,
            define_macros=[("LEAPS_WITH_CUDA", None)],
            extra_compile_args={"cxx": list(cxx_flags), "nvcc": ["-O3"]},
        )
    else:
        ext = None

    def cpu_extension():
        return cpp_extension.CppExtension(
            "leaps._C",
            sources=cpp_sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": list(cxx_flags)},
        )

    class LeapsBuildExt(cpp_extension.BuildExtension):
        """BuildExtension that degrades to pure Python on failure (unless strict)."""

        def run(self):
            compiler = self.compiler  # build_ext.run replaces the name by a compiler object
            try:
                super().run()
                return
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # compilers and linkers fail in many ways
                if strict:
                    raise
                error = exc
            if with_cuda and not mode["cuda"]:
                sys.stderr.write(
                    f"\nWARNING (leaps): building leaps._C with CUDA failed ({error!r}); "
                    "retrying without the CUDA kernels.\n\n"
                )
                old, new = self.extensions[0], cpu_extension()
                for attr, value in vars(old).items():  # setuptools' per-extension state
                    if attr.startswith("_") and not hasattr(new, attr):
                        setattr(new, attr, value)
                self.extensions = [new]
                self.distribution.ext_modules = self.extensions
                self.compiler = compiler
                try:
                    super().run()
                    return
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:
                    error = exc
            _warn(f"building the C++ extension leaps._C failed: {error!r}")

    if ext is None:
        ext = cpu_extension()
    return [ext], {"build_ext": LeapsBuildExt}


def _extensions():
    mode = _parse_mode(os.environ.get(_ENV, ""))
    if mode is None:
        return [], {}
    return _extension_setup(mode)


ext_modules, cmdclass = _extensions()

setup(
    name="leaps",
    version=VERSION,
    description="LEAPS: model inversion of video classifiers (PyTorch)",
    long_description=_readme(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # kernels/ (Triton) installs as leaps.kernels: a top-level "kernels" package would collide.
    packages=find_packages(include=["leaps", "leaps.*"]) + ["leaps.kernels"],
    package_dir={"leaps.kernels": "kernels"},
    package_data={"leaps": ["data/*.txt", "data/*.pt"]},
    include_package_data=False,
    install_requires=["torch>=2.4", "numpy", "av>=12", "tqdm"],
    extras_require={
        "zoo": ["torchvision", "pytorchvideo==0.1.5", "timm"],
        "test": ["pytest", "pytest-benchmark", "ruff", "matplotlib", "optuna"],
        "triton": ["triton"],
        "report": ["matplotlib"],
        "tune": ["optuna"],
    },
    entry_points={"console_scripts": ["leaps = leaps.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: C++",
        "Operating System :: OS Independent",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
