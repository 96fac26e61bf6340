"""The torch internals the trainer leans on, in one place, each with a test of its own
(tests/test_torch_compat.py): when torch moves one of them (setup.cfg bounds torch below the
next minor until it is tested), this file and its test say which, and nothing else changes.

- `found_inf` on an optimizer: GradScaler's hook, read by the fused Adam kernel, which leaves
  parameters, moments and step count alone when it is set: a non-finite step skipped with no
  host sync (trainer/pix2pix_step.py).
- `torch._foreach_copy_`: many tensors copied in one call (buffers put back or averaged).
- the default process group's store (`distributed_c10d._get_default_store`): where a failing
  rank leaves its message for the others (trainer/distributed.py).
"""
import torch
import torch.distributed as dist


def step_unless(opt: torch.optim.Optimizer, found_inf: torch.Tensor) -> None:
    """opt.step(), skipped on the device when `found_inf` (a 0-d float tensor) is 1."""
    opt.found_inf = found_inf
    opt.step()


def copy_all_(dst: list, src: list) -> None:
    """dst[i].copy_(src[i]) for all i, in one call."""
    torch._foreach_copy_(dst, src)


def default_store():
    """The default process group's key-value store (torchrun's rendezvous store, or the one
    init_process_group was given)."""
    return dist.distributed_c10d._get_default_store()
