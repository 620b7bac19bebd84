"""What a sweep does (:class:`SweepOptions`) and the :class:`InversionConfig` of each model and method."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from leaps.config import InversionConfig
from leaps.errors import LeapsError

from .errors import SweepError
from .stimuli import DEFAULT_STIMULI

METHODS = ("leaps", "deepdream", "am")
TOY_VERIFIER = "toy_x3d"
#: Fields that never change a video: left out of the job id, so they can differ on a restart.
#: ``preset`` too: the values it filled are in the id, the file's name is not what shapes the video.
NOT_IN_JOB_ID = {"progress", "seed", "snapshot_every", "sync_every", "preset"}


@dataclass
class SweepOptions:
    """Every input of :func:`leaps.sweep.run` (the ``leaps sweep`` flags, one to one)."""

    models: list[str]
    out: str
    stimuli: str = DEFAULT_STIMULI            # toy:SPLIT:N, a Kinetics-layout folder, or a .csv/.jsonl manifest
    verifier: str | None = "auto"             # "auto": toy_x3d for toy models, none for others; None: no R_feat
    methods: list[str] = field(default_factory=lambda: ["leaps"])
    runs_per_class: int = 1                   # baselines: videos per class and seed
    classes: list[str] | None = None          # baselines: these classes (default: every class of the model)
    seeds: list[int] = field(default_factory=lambda: [0])
    batch: int = 8                            # videos optimised together
    config: dict = field(default_factory=dict)  # InversionConfig overrides (steps, lr, size, ...)
    weights: dict[str, str] = field(default_factory=dict)  # model name -> checkpoint file
    pretrained: bool = False                  # download published weights (toy models always use theirs)
    verifier_weights: str | None = None
    device: str = "auto"
    shard: tuple[int, int] | None = None      # (i, n): this process does shard i of n
    retry_failed: bool = False
    dry_run: bool = False
    progress: bool = True
    fps: float = 8

    def check(self) -> "SweepOptions":
        if not self.models:
            raise SweepError("give at least one --model")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise SweepError(f"unknown method(s) {', '.join(map(repr, bad))}; choose from {', '.join(METHODS)}")
        if self.batch < 1:
            raise SweepError(f"--batch must be at least 1, got {self.batch}")
        if self.runs_per_class < 1:
            raise SweepError(f"--runs-per-class must be at least 1, got {self.runs_per_class}")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise SweepError(f"--seeds must be non-negative integers, got {self.seeds}")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.models)) != len(self.models):
            raise SweepError("--seeds and --model must not repeat a value")
        if self.shard is not None:
            i, n = self.shard
            if n < 1 or not 0 <= i < n:
                raise SweepError(f"--shard must be i/n with 0 <= i < n, got {i}/{n}")
        unknown = set(self.config) - {f.name for f in dataclasses.fields(InversionConfig)}
        if unknown:
            raise SweepError(f"unknown inversion option(s): {', '.join(sorted(unknown))}")
        if "objective" in self.config:
            raise SweepError("choose the objective with --method, not as an inversion option")
        return self


def verifier_for(model: str, choice: str | None) -> str | None:
    """The verifier of ``model``: ``choice``, or for "auto" toy_x3d (toy models) / none (others)."""
    if choice in (None, "", "none"):
        return None
    if choice == "auto":
        return TOY_VERIFIER if model.startswith("toy_") else None
    return choice


def inversion_config(spec, method: str, overrides: dict) -> InversionConfig:
    """The config of ``method`` on the model of ``spec``: x* at the model's native T x S^2 unless
    frames / size are given; no per-inversion progress bar (the sweep has its own)."""
    base = InversionConfig()
    # the model's geometry is a default, not an explicit choice: a preset in overrides may replace it
    base.frames, base.size = spec.frames, spec.size
    try:
        return base.replace(**{**overrides, "objective": method, "progress": False}).validate()
    except LeapsError as exc:
        raise SweepError(f"{spec.name}, {method}: {exc}") from None


def config_fingerprint(cfg: InversionConfig) -> dict:
    """The fields of ``cfg`` that shape a video (JSON-ready)."""
    return {k: v for k, v in sorted(dataclasses.asdict(cfg).items()) if k not in NOT_IN_JOB_ID}


def config_tag(cfg: InversionConfig) -> str:
    """Short hash of :func:`config_fingerprint`: tells two configs of one method apart in tables."""
    return digest(config_fingerprint(cfg))[:8]


def digest(obj) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
