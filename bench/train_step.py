"""Images/s of the full pix2pix step (G forward, D step, G step): the trainer's settings against
a plain baseline, and per-rank scaling from 1 to 2 processes. One run, ratios printed.

    python bench/train_step.py                      # CPU: small width so it finishes in minutes
    python bench/train_step.py --device cuda --ngf 64 --batch-size 16 --crops 128 256

Batches are synthetic tensors already on the device, so the figures are the step alone (the
input pipeline has its own benchmark, bench/loader.py).
  baseline  fp32, NCHW (contiguous)
  trainer   channels_last + autocast (bf16 on GPUs that have it, else fp16 with a GradScaler;
            on the CPU bf16, which is what `--amp bf16` would run)
Scaling runs the trainer setting in 1 and in 2 gloo/NCCL processes (DDP, one thread each on
the CPU) and reports total images/s.
"""
import argparse
import os
import socket
import time

import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from models import DiscriminatorConfig, GANLoss, GeneratorConfig, build_discriminator, build_generator
from pipeline.devices import resolve_device
from trainer import distributed
from trainer.pix2pix_step import Pix2Pix


def make_step(device, crop, ngf, ndf, channels_last, dtype, ddp=False):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    G = build_generator(GeneratorConfig.for_crop(crop, ngf=ngf)).to(device, memory_format=fmt)
    D = build_discriminator(DiscriminatorConfig(ndf=ndf)).to(device, memory_format=fmt)
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    G_t = DDP(G, forward_sync_buffers=False) if ddp else G
    D_t = DDP(D, forward_sync_buffers=False) if ddp else D
    return Pix2Pix(G_t, D_t, D, opt_G, opt_D, scaler, GANLoss().to(device), 100.0, device, dtype)


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
    p.add_argument("--no-scaling", action="store_true")
    args = p.parse_args()
    device = resolve_device(args.device, 0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; ngf {args.ngf}, ndf {args.ndf}, batch {args.batch_size}, {args.steps} timed steps after {args.warmup}")
    for crop in args.crops:
        base = images_per_s(make_step(device, crop, args.ngf, args.ndf, False, None), batch(device, args.batch_size, crop, False), device, args.warmup, args.steps)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        dtype = trainer_dtype(device)
        fast = images_per_s(make_step(device, crop, args.ngf, args.ndf, True, dtype), batch(device, args.batch_size, crop, True), device, args.warmup, args.steps)
        peak = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else ""
        cl_fp32 = images_per_s(make_step(device, crop, args.ngf, args.ndf, True, None), batch(device, args.batch_size, crop, True), device, args.warmup, args.steps)
        print(f"crop {crop}: fp32 NCHW {base:.1f} img/s | channels_last fp32 {cl_fp32:.1f} ({cl_fp32 / base:.2f}x) | "
              f"channels_last + {str(dtype).split('.')[-1]} {fast:.1f} ({fast / base:.2f}x){peak}")
    if not args.no_scaling:
        one, two = scaling(args, 1), scaling(args, 2)
        print(f"scaling at crop {args.crops[0]} (channels_last + {str(trainer_dtype(device)).split('.')[-1]}, 1 thread per process): "
              f"1 process {one:.1f} img/s, 2 processes {two:.1f} img/s ({two / one:.2f}x, efficiency {two / one / 2:.0%})")


if __name__ == "__main__":
    main()
