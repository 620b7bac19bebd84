"""Units of work: a :class:`Job` is one video; a :class:`Batch` is the jobs optimised together.

A job's id hashes everything its video depends on (model and weights, verifier, the objective's
config, the stimulus identity or the baseline's class and run, the seed). Batches are formed
from the full job list before any sharding or resuming, deterministically, and each batch seeds
its inversion from its own id: R_feat matches the statistics of a whole batch, so a video depends
on its batch mates, and neither the rank nor a restart may change who they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest

from .options import digest
from .stimuli import Stimulus


@dataclass(frozen=True)
class Job:
    job_id: str
    model: str
    verifier: str | None
    method: str
    config_tag: str
    seed: int
    target: int
    class_name: str
    stimulus: Stimulus | None = None  # LEAPS primes with it; the baselines have none
    run: int = 0                      # baselines: k-th video of the class

    @property
    def stimulus_name(self) -> str:
        return self.stimulus.name if self.stimulus is not None else f"run{self.run}"


@dataclass(frozen=True)
class Batch:
    batch_id: str
    jobs: tuple[Job, ...]
    inversion_seed: int  # seeds x*'s initial noise and the augmentation schedule
    cost: float = 0.0    # estimated seconds on the target device (leaps.sweep.cost)

    @property
    def first(self) -> Job:
        return self.jobs[0]


def job_id(model_key: dict, verifier_key: dict | None, fingerprint: dict, item: str, seed: int) -> str:
    return digest({"model": model_key, "verifier": verifier_key, "config": fingerprint, "item": item,
                   "seed": seed})[:20]


def interleave_classes(items: list, label_of) -> list:
    """Round-robin over classes (each class in its own order): batches mix classes, as a dataset
    batch would, instead of holding B videos of one class."""
    by_class: dict[int, list] = {}
    for item in items:
        by_class.setdefault(label_of(item), []).append(item)
    columns = [by_class[k] for k in sorted(by_class)]
    return [item for row in zip_longest(*columns) for item in row if item is not None]


def make_batches(jobs: list[Job], batch_size: int) -> list[Batch]:
    """Consecutive runs of ``batch_size`` jobs sharing model, method, config and seed (job order kept)."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.model, job.verifier, job.method, job.config_tag, job.seed), []).append(job)
    batches = []
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            members = tuple(group[start:start + batch_size])
            bid = digest([j.job_id for j in members])[:20]
            batches.append(Batch(bid, members, inversion_seed=int(bid[:8], 16) & 0x7FFFFFFF))
    return batches
