"""Pointer/offset tables that let one kernel launch cover many tensors (multi-tensor apply).

A launch gets two small int tensors on the device:

* ``layers`` (int64, L x columns): per tensor its data pointer(s), sizes, strides, output offset;
* ``items`` (int32, N x 2): one (layer, first row) pair per program.

Both are cached. The work list depends only on shapes, so it is built once per shape set. The
layer table holds data pointers, so it changes when activations move; it is keyed by its full
contents, which makes steady-state steps (the caching allocator hands out the same addresses)
and CUDA-graph replays hit the cache with no host-to-device copy at all. A miss copies a few
hundred bytes from pinned memory without synchronising. Cached host tensors are kept alive so
a copy captured in a CUDA graph keeps reading valid memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
import triton.language as tl

TRITON_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}

_CACHE_SIZE = 256
_layer_cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
_item_cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()


@dataclass(frozen=True)
class LaunchGroup:
    """Tensors of one dtype and one memory layout, reduced by one launch."""

    dtype: torch.dtype
    layout: str  # "rows": reduce along a stride-1 (or generic) S; "cols": channels-last (stride C == 1)
    indices: tuple[int, ...]


def layout_of(x: torch.Tensor) -> str:
    """``x`` is B x C x S: "cols" when channels are the contiguous axis (channels-last, tokens)."""
    return "cols" if x.stride(1) == 1 and x.shape[2] > 1 and x.stride(2) != 1 else "rows"


def launch_groups(xs: Sequence[torch.Tensor]) -> list[LaunchGroup]:
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(xs):
        groups.setdefault((x.dtype, layout_of(x)), []).append(i)
    return [LaunchGroup(dtype, layout, tuple(idx)) for (dtype, layout), idx in groups.items()]


def _remember(cache: OrderedDict, key: tuple, value: torch.Tensor) -> torch.Tensor:
    cache[key] = value
    if len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


def _to_device(values, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    host = values.to(dtype) if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=dtype)
    if device.type == "cuda":
        host = host.pin_memory()
        dev = host.to(device, non_blocking=True)
        dev._leaps_host = host  # keeps the pinned source alive for as long as the table lives
        return dev
    return host.to(device)


@dataclass(frozen=True)
class LayerTable:
    layers: torch.Tensor
    items: torch.Tensor

    @property
    def num_items(self) -> int:
        return self.items.shape[0]

    @classmethod
    def build(cls, rows: list[list[int]], row_counts: Sequence[int], block_rows: int, device) -> "LayerTable":
        device = torch.device(device)
        layer_key = (device, tuple(map(tuple, rows)))
        layers = _layer_cache.get(layer_key)
        if layers is None:
            layers = _remember(_layer_cache, layer_key, _to_device(rows, torch.int64, device))
        else:
            _layer_cache.move_to_end(layer_key)
        item_key = (device, tuple(row_counts), block_rows)
        items = _item_cache.get(item_key)
        if items is None:
            per_layer = [
                torch.stack(
                    [torch.full((n,), l, dtype=torch.int32), torch.arange(0, n, dtype=torch.int32) * block_rows], 1
                )
                for l, n in enumerate(-(-c // block_rows) for c in row_counts)
            ]
            items = _remember(_item_cache, item_key, _to_device(torch.cat(per_layer), torch.int32, device))
        return cls(layers, items)
