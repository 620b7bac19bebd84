"""Shared fixtures: tiny but real video networks that run in milliseconds on a CPU."""

import os

import torch

# Without a GPU the Triton kernels run in Triton's interpreter (on small shapes). It must be
# switched on before triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from torch import nn


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests share a 2-core machine; more threads only add contention.
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


class TinyVideoNet(nn.Module):
    """Conv3d + BatchNorm3d stack with an adaptive head: accepts any T x H x W."""

    def __init__(self, num_classes=10, width=8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(3, width, 3, padding=1), nn.BatchNorm3d(width), nn.ReLU(),
            nn.Conv3d(width, 2 * width, 3, stride=(1, 2, 2), padding=1), nn.BatchNorm3d(2 * width), nn.ReLU(),
            nn.Conv3d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm3d(2 * width), nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3, 4)))


class TinyTokenNet(nn.Module):
    """A transformer-shaped net: patchify to tokens, class token, LayerNorms, linear head."""

    def __init__(self, num_classes=10, dim=12, patch=(2, 4, 4)):
        super().__init__()
        self.embed = nn.Conv3d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], 1)
        tokens = tokens + self.mlp(self.norm1(tokens)).relu()
        return self.head(self.norm(tokens)[:, 0])


def frozen(model):
    """Give BatchNorm layers non-trivial running statistics, then freeze the model."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 4, 16, 16) * 0.5 + 0.2)
    return model.eval().requires_grad_(False)


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return frozen(TinyVideoNet())


@pytest.fixture
def tiny_verifier():
    torch.manual_seed(1)
    return frozen(TinyVideoNet(width=4))


@pytest.fixture
def tiny_token_net():
    torch.manual_seed(2)
    return TinyTokenNet().eval().requires_grad_(False)


class NaNAfter(nn.Module):
    """Wraps a net so that its outputs become NaN from call ``after + 1`` on."""

    def __init__(self, net, after):
        super().__init__()
        self.net, self.after, self.calls = net, after, 0

    def forward(self, x):
        self.calls += 1
        out = self.net(x)
        return out * float("nan") if self.calls > self.after else out
