"""Sweeps: invert a whole stimulus set with several models and methods, on one process, a torchrun
job or a SLURM array (``--shard i/n``), resumably, and summarise it as Table 1 of the paper.

    import leaps.sweep
    report = leaps.sweep.run(["toy_r3d"], "sweeps/toy", stimuli="toy:test:20", steps=200)
    print(report.summary["rows"][0])

Modules, one job each: :mod:`~leaps.sweep.stimuli` (stimulus sets), :mod:`~leaps.sweep.options`
(what a sweep does), :mod:`~leaps.sweep.jobs` (job ids, batches), :mod:`~leaps.sweep.plan` (the
full job list), :mod:`~leaps.sweep.cost` (step-time table), :mod:`~leaps.sweep.sharding` (who runs
what), :mod:`~leaps.sweep.execute` (one batch), :mod:`~leaps.sweep.records` /
:mod:`~leaps.sweep.manifest` (durable results), :mod:`~leaps.sweep.summary` (tables),
:mod:`~leaps.sweep.distributed` (torchrun), :mod:`~leaps.sweep.api` (the driver),
:mod:`~leaps.sweep.cli` (the commands).
"""

from .api import SweepReport, run, run_sweep
from .errors import StimulusSetError, SweepError
from .options import SweepOptions
from .plan import build_plan
from .summary import write_summary as summarize

__all__ = ["StimulusSetError", "SweepError", "SweepOptions", "SweepReport", "build_plan", "run", "run_sweep",
           "summarize"]
