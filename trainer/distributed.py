"""Process-group plumbing for torchrun: who am I, which device, how ranks agree.

A plain `vrestore train` (no torchrun variables) is rank 0 of 1 and never touches
torch.distributed. Everything that steers the loop (stop, learning rate, validate-and-save) is
derived from values all ranks agreed on here, never from a rank's own clock, or the ranks would
enter different collectives and hang, or step with different rates and drift apart.
"""
import hashlib
import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from vrestore.pipeline.devices import resolve_device
from vrestore.trainer.torch_compat import copy_all_, default_store

ERROR_KEY = "vrestore/error"


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
    if world_size > 1 and ":" in device_name:
        # every rank would take that one GPU; torchrun's ranks each take their LOCAL_RANK's
        raise ValueError(f"--device {device_name} under torchrun: each rank uses the GPU of its LOCAL_RANK; pass --device cuda "
                         f"(and CUDA_VISIBLE_DEVICES to choose which GPUs)")
    device = resolve_device(device_name, local_rank)
    if world_size == 1:
        return Dist(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = timedelta(minutes=30)
    store, rank, world_size = next(dist.rendezvous("env://", timeout=timeout))
    # A worker group that `torchrun --max-restarts` starts again meets in the same store as the
    # group before it, where the dead group's addresses still lie: the new group read them and
    # hung (gloo's "connectFullMesh failed"). Each attempt gets keys of its own.
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(backend, store=dist.PrefixStore(f"vrestore/attempt-{attempt}", store), rank=rank,
                            world_size=world_size, timeout=timeout, device_id=device if backend == "nccl" else None)
    control = dist.new_group(backend="gloo") if backend == "nccl" else dist.group.WORLD
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device, control)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def agree(d: Dist, seconds: float, code: int) -> tuple:
    """(seconds, code) the same on every rank: the largest of the ranks' clocks and of their
    codes (what a signal or the lease asks: trainer/stop_request.py). One small all-reduce on the
    CPU control group per step."""
    if not d.enabled:
        return seconds, code
    t = torch.tensor([seconds, float(code)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=d.control)
    return t[0].item(), int(t[1].item())


def gather_to_main(d: Dist, obj) -> list:
    """Every rank's `obj` in rank order on rank 0 (None elsewhere); objects go through the CPU
    control group, so nothing here needs a GPU tensor."""
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size if d.is_main else None
    dist.gather_object(obj, out, dst=0, group=d.control)
    return out


@torch.no_grad()
def average_buffers(d: Dist, nets) -> None:
    """Batch-norm running statistics are each rank's own between saves (DDP runs without
    buffer broadcasts, see trainer/train.py); before validating and saving, every rank takes the
    mean over ranks, so all ranks hold one network. Integer counters are equal already."""
    if not d.enabled:
        return
    buffers = [b for net in nets for b in net.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1).float() for b in buffers])
    dist.all_reduce(flat)  # the training group: NCCL on GPUs, gloo on the CPU
    flat /= d.world_size
    copy_all_(buffers, [v.view_as(b) for v, b in zip(flat.split([b.numel() for b in buffers]), buffers)])


def weights_checksum(nets) -> str:
    """A hash of every parameter and buffer, to show that all ranks hold the same networks."""
    h = hashlib.sha256()
    for net in nets:
        for name, t in net.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def report_failure(d: Dist, message: str, code: int = 1) -> None:
    """This rank failed: leave its message where the other ranks find it (the rendezvous store),
    say it, and leave at once. A normal exit would wait in destroy_process_group or atexit
    handlers while the other ranks wait in a collective for this one (up to the 30-minute
    timeout); exiting closes its connections, so their collective fails within seconds and
    torchrun stops the rest. `code`: the exit status (2 for a usage error), the same on every
    rank: a rank stopped by another's failure exits with that rank's code."""
    line = f"error: rank {d.rank}: {message}"
    try:
        default_store().set(ERROR_KEY, f"{code}|{line}")
    except Exception:  # the store may be gone already; the message is still printed
        pass
    print(line, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


def other_rank_failure(d: Dist) -> tuple:
    """(message, exit code) another rank left when it failed, or ("", 0)."""
    if not d.enabled:
        return "", 0
    try:
        store = default_store()
        if not store.check([ERROR_KEY]):
            return "", 0
        code, _, line = store.get(ERROR_KEY).decode().partition("|")
        return line, int(code)
    except Exception:
        return "", 0
