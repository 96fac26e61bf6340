"""The EMA update, ours (trainer/ema.py) against torch's `AveragedModel.update_parameters` (what
the trainer called before), same generator, one run:

    python bench/ema.py                    # CPU, the default generator (ngf 64, crop 128)
    python bench/ema.py --device cuda

Per variant: ms per update on an idle device and, on a GPU, the host time of one update
issued while the device still runs queued work (about one training step's worth): an update
that waits for the device takes as long as that work; one that does not returns at once and
lets the host prepare the next batch meanwhile. (The CPU has no queue: there the figures can
only show that the update costs no more than before.)
"""
import argparse
import time

import torch
from torch.optim.swa_utils import AveragedModel

from vrestore.models import DEPTH, GeneratorConfig, build_generator
from vrestore.pipeline.devices import resolve_device
from vrestore.trainer.ema import GeneratorEMA


def torch_update(G, decay):
    model = AveragedModel(G, use_buffers=True, multi_avg_fn=lambda avg, cur, n: torch._foreach_lerp_(avg, cur, 1 - decay)
                          if avg[0].is_floating_point() else torch._foreach_copy_(avg, cur))
    model.n_averaged = model.n_averaged.cpu()  # as the trainer kept it
    return lambda step: model.update_parameters(G)


def ours(G, decay):
    return GeneratorEMA(G, decay).update


def behind_queued_work(update, device, ms: float) -> float:
    """Host ms of one update issued behind about `ms` of queued GPU work."""
    x = torch.randn(4096, 4096, device=device)

    def work(x):
        x = x @ x
        return x / x.norm()

    x = work(x)  # first call: kernel selection, then time one
    torch.cuda.synchronize(device)
    t = time.perf_counter()
    x = work(x)
    torch.cuda.synchronize(device)
    for _ in range(max(1, round(ms / 1e3 / (time.perf_counter() - t)))):
        x = work(x)
    t = time.perf_counter()
    update(0)
    behind = (time.perf_counter() - t) * 1e3
    torch.cuda.synchronize(device)
    return behind


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--depth", type=int, default=DEPTH)
    p.add_argument("--updates", type=int, default=50)
    p.add_argument("--busy-ms", type=float, default=20.0, help="device work queued before the second figure")
    args = p.parse_args()
    device = resolve_device(args.device)
    G = build_generator(GeneratorConfig(depth=args.depth, ngf=args.ngf)).to(device, memory_format=torch.channels_last)
    params = sum(t.numel() for t in G.parameters())
    print(f"{device}, generator ngf {args.ngf} crop {args.crop}: {params / 1e6:.1f} M parameters")
    rows = []
    for name, make in (("AveragedModel.update_parameters (before)", torch_update), ("ours (trainer/ema.py)", ours)):
        update = make(G, 0.999)
        for step in range(3):
            update(step)
        sync(device)
        t = time.perf_counter()
        for step in range(args.updates):
            update(step)
        sync(device)
        idle = (time.perf_counter() - t) / args.updates * 1e3
        behind = behind_queued_work(update, device, args.busy_ms) if device.type == "cuda" else None
        rows.append((idle, behind))
        print(f"  {name}: {idle:.2f} ms per update" + (f"; {behind:.2f} ms on the host behind {args.busy_ms:g} ms of queued work"
                                                       if behind is not None else ""), flush=True)
    (a, b), (c, d) = rows
    print(f"ours vs before: {a / c:.2f}x the speed per update" + (f"; host time behind queued work {b:.2f} -> {d:.2f} ms" if b else ""))


if __name__ == "__main__":
    main()
