"""How many windows, and what tile, restore may put through the generator at once so its
tensors stay under a memory budget (`restore --max-memory`; automatic by default).

A probe forward pass at a small size measures the peak bytes of the tensors the network creates
per input pixel (on a GPU torch's allocator reports it; on the CPU a dispatch mode follows every
storage an op creates until it is freed). Activations of a convolutional net scale with the
pixel count, so that figure times H x W is one window's peak; the budget divided by it gives the
windows per forward pass, and when not even one fits, the largest tile side that does.
Not counted: decoding and encoding buffers (a few frames each) and the weights themselves.
"""
import math
from typing import Optional

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vrestore.pipeline.host.limits import memory_free

AUTO_FRACTION = 0.5  # the automatic budget: this share of the memory available when restore starts
PROBE_SIDE_MULTIPLES = 4  # the probe frame is this many times the generator's multiple on a side


class _PeakTensorBytes(TorchDispatchMode):
    """Peak bytes of the storages created under this mode that are alive at once."""

    def __init__(self):
        super().__init__()
        self.live, self.peak = {}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # freed storages first: the allocator may hand a freed address to this op's output
        self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:  # a view or an in-place result shares its storage
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


def bytes_per_pixel(forward, channels: int, multiple: int, device: torch.device) -> float:
    """Peak bytes per input pixel of one window through `forward` (input and output included)."""
    side = PROBE_SIDE_MULTIPLES * multiple
    with torch.no_grad():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            start = torch.cuda.memory_allocated(device)
            forward(torch.zeros(1, channels, side, side, device=device))
            peak = torch.cuda.max_memory_allocated(device) - start
        else:
            with _PeakTensorBytes() as probe:
                forward(torch.zeros(1, channels, side, side, device=device))
            peak = probe.peak
    return peak / side**2


def available_bytes(device: torch.device) -> int:
    """Memory free for restore now: the GPU's free memory, or what this job may still use (the
    host's MemAvailable, or its cgroup's room when lower: limits.memory_free)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return memory_free()


def check_max_memory(max_memory_gib: Optional[float]) -> None:
    """--max-memory: a finite number of GiB > 0 (or None: automatic). One rule for the command,
    checked before any worker starts, and for a Restorer built directly (bench/)."""
    if max_memory_gib is not None and not (math.isfinite(max_memory_gib) and max_memory_gib > 0):
        raise ValueError(f"--max-memory {max_memory_gib:g}: must be a number of GiB > 0")


def budget_bytes(device: torch.device, max_memory_gib: Optional[float], share: int = 1) -> int:
    """--max-memory, else AUTO_FRACTION of what is free, split over `share` workers that draw on
    the same memory (Ray's CPU actors on one node)."""
    if max_memory_gib is not None:
        return int(max_memory_gib * 2**30)
    return int(AUTO_FRACTION * available_bytes(device) / max(1, share))


def windows_per_pass(per_pixel: float, height: int, width: int, budget: int) -> int:
    """How many windows of H x W fit the budget at once (0: not even one; tile instead)."""
    return int(budget // max(per_pixel * height * width, 1.0))


def tile_for(per_pixel: float, budget: int, multiple: int) -> int:
    """The largest square tile (a multiple of the generator's multiple) whose window fits."""
    side = int((budget / max(per_pixel, 1e-9)) ** 0.5) // multiple * multiple
    return max(side, multiple)
