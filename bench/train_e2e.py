"""The whole trainer (DALI input, step, logging, validation and saves) against the step alone
on synthetic batches, same model and batch, one run:

    python bench/train_e2e.py --shards demo_output/shards/train --device cuda --crop 128 --ngf 64 --steps 400

The trainer's rate counts from its first loss readout to its last step, so start-up and the
final save are left out; validations and saves in between are in (they are part of training).
"""
import argparse
import tempfile
from pathlib import Path

import torch

from pipeline.devices import resolve_device
from train_step import batch, images_per_s, make_step, trainer_dtype  # bench/train_step.py, beside this script
from trainer.config import TrainConfig
from trainer.train import train


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--num-threads", type=int, default=4, help="DALI threads")
    p.add_argument("--val-interval", type=float, default=60.0)
    args = p.parse_args()
    device = resolve_device(args.device)
    model = make_step(device, args.crop, args.ngf, args.ngf, True, trainer_dtype(device) if device.type == "cuda" else None)
    alone = images_per_s(model, batch(device, args.batch_size, args.crop, True), device, 10, 50)
    del model
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(args.shards, out=Path(out), crop=args.crop, ngf=args.ngf, ndf=args.ngf, batch_size=args.batch_size,
                          max_steps=args.steps, device=str(device), num_threads=args.num_threads, log_every=50,
                          val_interval=args.val_interval, progress=False)
        result = train(cfg)
    print(f"{device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), crop {args.crop}, ngf {args.ngf}, "
          f"batch {args.batch_size}: step alone {alone:.1f} img/s, whole trainer {result.images_per_s:.1f} img/s "
          f"({result.images_per_s / alone:.0%} of the step alone) over {result.step} steps")


if __name__ == "__main__":
    main()
