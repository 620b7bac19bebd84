"""How long a batch takes: balances shards and gives ``--dry-run`` its GPU-hours figure.

A batch costs ``steps x step time``; the step time of a model is read from a table of measured
points and scaled linearly in the work per step, ``B x T x S^2``. Only the ratios between
batches matter for balancing; the absolute figure is an estimate for planning.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepTime:
    """One measured point: ``ms`` per Adam step at batch ``batch`` and x* of ``frames x size^2``."""

    ms: float
    batch: int
    frames: int
    size: int
    where: str

    def scaled(self, batch: int, frames: int, size: int) -> float:
        """ms per step at another geometry, linear in B x T x S^2 (but never below a tenth of the
        measured point: small batches do not get proportionally cheaper on a GPU)."""
        ratio = (batch * frames * size * size) / (self.batch * self.frames * self.size * self.size)
        return self.ms * max(ratio, 0.1)


#: Measured with benchmarks/table4.py, leaps-fast row (CUDA graph + bf16 + fused losses), verifier
#: X3D-S (benchmarks/results/h100/table4_run3*.md). Other GPUs: scale by their speed ratio.
H100_FAST = {
    "slow_r50": StepTime(68.7, 16, 8, 224, "H100, fast, verifier x3d_s"),
    "r2plus1d_r50": StepTime(104.1, 16, 8, 224, "H100, fast, verifier x3d_s"),
}
#: Models without a measurement: a ResNet-50-sized network, 1.5x slow_r50 to stay on the safe side.
UNMEASURED = StepTime(1.5 * 68.7, 16, 8, 224, "unmeasured: 1.5x slow_r50 on an H100")
#: The toy networks on one CPU thread, LEAPS with toy_x3d, 8 x 32^2, B=4: 32 videos of 40 steps in 18 s
#: (benchmarks/sweep.py, sweep API row, on a busy 2-core machine).
TOY_CPU = StepTime(57.0, 4, 8, 32, "toy_r3d + toy_x3d on 1 CPU thread")
#: The plain eager step (no --fast) is about this much slower on a GPU (Table 4: 96 vs 69 ms at B=16).
EAGER_FACTOR = 1.4
#: The baselines run one network (no verifier, no priming): about half a LEAPS step.
BASELINE_FACTOR = 0.5


def step_time(model: str) -> StepTime:
    if model.startswith("toy_"):
        return TOY_CPU
    return H100_FAST.get(model, UNMEASURED)


def batch_seconds(model: str, method: str, batch: int, frames: int, size: int, steps: int, fast: bool) -> float:
    """Estimated seconds of one batch (steps x scaled step time)."""
    ms = step_time(model).scaled(batch, frames, size)
    if not fast and not model.startswith("toy_"):
        ms *= EAGER_FACTOR
    if method != "leaps":
        ms *= BASELINE_FACTOR
    return steps * ms / 1000.0
