"""Training input samples/s: the loader alone, as `vrestore train` builds it, in one run.

Rows, each on the sample train split (made by bench/recipe.py if missing), alternating over
`--rounds` so a busy moment hits every row alike (median and range printed):
- T-frame clips as before this round: clips-layout shards (every frame stored T times), each
  frame decoded and blurred whole, then cropped (the baseline);
- frames-layout shards (each frame once, windows by index), whole-frame decode;
- frames-layout shards, region decode (the crop plus the blur's margin): what training runs;
- the same two at T = 1, for the T = 5 / T = 1 ratio;
- with --dataloader, a PyTorch DataLoader (webdataset + PIL + the project's torch blur, noise
  and boxes) at T = 1, the plain-PyTorch way to feed the same step.

    python bench/loader.py                      # T = 5, crop 64, batch 16, 2 threads
    python bench/loader.py --device cuda --threads 4
"""
import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from vrestore.pipeline.degrade.degradations import DegradationSpec, add_boxes, add_noise, blur
from recipe import ensure_data  # bench/recipe.py, beside this script
from vrestore.pipeline.dataset.manifest import read_manifest
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


def measure(make, batches: int, consume) -> float:
    """Samples/s of a fresh loader over `batches` batches, after 3 to warm up."""
    return frames_per_second(endless(make), batches, 3, consume)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("demo_output"))
    ap.add_argument("--frames", type=int, default=5, help="T of the multi-frame rows")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="DALI threads (= DataLoader workers)")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dataloader", action="store_true", help="add the DataLoader row (T = 1)")
    args = ap.parse_args()
    device, spec, t = torch.device(args.device), DegradationSpec(), args.frames
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    clips = load_shard_set(ensure_data(args.root, t, layout="clips")[1] / "train")
    frames = ensure_data(args.root, t)[1] / "train"
    single = load_shard_set(ensure_data(args.root, 1)[1] / "train")

    def dali(shards, region):
        def make():
            return train_batches(shards, spec, args.batch_size, args.crop, device, num_threads=args.threads, region=region)
        return make

    def take_dali(b):
        sync()
        return b["degraded"].shape[0]

    rows = {
        f"T = {t}, clips shards, whole frames (before)": dali(clips, False),
        f"T = {t}, frames shards, whole frames": dali(load_shard_set(frames, t), False),
        f"T = {t}, frames shards, region decode (train)": dali(load_shard_set(frames, t), True),
        "T = 1, whole frames (before)": dali(single, False),
        "T = 1, region decode (train)": dali(single, True),
    }
    consume = dict.fromkeys(rows, take_dali)
    if args.dataloader:
        generator = torch.Generator(device=device).manual_seed(0)

        def take_base(b):
            clean, degraded = degraded_batch(*b, spec, generator, device)
            sync()
            return degraded.shape[0]

        rows["T = 1, DataLoader + webdataset + PIL"] = lambda: baseline_loader(single, spec, args.batch_size, args.crop, args.threads)
        consume["T = 1, DataLoader + webdataset + PIL"] = take_base
    figures = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, make in rows.items():
            figures[name].append(measure(make, args.batches, consume[name]))
    print(f"{clips.num_samples} clips of {t} / {frames_stored(frames)} stored frames (train split), batch {args.batch_size}, "
          f"crop {args.crop}, {args.threads} threads, device {args.device}, {args.rounds} alternating rounds of {args.batches} batches")
    print(f"{'input':<48} {'samples/s':>9} {'range':>13}")
    median = {name: statistics.median(v) for name, v in figures.items()}
    for name, v in figures.items():
        print(f"{name:<48} {median[name]:>9.0f} {min(v):>6.0f}-{max(v):<6.0f}")
    names = list(rows)
    print(f"T = {t}: region decode of frames shards / before: {median[names[2]] / median[names[0]]:.2f}x "
          f"(layout alone {median[names[1]] / median[names[0]]:.2f}x); T = {t} / T = 1 (train): {median[names[2]] / median[names[4]]:.2f}")


def frames_stored(folder) -> int:
    return read_manifest(folder)["num_samples"]


if __name__ == "__main__":
    main()
