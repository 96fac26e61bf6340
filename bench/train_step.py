"""Images/s of the full pix2pix step (G forward, D step, G step), every variant in one run with
ratios to the first, and per-rank scaling from 1 to 2 processes.

    python bench/train_step.py                      # CPU: small width so it finishes in minutes
    python bench/train_step.py --device cuda --ngf 64 --ndf 64 --batch-size 16 --crops 128 256

Batches are synthetic tensors already on the device, so the figures are the step alone (the
input pipeline has its own benchmark, bench/loader.py; bench/train_e2e.py sets the whole
trainer beside this). Variants:
  legacy fp32 NCHW      the step before it went sync-free: foreach Adam, the gradient norm read
                        on the host twice a step, every buffer cloned (the baseline)
  legacy fp32 / bf16    the same, channels_last, without and with autocast
  fp32 / bf16           the trainer's step: fused Adam, skip decided on the device, buffers kept
                        in one flat copy per dtype
  bf16 + compile        the same with torch.compile'd networks (the first steps compile)
  fp32 / bf16 + graphs  the trainer's --cuda-graphs: the whole step as one CUDA graph (GPU only)
Autocast means bf16 on GPUs that have it (else fp16 with a GradScaler) and bf16 on the CPU,
which is what `--amp bf16` runs there.
"""
import argparse
import os
import socket
import time

import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from vrestore.models import DiscriminatorConfig, GANLoss, GeneratorConfig, build_discriminator, build_generator
from vrestore.pipeline.devices import resolve_device
from vrestore.trainer import distributed
from vrestore.trainer.pix2pix_step import GraphedStep, Pix2Pix, make_adam


class LegacyPix2Pix(Pix2Pix):
    """The step as it was: two host reads of the gradient norm and a clone of every buffer."""

    def step(self, opt):
        self.scaler.unscale_(opt)
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if bool(torch.isfinite(torch.nn.utils.get_total_norm(grads))):  # a CPU-GPU sync
            self.scaler.step(opt)
        return torch.zeros((), device=self.device)

    def optimize(self, batch):
        # the clone of every buffer it made each step (copied back only after a skip, which
        # these finite synthetic batches never cause)
        for net in (self.G, self.D_frozen):
            for b in net.buffers():
                b.clone()
        return super().optimize(batch)


def make_step(device, crop, ngf, ndf, channels_last, dtype, ddp=False, legacy=False, compile_mode=None, graphed=False):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    G = build_generator(GeneratorConfig(ngf=ngf)).to(device, memory_format=fmt)
    D = build_discriminator(DiscriminatorConfig(ndf=ndf)).to(device, memory_format=fmt)
    if legacy:
        opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
        opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    else:
        opt_G, opt_D = make_adam(G.parameters(), 2e-4, 0.5, graphed), make_adam(D.parameters(), 2e-4, 0.5, graphed)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    G_t = DDP(G, forward_sync_buffers=False) if ddp else G
    D_t = DDP(D, forward_sync_buffers=False) if ddp else D
    D_f = D
    if compile_mode:
        G_t, D_t, D_f = (torch.compile(m, mode=compile_mode) for m in (G_t, D_t, D))
    cls = LegacyPix2Pix if legacy else Pix2Pix
    model = cls(G_t, D_t, D_f, opt_G, opt_D, scaler, GANLoss().to(device), 100.0, device, dtype)
    if legacy:
        model.guard.groups = {}  # its own clones stand in for the flat guard
    return GraphedStep(model) if graphed else model


def batch(device, n, crop, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(n, 3, crop, crop, device=device).mul(2).sub(1).contiguous(memory_format=fmt)
    return {"clean": x, "degraded": (x * 0.8).contiguous(memory_format=fmt)}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_s(model, b, device, warmup, steps):
    for _ in range(warmup):
        model.optimize(b)
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        model.optimize(b)
    sync(device)
    return steps * b["clean"].shape[0] / (time.perf_counter() - t)


def trainer_dtype(device):
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def rank_worker(rank, world, port, args, results):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    d = distributed.setup(args.device) if world > 1 else distributed.Dist(device=resolve_device(args.device, 0))
    try:
        model = make_step(d.device, args.crops[0], args.ngf, args.ndf, True, trainer_dtype(d.device), ddp=world > 1)
        r = images_per_s(model, batch(d.device, args.batch_size, args.crops[0], True), d.device, args.warmup, args.steps)
        results[rank] = r
    finally:
        distributed.teardown(d)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scaling(args, world):
    results = mp.Manager().dict()
    mp.spawn(rank_worker, args=(world, free_port(), args, results), nprocs=world)
    return sum(results.values())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--crops", type=int, nargs="+", default=[128])
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--ndf", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--compile-warmup", type=int, default=3, help="extra untimed steps for compiled variants")
    p.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    p.add_argument("--no-scaling", action="store_true")
    args = p.parse_args()
    device = resolve_device(args.device, 0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; ngf {args.ngf}, ndf {args.ndf}, batch {args.batch_size}, {args.steps} timed steps after {args.warmup}")
    dtype = trainer_dtype(device)
    amp = str(dtype).split(".")[-1]
    variants = [
        ("legacy fp32 NCHW", dict(channels_last=False, dtype=None, legacy=True)),
        ("legacy fp32", dict(channels_last=True, dtype=None, legacy=True)),
        (f"legacy {amp}", dict(channels_last=True, dtype=dtype, legacy=True)),
        ("fp32", dict(channels_last=True, dtype=None)),
        (amp, dict(channels_last=True, dtype=dtype)),
        (f"{amp} + compile", dict(channels_last=True, dtype=dtype, compile_mode="default")),
    ]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer sets it: fixed shapes, the fastest kernels found once
        variants += [("fp32 + graphs", dict(channels_last=True, dtype=None, graphed=True)),
                     (f"{amp} + graphs", dict(channels_last=True, dtype=dtype, graphed=True))]
    chosen = [v for v in variants if not args.only or v[0] in args.only]
    for crop in args.crops:
        results = []
        for name, kw in chosen:
            torch.manual_seed(0)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            model = make_step(device, crop, args.ngf, args.ndf, kw["channels_last"], kw["dtype"], legacy=kw.get("legacy", False),
                              compile_mode=kw.get("compile_mode"), graphed=kw.get("graphed", False))
            warmup = args.warmup + (args.compile_warmup if kw.get("compile_mode") else 0)
            rate = images_per_s(model, batch(device, args.batch_size, crop, kw["channels_last"]), device, warmup, args.steps)
            peak = f", {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else ""
            results.append((name, rate, peak))
            print(f"  crop {crop} {name}: {rate:.1f} img/s{peak}", flush=True)
        base = results[0][1]
        print(f"crop {crop}, batch {args.batch_size}: " + " | ".join(f"{n} {r:.1f} ({r / base:.2f}x)" for n, r, _ in results), flush=True)
    if not args.no_scaling:
        one, two = scaling(args, 1), scaling(args, 2)
        print(f"scaling at crop {args.crops[0]} (channels_last + {str(trainer_dtype(device)).split('.')[-1]}, 1 thread per process): "
              f"1 process {one:.1f} img/s, 2 processes {two:.1f} img/s ({two / one:.2f}x, efficiency {two / one / 2:.0%})")


if __name__ == "__main__":
    main()
