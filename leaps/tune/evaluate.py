"""One trial: invert the tune's fixed, seeded stimulus set at one point and measure the videos.

The work is the sweep's: :func:`leaps.sweep.plan.build_plan` lists the stimuli, jobs and batches
(with their inversion seeds, so a point gives the same videos on every worker and restart) and
:func:`leaps.sweep.execute.run_batch` inverts a batch and writes each video's record.
"""

from __future__ import annotations

import logging
import math
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from leaps.sweep.execute import VIDEO_DIR, Networks, OutputNames, run_batch
from leaps.sweep.manifest import OK
from leaps.sweep.options import SweepOptions
from leaps.sweep.plan import build_plan

from .errors import TuneError

#: Measures of a trial and whether larger is better; ``loss_<term>`` (final, weighted) are minimised too.
MEASURES = {
    "verifier_prob": True,   # mean verifier probability of the target class (smooth verifier top-1)
    "verifier_top1": True,
    "model_prob": True,
    "model_top1": True,
    "verifier_is": True,     # inception score of the verifier's predictions over the stimulus set
    "wall_s": False,
}
DEFAULT_OBJECTIVE = "verifier_prob"


def maximise(objective: str) -> bool:
    if objective in MEASURES:
        return MEASURES[objective]
    if objective.startswith("loss_"):
        return False
    raise TuneError(f"unknown objective {objective!r}; choose from {', '.join(MEASURES)} or loss_<term> "
                    "(e.g. loss_loss for the total)")


@dataclass
class TrialSetup:
    """What every trial shares: the model, verifier, stimuli, seeds and fixed inversion options."""

    model: str
    stimuli: str
    verifier: str | None
    seeds: list[int]
    batch: int
    config: dict                 # fixed InversionConfig overrides (steps, size, fast ...)
    weights: str | None = None
    verifier_weights: str | None = None
    pretrained: bool = False
    device: str = "auto"
    keep_videos: bool = False
    _networks: Networks | None = field(default=None, repr=False)

    def options(self, point: dict, out: Path) -> SweepOptions:
        return SweepOptions(models=[self.model], out=str(out), stimuli=self.stimuli, verifier=self.verifier,
                            seeds=list(self.seeds), batch=self.batch, config={**self.config, **point},
                            weights={self.model: self.weights} if self.weights else {},
                            verifier_weights=self.verifier_weights, pretrained=self.pretrained, progress=False)


def _device(choice: str):
    from leaps.sweep.distributed import pick_device
    from leaps.sweep.sharding import placement_from_env

    # under torchrun, "auto" puts each worker on its own GPU (cuda:LOCAL_RANK); the study is their only link
    return pick_device(choice, placement_from_env())


def evaluate(setup: TrialSetup, point: dict, out: Path, log: logging.Logger) -> dict:
    """Invert every stimulus of ``setup`` at ``point`` (records under ``out``); the trial's measures,
    each the mean over seeds, with ``per_seed`` (measure -> one value per seed)."""
    plan = build_plan(setup.options(point, out).check())
    if setup._networks is None:
        setup._networks = Networks(plan, _device(setup.device))  # the same networks for every trial
    networks, names = setup._networks, OutputNames(out)
    start = time.perf_counter()
    records = []
    for batch in plan.batches:
        records += run_batch(batch, list(batch.jobs), plan, networks, names, 0, log)
    wall = time.perf_counter() - start
    if not setup.keep_videos:
        shutil.rmtree(Path(out) / VIDEO_DIR, ignore_errors=True)
    failed = [r for r in records if r["status"] != OK]
    if failed:
        raise TuneError(f"{len(failed)} of {len(records)} videos failed: {failed[0].get('reason')}")
    per_seed = {}
    for seed in setup.seeds:
        per_seed.setdefault("seed", []).append(seed)
        for name, value in seed_measures([r for r in records if r["seed"] == seed]).items():
            per_seed.setdefault(name, []).append(value)
    measures = {k: _mean(v) for k, v in per_seed.items() if k != "seed"}
    measures["wall_s"] = round(wall, 3)
    measures["videos"] = len(records)
    return {"measures": measures, "per_seed": per_seed}


def seed_measures(records: list[dict]) -> dict:
    """The measures of one seed's videos (means over videos)."""
    import torch

    from leaps.metrics import inception_score

    out: dict[str, float | None] = {}
    for who in ("model", "verifier"):
        scored = [r for r in records if r.get(f"{who}_pred")]
        if scored:
            out[f"{who}_prob"] = _mean([r[f"{who}_pred"]["probs"][r["target"]] for r in scored])
            out[f"{who}_top1"] = _mean([float(r[f"{who}_pred"]["correct"]) for r in scored])
    verifier_probs = [r["verifier_pred"]["probs"] for r in records if r.get("verifier_pred")]
    if verifier_probs:
        probs = torch.tensor(verifier_probs, dtype=torch.float64)
        out["verifier_is"] = inception_score(probs / probs.sum(dim=1, keepdim=True))[0]
    for term in records[0]["losses"] if records else ():
        out[f"loss_{term}"] = _mean([r["losses"][term] for r in records])
    return out


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.fmean(values) if values else None


def spread(values) -> float | None:
    """Population std over seeds (0 for one seed)."""
    values = [float(v) for v in values if v is not None]
    return statistics.pstdev(values) if values else None
