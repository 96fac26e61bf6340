"""The whole trainer (DALI input, step, EMA, logging, validation and saves) against its two
parts alone, same model, batch and shards, one run:

    python bench/train_e2e.py --shards demo_output/shards/train --device cuda --crop 128 --ngf 64 --steps 400
    python bench/train_e2e.py --shards demo_output/shards/train --device cuda --crop 128 --ngf 64 --steps 400 --cuda-graphs

- input alone: the trainer's batches (DALI decode, blur, crop, flip, noise; torch boxes) with
  no step, the most the trainer could reach;
- step alone: the trainer's step on one synthetic batch already on the device (as
  bench/train_step.py times it), with the same precision and `--cuda-graphs` setting;
- whole trainer: `trainer.train`, its rate counted from its first loss readout to its last
  step, so start-up and the final save are left out; validations and saves in between are in
  (they are part of training).
The whole trainer can reach the slower of the two parts at best, where they overlap fully;
where they share one processor (the CPU; on a GPU, DALI's kernels and the step's), the serial
bound 1 / (1/input + 1/step) is what it can reach. Both shares are printed.
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch

from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.devices import amp_dtype, resolve_device
from train_step import batch, images_per_s, make_step, sync  # bench/train_step.py, beside this script
from vrestore.trainer.config import TrainConfig
from vrestore.pipeline.dataset.shard_set import load_shard_set
from vrestore.trainer.dali_input import train_batches
from vrestore.trainer.train import train


def input_alone(shards, device, batch_size, crop, num_threads, prefetch, n) -> float:
    batches = iter(train_batches(load_shard_set(shards), DegradationSpec(), batch_size, crop, device,
                                 num_threads=num_threads, prefetch=prefetch))
    for _ in range(5):  # DALI's first batches fill its queues
        next(batches)
    sync(device)
    t = time.perf_counter()
    for _ in range(n):
        b = next(batches)
    sync(device)
    return n * b["clean"].shape[0] / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--amp", default="auto", help="as the trainer's --amp")
    p.add_argument("--cuda-graphs", action="store_true", help="as the trainer's --cuda-graphs (one GPU)")
    p.add_argument("--num-threads", type=int, default=4, help="DALI threads")
    p.add_argument("--prefetch", type=int, default=2, help="DALI batches prepared ahead")
    p.add_argument("--val-interval", type=float, default=60.0)
    args = p.parse_args()
    device = resolve_device(args.device)
    dtype = amp_dtype(args.amp, device)
    fed = input_alone(args.shards, device, args.batch_size, args.crop, args.num_threads, args.prefetch, min(args.steps, 100))
    model = make_step(device, args.crop, args.ngf, args.ngf, True, dtype, graphed=args.cuda_graphs)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer sets it
    alone = images_per_s(model, batch(device, args.batch_size, args.crop, True), device, 10, 50)
    del model
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(args.shards, out=Path(out), crop=args.crop, ngf=args.ngf, ndf=args.ngf, batch_size=args.batch_size,
                          max_steps=args.steps, device=str(device), amp=args.amp, cuda_graphs=args.cuda_graphs,
                          num_threads=args.num_threads, prefetch=args.prefetch, log_every=50, val_interval=args.val_interval,
                          progress=False)
        result = train(cfg)
    whole = result.images_per_s
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    precision = str(dtype).split(".")[-1] if dtype else "fp32"
    print(f"{device} ({name}), crop {args.crop}, ngf {args.ngf}, batch {args.batch_size}, {precision}"
          f"{', cuda graphs' if args.cuda_graphs else ''}: input alone {fed:.1f} img/s, step alone {alone:.1f} img/s, "
          f"whole trainer {whole:.1f} img/s over {result.step} steps = {whole / alone:.0%} of the step alone, "
          f"{whole / min(fed, alone):.0%} of the slower part, {whole * (1 / fed + 1 / alone):.0%} of the serial bound")


if __name__ == "__main__":
    main()
