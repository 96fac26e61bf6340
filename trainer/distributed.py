"""Process-group plumbing for torchrun: who am I, which device, how ranks agree.

A plain `python -m trainer` (no torchrun variables) is rank 0 of 1 and never touches
torch.distributed.
"""
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from pipeline.devices import resolve_device


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    control: object = None  # a gloo group: CPU flags agreed without a GPU sync

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device_name: str = "auto") -> Dist:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size == 1:
        return Dist(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=30), device_id=device if backend == "nccl" else None)
    control = dist.new_group(backend="gloo") if backend == "nccl" else dist.group.WORLD
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device, control)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(d: Dist, flag: bool) -> bool:
    """True on every rank if it is true on any: stop decisions (signals, time limits) must be
    taken at the same step everywhere, or the ranks deadlock in the next all-reduce."""
    if not d.enabled:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=d.control)
    return bool(t.item())


def gather_to_main(d: Dist, obj) -> list:
    """Every rank's `obj` in rank order on rank 0 (None elsewhere); objects go through the CPU
    control group, so nothing here needs a GPU tensor."""
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size if d.is_main else None
    dist.gather_object(obj, out, dst=0, group=d.control)
    return out

