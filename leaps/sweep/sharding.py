"""Which process runs which batches: torchrun's RANK / WORLD_SIZE, ``--shard i/n``, or one process.

Every process computes the same assignment from the same plan: longest batches first, each to
the shard with the least estimated work so far (ties to the lowest shard). Under torchrun with
``--shard i/n`` too, the shard is split again between the ranks (a SLURM array of torchrun jobs).
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass

from .errors import SweepError
from .jobs import Batch


@dataclass(frozen=True)
class Placement:
    """This process's place in the sweep. ``worker`` names its manifest and log (unique per process)."""

    rank: int = 0          # index among the torchrun processes
    world: int = 1
    local_rank: int = 0    # GPU index on this node
    shard: int = 0         # --shard i/n
    shards: int = 1

    @property
    def torchrun(self) -> bool:
        return self.world > 1

    @property
    def worker(self) -> int:
        return self.shard * self.world + self.rank

    @property
    def workers(self) -> int:
        return self.shards * self.world


def placement_from_env(shard: tuple[int, int] | None = None, env=None) -> Placement:
    env = os.environ if env is None else env
    try:
        rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise SweepError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None
    if not 0 <= rank < world:
        raise SweepError(f"RANK={rank} is not in 0..WORLD_SIZE-1={world - 1}")
    i, n = shard if shard is not None else (0, 1)
    return Placement(rank, world, local, i, n)


def balance(batches: list[Batch], parts: int) -> list[list[Batch]]:
    """Split ``batches`` into ``parts`` lists of about equal estimated cost (greedy, deterministic);
    each list keeps the plan's order."""
    order = sorted(range(len(batches)), key=lambda i: (-batches[i].cost, batches[i].batch_id))
    heap = [(0.0, p) for p in range(parts)]
    owner = {}
    for i in order:
        load, p = heapq.heappop(heap)
        owner[i] = p
        heapq.heappush(heap, (load + batches[i].cost, p))
    out: list[list[Batch]] = [[] for _ in range(parts)]
    for i, batch in enumerate(batches):
        out[owner[i]].append(batch)
    return out


def my_batches(batches: list[Batch], placement: Placement) -> list[Batch]:
    """The batches of this process: its shard's, then its rank's share of those."""
    shard = balance(batches, placement.shards)[placement.shard]
    return balance(shard, placement.world)[placement.rank]
