"""The demo's training recipe, compared at equal training minutes on one machine: each row is
`vrestore train` with the demo's former settings (T = 5, 64 px crops, a 16-wide U-Net of depth
6, lr 1e-3, batch 16, EMA) and one or two of them changed. Scored on whole frames as `vrestore
restore` sees them (bench/quality.py's degraded copies, seed 1): chosen on the validation split,
reported on the test split (sources neither trained nor validated on), with the restore speed
at 320x240 on this machine beside each row (a recipe that restores a real 320x240 clip below
--min-fps frames/s end to end is not a candidate for the demo's default).

    python bench/recipe.py --minutes 10                      # every row in ROWS, the demo's 10 minutes
    python bench/recipe.py --minutes 10 --only base w24 --keep   # rerun two, keep the other rows
    python bench/recipe.py --minutes 10 --only base --repeat 2   # a second run of a row (base#2)

Each run keeps its folder (WORK/NAME: checkpoint.pt, generator.pth = the EMA weights scored
here, metrics.jsonl); WORK/recipe.json collects the rows.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from quality import degraded_set, evaluate, model_cost, restore_speed  # bench/quality.py, beside this script
from vrestore.pipeline.dataset.sample_videos import SampleConfig, make_sample_videos
from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.inference.restorer import Restorer

# The demo's recipe (scripts/demo.sh trains with these; T comes from its shards_t5)
# (the base row: the demo until 2026-12-07, lr 1e-3; the demo now trains at lr 2e-3, the row
# validation chose)
DEMO = ["--crop", "64", "--ngf", "16", "--ndf", "16", "--batch-size", "16", "--lr", "1e-3", "--val-every", "500", "--quiet"]

# Each row: the demo's options with these after them (click keeps an option's last value).
# --depth 5 where the crop is 96 (a multiple of 32, not of 64); "d5" alone separates the depth
# from the crop.
ROWS = {
    "base": [],
    "w24": ["--ngf", "24", "--ndf", "24"],
    "w32": ["--ngf", "32", "--ndf", "32"],
    "c96": ["--crop", "96", "--depth", "5"],
    "d5": ["--depth", "5"],
    "nafnet": ["--arch", "nafnet", "--enc-blocks", "0,1,1,2", "--dec-blocks", "1,1,1,0"],
    "lr2e-3": ["--lr", "2e-3"],
    "w24-lr2e-3": ["--ngf", "24", "--ndf", "24", "--lr", "2e-3"],
    "w24-c96": ["--ngf", "24", "--ndf", "24", "--crop", "96", "--depth", "5"],
    "w24-d5": ["--ngf", "24", "--ndf", "24", "--depth", "5"],
    "w32-d5": ["--ngf", "32", "--ndf", "32", "--depth", "5"],
    "w24-d5-lr2e-3": ["--ngf", "24", "--ndf", "24", "--depth", "5", "--lr", "2e-3"],
    # the GAN term's share: L1 weighted 10x (Adam is blind to the loss's scale, so this is the
    # GAN term at a tenth, not a larger step)
    "l1x10": ["--lambda-l1", "1000"],
}


def ensure_data(root: Path, clip_len: int = 1, layout: str = "frames") -> tuple:
    """The sample videos and their train/val shards (make-shards --clip-len, --layout), made if
    missing."""
    name = "shards" if clip_len == 1 else f"shards_t{clip_len}" + ("" if layout == "frames" else f"_{layout}")
    videos, shards = root / "videos", root / name
    if not videos.exists():
        make_sample_videos(SampleConfig(videos))
    for split in ("train", "val"):
        manifest = shards / split / "manifest.json"
        if manifest.exists() and clip_len > 1 and json.loads(manifest.read_text())["params"].get("layout", "clips") != layout:
            raise SystemExit(f"{shards / split} holds shards of another --layout (made before the frames layout?); remove it")
        if not manifest.exists():
            subprocess.run([str(Path(sys.executable).with_name("make-shards")), str(videos), str(shards / split), "--quiet",
                            "--split-file", str(videos / "ucfTrainTestlist" / f"{split}list01.txt"), "--clip-len", str(clip_len),
                            "--layout", layout], check=True)
    return videos, shards


def eval_sets(videos: Path, work: Path) -> dict:
    """{"val": ..., "test": ...}: each split's videos degraded once (seed 1) with box masks."""
    lists = videos / "ucfTrainTestlist"
    return {split: degraded_set(videos, lists / f"{split}list01.txt", work / split, DegradationSpec(), seed=1) for split in ("val", "test")}


def train_run(shards: Path, run: Path, minutes: float, *options: str) -> None:
    """`vrestore train` with the demo's settings for `minutes` (options after them win)."""
    subprocess.run([str(Path(sys.executable).with_name("vrestore")), "train", "--shards", str(shards / "train"),
                    "--val-shards", str(shards / "val"), "--out", str(run), "--overwrite", *DEMO,
                    "--max-minutes", str(minutes), *options], check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("demo_output"), help="sample videos and shards (made if missing)")
    p.add_argument("--work", type=Path, default=Path("demo_output/recipe"))
    p.add_argument("--minutes", type=float, default=10.0, help="training minutes per run (the demo's: 10)")
    p.add_argument("--only", nargs="+", choices=list(ROWS), default=list(ROWS))
    p.add_argument("--repeat", type=int, default=1, help="runs per row; the second is NAME#2, with another --seed")
    p.add_argument("--keep", action="store_true", help="keep WORK/recipe.json's rows of the same minutes not rerun now")
    p.add_argument("--min-fps", type=float, default=25.0, help="restore frames/s at 320x240 a default must reach")
    args = p.parse_args()
    videos, shards = ensure_data(args.root, 5)
    sets = eval_sets(videos, args.work)
    clip = next(c for c, _, _ in sets["test"] if "Bikes" in str(c))  # real footage, 320x240
    table = args.work / "recipe.json"
    rows = {"degraded input": {split: evaluate(("identity", None), v) for split, v in sets.items()}}
    if args.keep and table.is_file():
        old = json.loads(table.read_text())
        if old["minutes"] == args.minutes:
            rows |= old["rows"]
    for name in args.only:
        for k in range(args.repeat):
            key, seed = (name, []) if k == 0 else (f"{name}#{k + 1}", ["--seed", str(k)])
            run = args.work / key.replace("#", "_")
            t0 = time.monotonic()
            train_run(shards, run, args.minutes, *ROWS[name], *seed)
            log = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
            steps = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
            restorer = Restorer(run / "generator.pth", "cpu")
            row = {split: evaluate(("generator", restorer), v) for split, v in sets.items()}
            row |= model_cost(run / "generator.pth") | restore_speed(run / "generator.pth", clip, run)
            row |= {"options": ROWS[name] + seed, "steps": steps, "val_log": [(v["step"], v["val"]["psnr"]) for v in log]}
            rows[key] = row
            print(f"{key}: {steps} steps; test PSNR {row['test']['psnr']:.2f}, boxes {row['test']['psnr_boxes']:.2f}; "
                  f"restore {row['restore_fps']:.1f} frames/s; trained and scored in {time.monotonic() - t0:.0f} s", flush=True)
            table.write_text(json.dumps({"minutes": args.minutes, "rows": rows}, indent=1) + "\n")  # after every row

    base_in = rows["degraded input"]
    trained = [k for k in rows if k != "degraded input"]
    fast = [k for k in trained if rows[k]["restore_fps"] >= args.min_fps]
    best = max(fast, key=lambda k: rows[k]["val"]["psnr"]) if fast else None
    print(f"\nT = 5, {args.minutes:g} training minutes each on this machine; chosen on validation PSNR among rows restoring "
          f">= {args.min_fps:g} frames/s: {best}")
    print(f"degraded input: val PSNR {base_in['val']['psnr']:.2f}; test PSNR {base_in['test']['psnr']:.2f}, "
          f"boxes {base_in['test']['psnr_boxes']:.2f}, SSIM {base_in['test']['ssim']:.4f}")
    print(f"{'row':<15} {'steps':>6} {'params':>7} {'restore fps':>11}  {'val PSNR':>8}  |  {'test PSNR':>9} {'gain':>5} "
          f"{'boxes':>6} {'outside':>7} {'temporal':>8} {'SSIM':>6}")
    for k in trained:
        r, t = rows[k], rows[k]["test"]
        print(f"{k:<15} {r['steps']:6d} {r['params_M']:6.2f}M {r['restore_fps']:11.1f}  {r['val']['psnr']:8.2f}  |  {t['psnr']:9.2f} "
              f"{t['psnr'] - base_in['test']['psnr']:+5.2f} {t['psnr_boxes']:6.2f} {t['psnr_outside']:7.2f} {t['temporal_psnr']:8.2f} "
              f"{t['ssim']:6.4f}")


if __name__ == "__main__":
    main()
