"""Wall-clock timing of GPU or CPU work, for the benchmarks (and your own measurements)."""

from __future__ import annotations

import time
from typing import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], iters: int, warmup: int, device: torch.device) -> list[float]:
    """Milliseconds of each of ``iters`` calls of ``fn`` after ``warmup`` untimed ones, each call
    bracketed by device synchronisation so queued GPU work is counted."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(1000.0 * (time.perf_counter() - start))
    return times


def graph_time_ms(fn: Callable[[], object], iters: int, warmup: int, device: torch.device,
                  replays: int = 10) -> list[float]:
    """Device milliseconds of ``fn`` with the host taken out: ``fn`` is captured once as a CUDA
    graph (after ``warmup`` calls on a side stream) and each sample is the mean of ``replays``
    back-to-back replays. Raises whatever capture raises (a host sync in ``fn``, a CPU device)."""
    if device.type != "cuda":
        raise RuntimeError("graph_time_ms needs a CUDA device")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(max(1, warmup)):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="relaxed"):
        fn()

    def replay():
        for _ in range(replays):
            graph.replay()  # noqa: F821 - deleted in finally

    try:
        return [t / replays for t in time_ms(replay, iters, 1, device)]
    finally:
        del graph
