"""Launched by tests/test_train.py under torchrun (2 CPU ranks, gloo): each rank fills its
networks' buffers with values of its own, runs the trainer's `average_buffers`, and saves what
it then holds to OUT/rank{R}.pt, beside what it held before (OUT/before{R}.pt)."""
import sys
from pathlib import Path

import torch

from vrestore.models import DiscriminatorConfig, GeneratorConfig, build_discriminator, build_generator
from vrestore.trainer import distributed


def main(out: Path):
    d = distributed.setup("cpu")
    torch.manual_seed(100 + d.rank)  # different statistics on each rank
    nets = [build_generator(GeneratorConfig(ngf=4, depth=5)), build_discriminator(DiscriminatorConfig(ndf=4))]
    for net in nets:
        for b in net.buffers():
            if b.is_floating_point():
                b.copy_(torch.rand_like(b) * 10)
            else:
                b.fill_(7)  # BatchNorm's step counters: equal on every rank already
    torch.save([net.state_dict() for net in nets], out / f"before{d.rank}.pt")
    distributed.average_buffers(d, nets)
    torch.save([net.state_dict() for net in nets], out / f"rank{d.rank}.pt")
    distributed.teardown(d)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
