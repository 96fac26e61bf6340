"""Generators compared at equal training time: the pix2pix U-Net and NAFNet-style U-Nets
(frames stacked at the input, or mixed inside by a temporal shift), T = 5, the demo's recipe
(64 px crops, lr 1e-3, EMA, batch 16) and data, the same seeds and minutes each on this machine.

    python bench/arch.py                       # 4 minutes per generator
    python bench/arch.py --minutes 8 --only unet nafnet-shift

Per generator: parameters, GFLOPs per 320x240 frame (torch's FLOP counter, as restore pads it),
training img/s, restore frames/s at 320x240 on this machine (model alone, and end to end:
decode, model, encode of a real 320x240 test clip), and the pooled scores (bench/quality.py's
evaluate: PSNR per frame, box/outside/temporal pooled) on the validation split (where the
default is chosen) and the test split (reported; sources neither trained nor validated on).
"""
import argparse
import json
import time
from pathlib import Path

import torch

from quality import evaluate, model_cost, restore_speed  # bench/quality.py, beside this script
from recipe import ensure_data, eval_sets, train_run
from vrestore.pipeline.inference.restorer import Restorer

# All at width 16 unless named. "lite": no NAFNet block at full resolution (encoder 0-1-1-2,
# decoder 1-1-1-0): full-resolution blocks cost most of the time at 320x240.
LITE = ["--enc-blocks", "0,1,1,2", "--dec-blocks", "1,1,1,0"]
ARCHS = {
    "unet": ["--arch", "unet", "--ngf", "16"],
    "nafnet-early": ["--arch", "nafnet", "--temporal", "early", "--ngf", "16"],
    "nafnet-shift": ["--arch", "nafnet", "--temporal", "shift", "--ngf", "16"],
    "nafnet-lite": ["--arch", "nafnet", "--temporal", "early", "--ngf", "16", *LITE],
    "nafnet-lite-w24": ["--arch", "nafnet", "--temporal", "early", "--ngf", "24", *LITE],
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("demo_output"))
    p.add_argument("--work", type=Path, default=Path("demo_output/arch"))
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--only", nargs="+", choices=list(ARCHS), default=list(ARCHS))
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--keep", action="store_true", help="keep the rows of WORK/arch.json for generators not in --only "
                   "(same minutes and T; e.g. to rerun one whose run shared the CPU with other work)")
    args = p.parse_args()
    videos, shards = ensure_data(args.root, args.frames)
    sets = eval_sets(videos, args.work)
    clip = next(c for c, _, _ in sets["test"] if "Bikes" in str(c))  # real footage, 320x240
    rows = {"degraded input": {split: evaluate(("identity", None), v) for split, v in sets.items()}}
    if args.keep and (args.work / "arch.json").is_file():
        old = json.loads((args.work / "arch.json").read_text())
        if (old["minutes"], old["frames"]) == (args.minutes, args.frames):
            rows |= {k: v for k, v in old["rows"].items() if k not in args.only and k != "degraded input"}
    for name in args.only:
        run = args.work / name
        t0 = time.monotonic()
        train_run(shards, run, args.minutes, *ARCHS[name])
        log = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
        steps = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
        restorer = Restorer(run / "generator.pth", "cpu")
        row = {split: evaluate(("generator", restorer), v) for split, v in sets.items()}
        row |= model_cost(run / "generator.pth") | restore_speed(run / "generator.pth", clip, run)
        row |= {"steps": steps, "train_img_s": steps * 16 / (args.minutes * 60), "validations": len(log)}
        rows[name] = row
        print(f"{name}: {steps} steps, trained and scored in {time.monotonic() - t0:.0f} s", flush=True)
    trained = [k for k in ARCHS if k in rows]
    rows = {"degraded input": rows["degraded input"], **{k: rows[k] for k in trained}}  # table in ARCHS order
    best = max(trained, key=lambda k: rows[k]["val"]["psnr"])
    print(f"\nT = {args.frames}, {args.minutes:g} training minutes each on this machine; chosen on validation PSNR: {best}")
    head = f"{'generator':<14} {'params':>7} {'GFLOP/fr':>8} {'train img/s':>11} {'model fps':>9} {'restore fps':>11}"
    for split in ("val", "test"):
        print(f"\n{split}: {len(sets[split])} videos, {rows['degraded input'][split]['frames']} frames")
        print(f"{head}  {'PSNR':>6} {'boxes':>6} {'outside':>7} {'temporal':>8} {'SSIM':>6}")
        for name, r in rows.items():
            s = r[split]
            cost = (f"{r['params_M']:6.2f}M {r['gflops_per_frame']:8.2f} {r['train_img_s']:11.1f} {r['model_fps']:9.1f} {r['restore_fps']:11.1f}"
                    if "steps" in r else f"{'':>7} {'':>8} {'':>11} {'':>9} {'':>11}")
            print(f"{name:<14} {cost}  {s['psnr']:6.2f} {s['psnr_boxes']:6.2f} {s['psnr_outside']:7.2f} "
                  f"{s['temporal_psnr']:8.2f} {s['ssim']:6.4f}")
    (args.work / "arch.json").write_text(json.dumps({"minutes": args.minutes, "frames": args.frames, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
