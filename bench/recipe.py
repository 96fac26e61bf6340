"""The training recipe, compared at equal training minutes on one machine: constant vs decaying
learning rate, and for each run the raw last-step weights vs their EMA, scored on whole frames
as `vrestore restore` sees them (bench/quality.py's degraded copies, seed 1): chosen on the
validation split, reported on the test split (sources neither trained nor validated on).

    python bench/recipe.py                         # demo settings, 4 minutes per run
    python bench/recipe.py --minutes 10 --decay-fractions 0,0.3,0.5

Each run is `vrestore train` with the demo's settings and `--decay-fraction F`; its
checkpoint.pt holds the raw weights and generator.pth the EMA. Also printed: the largest change
of validation PSNR between consecutive validations in the last third of the run (EMA and raw),
from metrics.jsonl.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from quality import degraded_set, evaluate  # bench/quality.py, beside this script
from vrestore.models import GeneratorConfig, build_generator
from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.inference.restorer import Restorer
from vrestore.pipeline.dataset.sample_videos import SampleConfig, make_sample_videos
from vrestore.models.weights import save_weights
from vrestore.trainer.schedule import swing

DEMO = ["--crop", "64", "--ngf", "16", "--ndf", "16", "--batch-size", "16", "--lr", "1e-3", "--val-every", "500", "--quiet"]


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
    """`vrestore train` with the demo's settings for `minutes`."""
    subprocess.run([str(Path(sys.executable).with_name("vrestore")), "train", "--shards", str(shards / "train"),
                    "--val-shards", str(shards / "val"), "--out", str(run), "--overwrite", *DEMO,
                    "--max-minutes", str(minutes), *options], check=True)


def raw_weights(run: Path) -> Path:
    """The last step's raw generator from checkpoint.pt, as a generator.pth of its own."""
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    G = build_generator(GeneratorConfig(**state["G_config"]))
    G.load_state_dict(state["G"])
    save_weights(run / "generator_raw.pth", G)
    return run / "generator_raw.pth"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("demo_output"), help="sample videos and shards (made if missing)")
    p.add_argument("--work", type=Path, default=Path("demo_output/recipe"))
    p.add_argument("--minutes", type=float, default=4.0, help="training minutes per run")
    p.add_argument("--decay-fractions", default="0,0.5", help="comma-separated --decay-fraction values to compare")
    p.add_argument("--extra", default="", help="more `vrestore train` options for every run, space-separated")
    args = p.parse_args()
    videos, shards = ensure_data(args.root)
    sets = eval_sets(videos, args.work)

    rows = {}
    for fraction in [float(f) for f in args.decay_fractions.split(",")]:
        run = args.work / f"decay{fraction:g}"
        t0 = time.monotonic()
        train_run(shards, run, args.minutes, *args.extra.split(), "--decay-fraction", str(fraction))
        vals = [json.loads(s)["val"] for s in (run / "metrics.jsonl").read_text().splitlines()]
        steps = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
        for name, weights, key in (("raw", raw_weights(run), "psnr_raw"), ("EMA", run / "generator.pth", "psnr")):
            restorer = Restorer(weights, "cpu")
            r = {split: evaluate(("generator", restorer), videos_) for split, videos_ in sets.items()}
            r |= {"swing_last_third": swing([v[key] for v in vals]), "steps": steps, "validations": len(vals)}
            rows[f"lr {'constant' if fraction == 0 else f'decay over last {fraction:g}'}, {name} weights"] = r
        print(f"decay fraction {fraction:g}: {steps} steps in {time.monotonic() - t0:.0f} s", flush=True)

    best = max(rows, key=lambda k: rows[k]["val"]["psnr"])
    print(f"\n{len(sets['val'])} validation and {len(sets['test'])} test videos, whole frames; {args.minutes:g} training minutes "
          f"per run on this machine; chosen on validation PSNR: {best}")
    width = max(len(k) for k in rows)
    print(f"{'recipe':<{width}}  {'val PSNR':>8}  |  {'test PSNR':>9}  {'SSIM':>6}  {'boxes':>6}  {'outside':>7}  {'val swing':>9}")
    for name, r in rows.items():
        t = r["test"]
        print(f"{name:<{width}}  {r['val']['psnr']:8.2f}  |  {t['psnr']:9.2f}  {t['ssim']:6.4f}  {t['psnr_boxes']:6.2f}  "
              f"{t['psnr_outside']:7.2f}  {r['swing_last_third']:7.2f} dB")
    (args.work / "recipe.json").write_text(json.dumps({"minutes": args.minutes, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
