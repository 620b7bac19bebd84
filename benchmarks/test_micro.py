"""CPU micro-benchmarks of the three LEAPS terms: plain-torch reference vs the C++ extension's CPU kernels.

    python -m pytest benchmarks/ --benchmark-only                  # every term, size and backend
    python -m pytest benchmarks/ --benchmark-only -k "R_coh"       # one term
    python -m pytest benchmarks/ --benchmark-only --benchmark-json=micro.json

One benchmark is one forward + backward of a term through :mod:`leaps.losses` on CPU tensors,
with the activations as leaves: ``backend="reference"`` (plain torch) or ``backend="cuda"`` (the
compiled extension, ``torch.ops.leaps.*`` via ``leaps.ops.channel_stats`` / ``frame_l1``, whose
CPU kernels run on CPU tensors; skipped when ``leaps._ext`` cannot be loaded). Each benchmark
first checks that its backend's loss matches the reference's. pytest.ini's ``testpaths = tests``
keeps these out of the test suite (``python -m pytest -q``); GPU kernel timings are
benchmarks/kernel_latency.py's job.

* L_prim: JVS priming distance of every layer's channel means to a stimulus', with linear weights;
* R_coh: temporal coherence of the last layer (margin 1);
* R_feat: BatchNorm moments of every layer against running statistics.
"""

from __future__ import annotations

import pytest
import torch

from leaps import _ext, losses

HAS_EXT = _ext.available() and hasattr(torch.ops.leaps, "channel_stats") and hasattr(torch.ops.leaps, "frame_l1")
BACKENDS = ["reference", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_EXT, reason="leaps._ext not loadable"))]

#: name -> (B, C, T, H, W) of one activation, number of layers (R_coh reads the last one).
SIZES = {
    "small": ((1, 64, 8, 14, 14), 4),
    "medium": ((2, 128, 8, 28, 28), 4),
    "large": ((4, 256, 8, 28, 28), 2),
}
TERMS = ("L_prim", "R_coh", "R_feat")


class Term:
    """Random activations of one size and the loss of one term over them."""

    def __init__(self, term: str, size: str, seed: int = 0):
        shape, layers = SIZES[size]
        g = torch.Generator().manual_seed(seed)
        self.term = term
        # std 0.5 keeps frame distances below the margin, so R_coh's hinge pairs are active
        self.acts = [(torch.randn(shape, generator=g) * 0.5 + 0.1).requires_grad_() for _ in range(layers)]
        channels = shape[1]
        self.stimulus = [torch.randn(shape[0], channels, generator=g) for _ in range(layers)]
        self.weights = losses.linear_layer_weights(layers, 1.0, 0.3)
        self.running_means = [torch.randn(channels, generator=g) * 0.1 for _ in range(layers)]
        self.running_vars = [torch.rand(channels, generator=g) + 0.5 for _ in range(layers)]

    def leaves(self) -> list[torch.Tensor]:
        return self.acts[-1:] if self.term == "R_coh" else self.acts

    def loss(self, backend: str) -> torch.Tensor:
        if self.term == "L_prim":
            return losses.priming_loss_from_activations(self.acts, self.stimulus, self.weights, "jvs", backend=backend)
        if self.term == "R_coh":
            return losses.temporal_coherence_loss(self.acts[-1], 1.0, backend=backend)
        return losses.bn_statistics_loss(self.acts, self.running_means, self.running_vars, backend=backend)

    def step(self, backend: str) -> torch.Tensor:
        for t in self.leaves():
            t.grad = None
        loss = self.loss(backend)
        loss.backward()
        return loss.detach()

    def megabytes(self) -> float:
        return sum(t.numel() * t.element_size() for t in self.leaves()) / 2**20


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("term", TERMS)
def test_term_forward_backward(benchmark, term, size, backend):
    problem = Term(term, size)
    reference = problem.step("reference")
    if backend != "reference":
        assert problem.step(backend).item() == pytest.approx(reference.item(), rel=1e-4)
    benchmark.group = f"{term} {size}"
    benchmark.extra_info.update(term=term, size=size, backend=backend, activation_mib=round(problem.megabytes(), 2),
                                threads=torch.get_num_threads())
    benchmark(problem.step, backend)
