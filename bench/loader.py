"""Training input samples/s: the loader alone, as `vrestore train` builds it, in one run.

Rows, each on the sample train split (made by bench/recipe.py if missing), alternating over
`--rounds` so a busy moment hits every row alike (median and range printed):
- before this round (the baseline): clips-layout shards (every frame stored T times), each
  frame decoded and blurred whole, then cropped, then noise and boxes in torch frame by frame;
- the same DALI graph with this round's torch side (noise and boxes for all T frames in one
  call each, in one torch thread);
- frames-layout shards (each frame once, windows by index), whole-frame decode;
- frames-layout shards, region decode (the crop plus the blur's margin): what training runs;
- T = 1 before this round and as training runs it now, for the T = 5 / T = 1 ratio;
- with --dataloader, a PyTorch DataLoader (webdataset + PIL + the project's torch blur, noise
  and boxes) at T = 1, the plain-PyTorch way to feed the same step.

    python bench/loader.py                      # T = 5, crop 64, batch 16, 2 threads
    python bench/loader.py --device cuda --threads 4
"""
import argparse
import gc
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from vrestore.pipeline.degrade.degradations import DegradationSpec, add_boxes, add_noise, blur, box_mask
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


def before_this_round(batches, frames: int, spec, device):
    """Batches as `vrestore train` made them before this round, for the baseline row: DALI's
    whole-frame graph (kept as region=False), then noise and boxes drawn frame by frame in torch
    (T calls each, torch's default threads), as trainer/dali_input.py did."""
    generator = torch.Generator(device=device).manual_seed(0)
    for (out,) in batches.iterator:
        clean = out["clean"].to(device).permute(0, 3, 1, 2)
        frame_hw = out["frame_shape"][:, :2].to(device)
        stack, masks = [], []
        for i in range(frames):
            degraded = out["degraded"][:, i].to(device).permute(0, 3, 1, 2).float()
            degraded = add_noise(degraded, spec, generator)
            mask = box_mask(*degraded.shape[:1], *degraded.shape[2:], spec, generator, device, frame_hw)
            stack.append(torch.where(mask, torch.full_like(degraded, float(spec.box_value)), degraded))
            masks.append(mask)
        degraded = stack[0] if frames == 1 else torch.cat(stack, dim=1).contiguous(memory_format=torch.channels_last)
        yield {"clean": clean.float().div_(127.5).sub_(1.0), "degraded": degraded.div_(127.5).sub_(1.0), "mask": masks[frames // 2]}


def measure(make, batches: int, consume) -> float:
    """Samples/s of a fresh loader over `batches` batches, after 3 to warm up; the loader (and
    its threads or worker processes) is gone before the next row runs."""
    rate = frames_per_second(endless(make), batches, 3, consume)
    gc.collect()
    return rate


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

    def before(shards, t):
        return lambda: before_this_round(dali(shards, False)(), t, spec, device)

    windows = load_shard_set(frames, t)  # the window index, built once for both rows
    rows = {
        f"T = {t}, before this round": before(clips, t),
        f"T = {t}, clips shards, whole frames": dali(clips, False),
        f"T = {t}, frames shards, whole frames": dali(windows, False),
        f"T = {t}, frames shards, region decode (train)": dali(windows, True),
        "T = 1, before this round": before(single, 1),
        "T = 1, region decode (train)": dali(single, True),
    }
    figures = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, make in rows.items():
            figures[name].append(measure(make, args.batches, take_dali))
    if args.dataloader:  # after the rounds: its worker processes are not left running beside them
        generator = torch.Generator(device=device).manual_seed(0)

        def take_base(b):
            clean, degraded = degraded_batch(*b, spec, generator, device)
            sync()
            return degraded.shape[0]

        loader = baseline_loader(single, spec, args.batch_size, args.crop, args.threads)
        figures["T = 1, DataLoader + webdataset + PIL"] = [frames_per_second(endless(lambda: loader), args.batches, 3, take_base)]
        del loader
    print(f"{clips.num_samples} clips of {t} / {frames_stored(frames)} stored frames (train split), batch {args.batch_size}, "
          f"crop {args.crop}, {args.threads} threads, device {args.device}, {args.rounds} alternating rounds of {args.batches} batches")
    print(f"{'input':<48} {'samples/s':>9} {'range':>13}")
    median = {name: statistics.median(v) for name, v in figures.items()}
    for name, v in figures.items():
        print(f"{name:<48} {median[name]:>9.0f} {min(v):>6.0f}-{max(v):<6.0f}")
    names = list(rows)
    print(f"T = {t}: train / before this round: {median[names[3]] / median[names[0]]:.2f}x; region decode / whole frames on the "
          f"same shards: {median[names[3]] / median[names[2]]:.2f}x; frames / clips layout, whole frames: "
          f"{median[names[2]] / median[names[1]]:.2f}x; T = {t} / T = 1 (train): {median[names[3]] / median[names[5]]:.2f}")


def frames_stored(folder) -> int:
    return read_manifest(folder)["num_samples"]


if __name__ == "__main__":
    main()
