"""The environment block every benchmark writes into its JSON: what ran the numbers.

    from benchmarks.environment import environment
    payload = {"environment": environment(device), ...}
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def _version(distribution: str) -> str | None:
    # From the package metadata: importing triton here could start it before TRITON_INTERPRET is set.
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """Short commit of ``root``, with "+dirty" when tracked files differ from it; None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")  # new result files do not count
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


def gpu_name(device: torch.device | str | None = None) -> str:
    """The CUDA device's name, or "cpu" (``device`` None: the current CUDA device if there is one)."""
    device = torch.device(device) if device is not None else None
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def environment(device: torch.device | str | None = None) -> dict:
    """torch / triton / CUDA / cuDNN versions, GPU name (or "cpu"), python, platform, git commit, UTC date."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "torch": torch.__version__,
        "triton": _version("triton"),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "gpu": gpu_name(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
