"""torch.distributed for a torchrun sweep: only a final barrier and a gather of each rank's counts.

The work itself needs no communication (every rank derives its batches from the same plan), so a
rank that dies loses only its own unfinished batch; a restart picks it up.
"""

from __future__ import annotations

import datetime

import torch

from .errors import SweepError
from .sharding import Placement

#: Ranks finish at different times; the barrier waits for the slowest (a sweep may take days).
BARRIER_TIMEOUT = datetime.timedelta(days=7)


def pick_device(choice: str, placement: Placement) -> torch.device:
    """cuda:LOCAL_RANK when CUDA is there (``auto``), else the CPU; or the device named."""
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", placement.local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise SweepError(f"unknown device {choice!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SweepError(f"--device {choice} asked for, but no CUDA GPU is available")
    return device


class ProcessGroup:
    """The default process group under torchrun (gloo on CPU, nccl on GPU); inert for one process."""

    def __init__(self, placement: Placement, device: torch.device):
        self.active = placement.torchrun
        self.device = device
        if self.active:
            import torch.distributed as dist

            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend, timeout=BARRIER_TIMEOUT)

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (on every rank), after all ranks got here: the final barrier."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.active = False
