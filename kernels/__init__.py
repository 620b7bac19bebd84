"""Triton kernels of the LEAPS losses (installed as ``leaps.kernels``; needs ``triton``).

* :mod:`.channel_stats`: per-channel means / M2 of many activations in one launch, and the
  gradient of any function of them in one launch (L_prim and R_feat).
* :mod:`.frame_l1`: pairwise per-frame L1 distances and their gradient (R_coh).

These are plain launchers on tensors; :mod:`leaps.ops` wraps them as PyTorch custom ops with
autograd and fake kernels, and :mod:`leaps.losses` dispatches to them (``backend="triton"``).
On a machine without a GPU they run under ``TRITON_INTERPRET=1`` (slow; for tests).
"""

from .channel_stats import channel_stats, channel_stats_backward
from .frame_l1 import frame_l1, frame_l1_backward

__all__ = ["channel_stats", "channel_stats_backward", "frame_l1", "frame_l1_backward"]
