"""Training input frames/s: the DALI pipeline against a plain PyTorch DataLoader.

Both read the same shards, decode, blur the full frame, crop 128 and flip, add noise and
boxes, and hand over the same batch (clean, degraded) as NCHW floats. The baseline uses
`webdataset` + PIL decode + the project's torch blur/noise/boxes in DataLoader workers; DALI
gets as many threads as the DataLoader gets workers. One run, ratio printed.

    python bench/loader.py --shards demo_output/shards/train [--device cuda]
"""
import argparse
import time

import numpy as np
import torch
import webdataset as wds

from vrestore.pipeline.degrade.degradations import DegradationSpec, add_boxes, add_noise, blur
from vrestore.pipeline.dataset.shard_set import load_shard_set
from vrestore.trainer.dali_input import train_batches


def baseline_loader(shards, spec, batch_size, crop, workers):
    r = spec.blur_window // 2

    def prepare(sample):
        img = torch.from_numpy(np.array(sample["jpg"])).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
        _, _, h, w = img.shape
        y, x = np.random.randint(0, h - crop + 1), np.random.randint(0, w - crop + 1)
        # Blur only the crop plus a margin of the mirrored frame: the same pixels as blurring
        # the full frame (what DALI does), at a fraction of the cost.
        padded = torch.nn.functional.pad(img, (r, r, r, r), mode="reflect")
        window = padded[..., y : y + crop + 2 * r, x : x + crop + 2 * r]
        blurred = blur(window, spec)[..., r:-r, r:-r]
        clean = img[..., y : y + crop, x : x + crop]
        if np.random.rand() < 0.5:
            clean, blurred = clean.flip(-1), blurred.flip(-1)
        return clean[0], blurred[0]

    ds = (
        wds.WebDataset(shards.tars, shardshuffle=False, empty_check=False).shuffle(1024)
        .decode("pil").map(prepare)
    )
    return torch.utils.data.DataLoader(ds.batched(batch_size), batch_size=None, num_workers=workers, persistent_workers=True)


def degraded_batch(clean, blurred, spec, generator, device):
    clean, blurred = clean.to(device), blurred.to(device)
    degraded, mask = add_boxes(add_noise(blurred, spec, generator), spec, generator)
    return clean.div(127.5).sub(1), degraded.div(127.5).sub(1)


def frames_per_second(batches, n_batches, warmup, consume):
    it = iter(batches)
    for _ in range(warmup):
        consume(next(it))
    t, frames = time.perf_counter(), 0
    for _ in range(n_batches):
        frames += consume(next(it))
    return frames / (time.perf_counter() - t)


def endless(make):
    while True:
        yield from make()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", required=True)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers = DALI threads")
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device, spec = torch.device(args.device), DegradationSpec()
    shards = load_shard_set(args.shards)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)

    dali = train_batches(shards, spec, args.batch_size, args.crop, device, num_threads=args.workers)

    def take_dali(b):
        sync()
        return b["degraded"].shape[0]

    generator = torch.Generator(device=device).manual_seed(0)
    base = baseline_loader(shards, spec, args.batch_size, args.crop, args.workers)

    def take_base(b):
        clean, degraded = degraded_batch(*b, spec, generator, device)
        sync()
        return degraded.shape[0]

    dali_fps = frames_per_second(endless(lambda: dali), args.batches, 5, take_dali)
    base_fps = frames_per_second(endless(lambda: base), args.batches, 5, take_base)
    print(f"{shards.num_samples} frames in shards, batch {args.batch_size}, crop {args.crop}, "
          f"{args.workers} workers/threads, device {args.device}")
    print(f"{'loader':<34} {'frames/s':>9}")
    print(f"{'DataLoader + webdataset + PIL':<34} {base_fps:>9.0f}")
    print(f"{'DALI (this project)':<34} {dali_fps:>9.0f}")
    print(f"ratio DALI / DataLoader: {dali_fps / base_fps:.2f}")


if __name__ == "__main__":
    main()
