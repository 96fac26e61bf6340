"""Each torch internal the trainer leans on (trainer/torch_compat.py), checked on its own, so a
torch release that moves one fails here by name."""
from datetime import timedelta

import torch
import torch.distributed as dist

from vrestore.trainer.torch_compat import copy_all_, default_store, step_unless


def test_fused_adam_skips_a_step_whose_found_inf_is_set():
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.Adam([p], lr=0.1, fused=True)
    p.grad = torch.ones(4)
    step_unless(opt, torch.tensor(1.0))
    assert torch.equal(p.detach(), torch.ones(4))  # skipped: weights as they were
    assert float(opt.state[p]["step"]) == 0 and torch.equal(opt.state[p]["exp_avg"], torch.zeros(4))  # moments untouched too
    step_unless(opt, torch.tensor(0.0))
    assert torch.allclose(p.detach(), torch.full((4,), 0.9))  # applied: Adam's first step moves by lr
    assert float(opt.state[p]["step"]) == 1


def test_copy_all_copies_every_tensor():
    dst, src = [torch.zeros(3), torch.zeros(2, 2)], [torch.arange(3.0), torch.ones(2, 2)]
    copy_all_(dst, src)
    assert all(torch.equal(d, s) for d, s in zip(dst, src))


def test_the_default_store_is_the_groups_store(tmp_path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    store.set_timeout(timedelta(seconds=5))  # a missing key fails in seconds, not torch's 5 minutes
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        before = store.num_keys()
        default_store().set("vrestore/test", "seen")
        assert default_store().get("vrestore/test") == b"seen"
        assert store.num_keys() == before + 1  # it landed in the store the group was given (the group prefixes keys)
    finally:
        dist.destroy_process_group()
