"""Running one batch: load its stimuli, invert, write each video and its record.

A stimulus that cannot be read fails its own job (the batch runs without it); a NaN/inf loss
fails the batch's jobs; either is recorded with its reason and the sweep goes on. Output paths
are built from user data (model, class, stimulus names) only through :mod:`leaps.filenames`.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import torch

from leaps._atomic import atomic_write_text
from leaps.errors import LeapsError, NonFiniteLossError
from leaps.filenames import inside, safe_name, unique_names

from .jobs import Batch, Job
from .plan import SweepPlan, class_names_of
from .records import base_record, failed_record, ok_record

RECORD_DIR = "records"
VIDEO_DIR = "videos"


class Networks:
    """The models and verifiers of a sweep on one device, built on first use and kept."""

    def __init__(self, plan: SweepPlan, device: torch.device):
        self.plan, self.device, self._built = plan, device, {}

    def get(self, name: str | None):
        if name is None:
            return None
        if name not in self._built:
            self._built[name] = self.plan.network(name).build(self.device)
        return self._built[name]


class OutputNames:
    """Folder and file names of the videos, safe and unique (case-insensitively) per model."""

    def __init__(self, out: Path):
        self.out = Path(out).resolve()
        self._class_dirs: dict[str, list[str]] = {}

    def class_dir(self, model: str, label: int) -> str:
        if model not in self._class_dirs:
            from leaps.models import get_spec

            self._class_dirs[model] = unique_names(class_names_of(get_spec(model)))
        return self._class_dirs[model][label]

    def video(self, job: Job) -> Path:
        stem = safe_name(Path(job.stimulus_name).stem, max_len=60)
        return inside(self.out, VIDEO_DIR, safe_name(job.model), safe_name(f"{job.method}-{job.config_tag}"),
                      self.class_dir(job.model, job.target), f"{stem}-s{job.seed}-{job.job_id[:12]}.mp4")

    def record(self, job: Job) -> Path:
        return inside(self.out, RECORD_DIR, f"{job.job_id}.json")


def run_batch(batch: Batch, jobs: list[Job], plan: SweepPlan, networks: Networks, names: OutputNames,
              worker: int, log) -> list[dict]:
    """Run ``jobs`` (the batch's pending jobs, in batch order) and return their records."""
    first = batch.first
    cfg = plan.configs[(first.model, first.method)].replace(seed=batch.inversion_seed)
    attempt = secrets.token_hex(8)
    bases = {j.job_id: base_record(j, attempt, len(jobs), worker, batch.inversion_seed) for j in jobs}
    model, verifier = networks.get(first.model), networks.get(first.verifier)  # built once, not timed
    records, good, stimuli = [], [], []
    start = time.perf_counter()
    primed = first.method == "leaps" and cfg.use_priming
    for job in jobs:
        if not primed:
            good.append(job)
            continue
        try:
            stimuli.append(job.stimulus.load(cfg.frames, cfg.size))
            good.append(job)
        except LeapsError as exc:
            log.warning("job %s: stimulus %s failed: %s", job.job_id, job.stimulus_name, exc)
            records.append(failed_record(bases[job.job_id], f"stimulus: {exc}"))
    if not good:
        return records
    try:
        from leaps.inversion import invert

        result = invert(model, [j.target for j in good], stimuli or None, verifier, cfg)
    except (LeapsError, torch.cuda.OutOfMemoryError) as exc:
        kind = "non-finite loss" if isinstance(exc, NonFiniteLossError) else type(exc).__name__
        log.warning("batch %s failed (%s): %s", batch.batch_id, kind, exc)
        return records + [failed_record(bases[j.job_id], f"{kind}: {exc}") for j in good]
    wall = time.perf_counter() - start
    losses = {k: v[-1] for k, v in result.history.items() if k != "lr" and v}
    for i, job in enumerate(good):
        records.append(_write_video(job, i, result, bases[job.job_id], names, losses, wall, len(good), plan, log))
    return records


def _write_video(job, i, result, base, names, losses, wall, batch_size, plan, log) -> dict:
    from leaps.video import write_video

    path = names.video(job)
    try:
        write_video(result.video[i], path, fps=plan.options.fps)
    except LeapsError as exc:
        log.warning("job %s: %s", job.job_id, exc)
        return failed_record(base, f"writing the video: {exc}")
    record = ok_record(base, video=result.video[i], video_path=str(path.relative_to(names.out)), losses=losses,
                       model_probs=result.model_probs[i] if result.model_probs is not None else None,
                       verifier_probs=result.verifier_probs[i] if result.verifier_probs is not None else None,
                       wall_s=wall, batch_size=batch_size)
    atomic_write_text(names.record(job), json.dumps(record, indent=1, sort_keys=True))
    return record
