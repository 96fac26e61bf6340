"""Restoring from neighbouring frames: generators that see T = 1, 3 and 5 frames, each trained
for the same minutes on this machine with the demo's settings, scored as `vrestore restore`
runs them (sliding windows, mirrored ends), next to the degraded input: PSNR, SSIM, PSNR inside
and outside the boxes, and temporal PSNR. T is chosen on the validation split and reported on
the test split (sources neither trained nor validated on).

    python bench/frames.py                      # 4 minutes per T
    python bench/frames.py --minutes 10 --frames 1 3

One set of shards serves every T: make-shards --clip-len (the largest T) stores each frame once,
and `vrestore train --frames T` reads windows of T from it. Made from the sample videos if
missing.
"""
import argparse
import json
import time
from pathlib import Path

import torch

from quality import evaluate, print_table  # bench/quality.py, beside this script
from recipe import ensure_data, eval_sets, train_run
from vrestore.pipeline.inference.restorer import Restorer


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("demo_output"))
    p.add_argument("--work", type=Path, default=Path("demo_output/frames"))
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--frames", type=int, nargs="+", default=[1, 3, 5])
    p.add_argument("--extra", default="", help="more `vrestore train` options for every run, space-separated")
    args = p.parse_args()
    videos = ensure_data(args.root)[0]
    sets = eval_sets(videos, args.work)
    rows = {"degraded input": {split: evaluate(("identity", None), v) for split, v in sets.items()}}
    shards = ensure_data(args.root, max(args.frames))[1]
    for t in args.frames:
        run = args.work / f"t{t}"
        t0 = time.monotonic()
        train_run(shards, run, args.minutes, "--frames", str(t), *args.extra.split())
        steps = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
        restorer = Restorer(run / "generator.pth", "cpu")
        rows[f"generator, T = {t} ({steps} steps)"] = {split: evaluate(("generator", restorer), v) for split, v in sets.items()}
        print(f"T = {t}: {steps} steps, trained and scored in {time.monotonic() - t0:.0f} s", flush=True)
    best = max((k for k in rows if k != "degraded input"), key=lambda k: rows[k]["val"]["psnr"])
    for split in ("val", "test"):
        print(f"\n{split}: {len(sets[split])} videos, {rows['degraded input'][split]['frames']} frames; {args.minutes:g} training minutes "
              f"per T on this machine" + (f"; chosen on validation PSNR: {best}" if split == "val" else " (reported)"))
        print_table({k: r[split] for k, r in rows.items()})
    (args.work / "frames.json").write_text(json.dumps({"minutes": args.minutes, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
