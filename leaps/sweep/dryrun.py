"""``--dry-run``: the size of a sweep, its shards and an estimate of its device hours."""

from __future__ import annotations

from collections import Counter

from .cost import step_time
from .plan import SweepPlan
from .sharding import Placement, balance


def describe(plan: SweepPlan, placement: Placement, finished: set[str]) -> str:
    jobs = plan.jobs
    pending = [j for j in jobs if j.job_id not in finished]
    lines = [f"{len(jobs)} jobs (videos) in {len(plan.batches)} batches of up to {plan.options.batch}; "
             f"{len(jobs) - len(pending)} already finished, {len(pending)} to run"]
    by_group = Counter((j.model, j.method) for j in jobs)
    for (model, method), n in sorted(by_group.items()):
        cfg = plan.configs[(model, method)]
        lines.append(f"  {model} / {method}: {n} jobs, x* {cfg.frames} x {cfg.size}^2, {cfg.steps} steps"
                     f"{', fast' if cfg.fast else ''}; step time from {step_time(model).where}")
    total = sum(b.cost * _pending_share(b, finished) for b in plan.batches)
    lines.append(f"estimated device time: {total / 3600:.2f} device-hours "
                 f"({total / 3600 / placement.workers:.2f} h wall on {placement.workers} worker(s))")
    shards = balance(plan.batches, placement.shards)
    for s, batches in enumerate(shards):
        per_rank = balance(batches, placement.world)
        ranks = ", ".join(f"rank {r}: {sum(len(b.jobs) for b in bs)} jobs / {sum(b.cost for b in bs) / 3600:.2f} h"
                          for r, bs in enumerate(per_rank))
        lines.append(f"  shard {s}/{placement.shards}: {sum(len(b.jobs) for b in batches)} jobs in {len(batches)} "
                     f"batches ({ranks})")
    return "\n".join(lines)


def _pending_share(batch, finished: set[str]) -> float:
    return sum(j.job_id not in finished for j in batch.jobs) / len(batch.jobs)
