"""``leaps.sweep.run``: invert many stimuli with several models and methods, resumably, on any
number of processes, and finish with Table 1 (:mod:`leaps.sweep.summary`)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .distributed import ProcessGroup, pick_device
from .dryrun import describe
from .errors import SweepError
from .execute import Networks, OutputNames, run_batch
from .logs import file_logger
from .manifest import OK, ManifestWriter, finished_jobs, manifest_path
from .options import SweepOptions
from .plan import build_plan
from .sharding import Placement, my_batches, placement_from_env
from .summary import write_summary

LOG_DIR = "logs"


@dataclass
class SweepReport:
    """What one process did (``summary``: the tables, on the process that wrote them)."""

    planned: int = 0          # jobs of the whole sweep
    assigned: int = 0         # jobs of this process
    skipped: int = 0          # already finished before this run
    ok: int = 0
    failed: int = 0
    summary: dict | None = None
    dry_run: str | None = None
    per_worker: list = field(default_factory=list)


def run(models: list[str] | str, out: str | Path, **options) -> SweepReport:
    """Run a sweep; keyword ``options`` are the fields of :class:`SweepOptions`.

        leaps.sweep.run(["toy_r3d"], "sweeps/toy", stimuli="toy:test:20", steps=200)

    InversionConfig fields (``steps``, ``lr``, ``size`` ...) may be given directly as keywords.
    """
    import dataclasses

    from leaps.config import InversionConfig

    models = [models] if isinstance(models, str) else list(models)
    inversion_fields = {f.name for f in dataclasses.fields(InversionConfig)}
    config = dict(options.pop("config", {}) or {})
    config.update({k: options.pop(k) for k in list(options) if k in inversion_fields and k not in ("seed", "progress")})
    if "seed" in options:
        options["seeds"] = [options.pop("seed")]
    try:
        opts = SweepOptions(models=models, out=str(out), config=config, **options)
    except TypeError as exc:
        raise SweepError(f"unknown sweep option: {exc}") from None
    return run_sweep(opts)


def run_sweep(options: SweepOptions) -> SweepReport:
    plan = build_plan(options)
    placement = placement_from_env(options.shard)
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out} exists and is not a folder")
    finished = finished_jobs(out, options.retry_failed)
    if options.dry_run:
        text = describe(plan, placement, finished)
        return SweepReport(planned=len(plan.jobs), dry_run=text)

    device = pick_device(options.device, placement)
    group = ProcessGroup(placement, device)
    try:
        report = _work(plan, placement, device, finished, out)
        counts = group.gather({"worker": placement.worker, "assigned": report.assigned, "skipped": report.skipped,
                               "ok": report.ok, "failed": report.failed})
        report.per_worker = counts
        if placement.rank == 0:
            report.summary = write_summary(out)
    finally:
        group.close()
    return report


def _logger(out: Path, worker: int) -> logging.Logger:
    return file_logger(f"leaps.sweep.{out.resolve()}.{worker}", out / LOG_DIR / f"rank-{worker}.log")


def _work(plan, placement: Placement, device, finished: set[str], out: Path) -> SweepReport:
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    log = _logger(out, placement.worker)
    mine = my_batches(plan.batches, placement)
    todo = [(b, [j for j in b.jobs if j.job_id not in finished]) for b in mine]
    todo = [(b, jobs) for b, jobs in todo if jobs]
    report = SweepReport(planned=len(plan.jobs), assigned=sum(len(b.jobs) for b in mine))
    report.skipped = report.assigned - sum(len(jobs) for _, jobs in todo)
    log.info("worker %d/%d on %s: %d jobs assigned, %d finished before, %d batches to run", placement.worker,
             placement.workers, device, report.assigned, report.skipped, len(todo))
    networks, names = Networks(plan, device), OutputNames(out)
    show = plan.options.progress and placement.rank == 0
    bar = tqdm(total=sum(len(jobs) for _, jobs in todo), disable=not show, unit="video", desc="sweep",
               file=sys.stderr, dynamic_ncols=True)
    with ManifestWriter(manifest_path(out, placement.worker)) as manifest:
        for batch, jobs in todo:
            records = run_batch(batch, jobs, plan, networks, names, placement.worker, log)
            manifest.append(records)
            ok = sum(r["status"] == OK for r in records)
            report.ok += ok
            report.failed += len(records) - ok
            log.info("batch %s: %d ok, %d failed (%s / %s)", batch.batch_id, ok, len(records) - ok,
                     batch.first.model, batch.first.method)
            bar.update(len(jobs))
            bar.set_postfix(failed=report.failed, refresh=False)
    bar.close()
    log.info("done: %d ok, %d failed", report.ok, report.failed)
    return report
