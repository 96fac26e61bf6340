"""The seed and the real degradation presets, compared at equal training time: one model trained
on each (the demo's recipe and each preset's own defaults: --residual on for real only; T = 5,
same minutes on this machine), both scored on test clips
(sources neither trained nor validated on) damaged three ways:

  seed-degraded   `vrestore degrade` (blur, noise, boxes; seed 1)
  codec-damaged   real footage's damage: the clean clip encoded by libx264 at a low bitrate
                  (--bpp bits per pixel, single pass; a row per bitrate), nothing else
  real-degraded   `vrestore degrade --preset real` (seed 1)

    python bench/presets.py                  # 6 training minutes per preset
    python bench/presets.py --minutes 10 --bpp 0.04,0.02,0.01

Per cell: PSNR (and SSIM) of the input and of each model's output against the clean clip,
pooled as `vrestore restore` reports it, plus NIQE (no reference) of the codec-damaged inputs
and outputs (--splits test,val adds the validation split's rows). Each preset's model is the checkpoint its own
validation split chose (generator_best.pth: best whole-frame validation PSNR on that preset's
val shards), or with --weights last its last EMA weights.
"""
import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from headroom import oracle_set  # bench/headroom.py
from quality import degraded_set, evaluate  # bench/quality.py, beside this script
from recipe import DEMO, ensure_data
from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.degrade.degrade_videos import DegradeConfig, degrade_videos, mask_path, output_path
from vrestore.pipeline.evaluation.niqe import niqe, sample_indices
from vrestore.pipeline.evaluation.pictures import side_by_side, write_png
from vrestore.pipeline.inference.restorer import Restorer
from vrestore.pipeline.media.discover import list_source_videos
from vrestore.pipeline.media.probe import probe_video
from vrestore.pipeline.media.video_io import VideoWriter, read_frames

FRAMES = 5
DAMAGES = ("seed-degraded", "codec-damaged", "real-degraded")


def real_shards(videos: Path, root: Path, tag: str = "", options: tuple = ()) -> Path:
    """The real preset's train and val shards (made if missing), in shards_t5_real<TAG>."""
    shards = root / f"shards_t{FRAMES}_real{tag}"
    for split in ("train", "val"):
        if not (shards / split / "manifest.json").exists():
            subprocess.run([str(Path(sys.executable).with_name("make-shards")), str(videos), str(shards / split), "--quiet", "--preset", "real",
                            "--split-file", str(videos / "ucfTrainTestlist" / f"{split}list01.txt"), "--clip-len", str(FRAMES), *options],
                           check=True)
    return shards


def codec_damaged_set(videos: Path, split: str, work: Path, bpp: float) -> list:
    """(clean, damaged, mask) per clip: libx264 at `bpp` bits per pixel (x fps x pixels), no
    other damage; an all-zero mask (no boxes)."""
    entries, _ = list_source_videos(videos, videos / "ucfTrainTestlist" / f"{split}list01.txt")
    out = []
    for e in entries:
        clean, damaged = videos / e.rel, work / Path(e.rel).with_suffix(".mp4")
        info = probe_video(clean)
        damaged.parent.mkdir(parents=True, exist_ok=True)
        rate = int(bpp * info.width * info.height * float(info.fps))
        # passthrough: every frame encoded once (a constant-rate muxer may drop or repeat some)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clean), "-an", "-fps_mode", "passthrough", "-c:v", "libx264",
                        "-b:v", str(rate), "-pix_fmt", "yuv420p", str(damaged)], check=True)
        mask = mask_path(damaged.with_suffix(".avi"))
        with VideoWriter(mask, info.width, info.height, info.fps, "ffv1", gray=True) as w:
            for frames in read_frames(clean):
                w.write(np.zeros(frames.shape[:3], np.uint8))
        out.append((clean, damaged, mask))
    return out


def real_degraded_set(videos: Path, split: str, work: Path) -> list:
    entries, _ = list_source_videos(videos, videos / "ucfTrainTestlist" / f"{split}list01.txt")
    for e in entries:
        degrade_videos(DegradeConfig(videos / e.rel, output_path(work, e.rel, "ffv1"), preset="real", seed=1, save_masks=True,
                                     overwrite=True, progress=False))
    return [(videos / e.rel, output_path(work, e.rel, "ffv1"), mask_path(output_path(work, e.rel, "ffv1"))) for e in entries]


def niqe_mean(method, videos: list, which: int = 1) -> float:
    """Mean over videos of NIQE on up to 16 evenly spaced frames (restore's setting) of the
    damaged input (`which` 1), the clean clip (0), or `method`'s output of the input."""
    scores = []
    for paths in videos:
        frames = np.concatenate(list(read_frames(paths[which])))
        if method is not None:
            frames = np.concatenate([r for _, r in method.stream(iter([frames]))])
        scores.append(niqe(frames[sample_indices(len(frames), 16)]))
    return float(np.mean(scores))


def write_picture(path: Path, videos: list, models: dict, classes: list) -> None:
    """Rows: the first clip of each class; columns: damaged | seed model | real model | original."""
    rows = []
    for cls in classes:
        clean, damaged, _ = next(v for v in videos if f"/{cls}/" in str(v[0]))
        frames, originals = np.concatenate(list(read_frames(damaged))), np.concatenate(list(read_frames(clean)))
        mid = len(frames) // 2
        outs = [np.concatenate([r for _, r in m.stream(iter([frames]))])[mid] for m in models.values()]
        rows.append(side_by_side([x[None] for x in (frames[mid], *outs, originals[mid])])[0])
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    image = Image.fromarray(np.concatenate(rows)[:-8]).quantize(256).convert("RGB")
    write_png(path, np.asarray(image))


def train(shards: Path, run: Path, minutes: float, options: list) -> None:
    subprocess.run([str(Path(sys.executable).with_name("vrestore")), "train", "--shards", str(shards / "train"),
                    "--val-shards", str(shards / "val"), "--out", str(run), "--overwrite", *DEMO, "--max-minutes", str(minutes), *options],
                   check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("demo_output"))
    p.add_argument("--work", type=Path, default=Path("demo_output/presets"))
    p.add_argument("--minutes", type=float, default=6.0)
    p.add_argument("--bpp", default="0.04", help="bits per pixel of the codec-damaged clips, comma-separated: a row each")
    p.add_argument("--splits", default="test", help="comma-separated: test, val")
    p.add_argument("--weights", choices=("best", "last"), default="best",
                   help="best: generator_best.pth (chosen on the preset's validation split); last: generator.pth")
    p.add_argument("--presets", default="seed,real", help="comma-separated: the models to train and score")
    p.add_argument("--damages", default=",".join(DAMAGES), help="comma-separated: the test inputs")
    p.add_argument("--train-options", default="", help="more `vrestore train` options for every model, as --train-options=\"--residual --lr 5e-4\"")
    p.add_argument("--shard-options", default="", help="more `make-shards` options for the real preset's shards, as --shard-options=\"--real-draws 4\"")
    p.add_argument("--shards-tag", default="", help="suffix of the real shards' folder (shards_t5_real<TAG>), one per --shard-options")
    p.add_argument("--tag", default="", help="suffix of the model folders (model_seed<TAG>): runs with other options side by side")
    p.add_argument("--skip-niqe", action="store_true", help="no NIQE rows (they take most of the scoring time)")
    p.add_argument("--headroom", action="store_true", help="add the oracle 5x5 linear filter's score under each codec-damaged row "
                   "(bench/headroom.py: fitted on the clean clip, the least squared error any 5x5 linear filter reaches)")
    p.add_argument("--picture", type=Path, help="also write a PNG: the middle frame of the codec-damaged test clips of "
                   "these classes, damaged | seed model | real model | original (256 colours)")
    p.add_argument("--picture-classes", default="Carphone,Bikes")
    args = p.parse_args()
    videos, seed_shards = ensure_data(args.root, FRAMES)
    shards = {"seed": seed_shards, "real": real_shards(videos, args.root, args.shards_tag, shlex.split(args.shard_options))}
    rates = [float(b) for b in args.bpp.split(",")]
    makers = {
        "seed-degraded": lambda split: degraded_set(videos, videos / "ucfTrainTestlist" / f"{split}list01.txt", args.work / split / "seed",
                                                    DegradationSpec(), seed=1),
        "real-degraded": lambda split: real_degraded_set(videos, split, args.work / split / "real"),
    }
    for b in rates:  # a row per bitrate (named by it when there are several); a folder per bitrate, the default's keeps its old name
        folder = "codec" if b == 0.04 else f"codec_{b:g}"
        name = "codec-damaged" if len(rates) == 1 else f"codec-damaged {b:g}"
        makers[name] = lambda split, b=b, folder=folder: codec_damaged_set(videos, split, args.work / split / folder, b)
    wanted = [m for d in args.damages.split(",") for m in makers if m == d or m.startswith(d + " ")]
    sets = {split: {d: makers[d](split) for d in wanted} for split in args.splits.split(",")}
    models = {}
    for preset in args.presets.split(","):
        run = args.work / f"model_{preset}{args.tag}"
        t0 = time.monotonic()
        if not (run / "generator.pth").exists():
            train(shards[preset], run, args.minutes, shlex.split(args.train_options))
        models[preset] = Restorer(run / ("generator_best.pth" if args.weights == "best" else "generator.pth"), "cpu")
        print(f"{preset} model: {time.monotonic() - t0:.0f} s", flush=True)
    rows = {}
    for split, damages in sets.items():
        for damage, vids in damages.items():
            cell = {"input": evaluate(("identity", None), vids)}
            for preset, restorer in models.items():
                cell[f"{preset} model"] = evaluate(("generator", restorer), vids)
            if damage.startswith("codec-damaged") and args.headroom:
                cell["oracle linear"] = evaluate(("identity", None), oracle_set(vids, args.work / split / "oracle" / damage.replace(" ", "_")))
            if damage.startswith("codec-damaged") and not args.skip_niqe:
                cell["niqe"] = {"input": niqe_mean(None, vids), **{f"{k} model": niqe_mean(r, vids) for k, r in models.items()},
                                "clean": niqe_mean(None, vids, which=0)}
            rows[f"{split}/{damage}"] = cell
    print(f"\nT = {FRAMES}, {args.minutes:g} training minutes per preset on this machine, {args.weights} weights; "
          f"codec damage: libx264 at {args.bpp} bits per pixel")
    names = [f"{k} model" for k in models]
    print(f"{'split / damage':<27} {'input':>14} " + " ".join(f"{n:>14}" for n in names) + "   (PSNR dB / SSIM)")
    for name, cell in rows.items():
        f = lambda r: f"{r['psnr']:6.2f} / {r['ssim']:.3f}"
        print(f"{name:<27} {f(cell['input']):>14} " + " ".join(f"{f(cell[n]):>14}" for n in names))
        if "oracle linear" in cell:
            print(f"{'  oracle 5x5 linear filter':<27} {f(cell['oracle linear']):>14}   (fitted on the clean clip: about the most any 5x5 linear filter gains)")
        if "niqe" in cell:
            n = cell["niqe"]
            print(f"{'  NIQE (lower better)':<27} {n['input']:>14.2f} " + " ".join(f"{n[k]:>14.2f}" for k in names) + f"   (clean {n['clean']:.2f})")
    if args.picture:
        write_picture(args.picture, next(v for k, v in sets["test"].items() if k.startswith("codec-damaged")), models, args.picture_classes.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / f"presets{args.tag}.json").write_text(json.dumps({"minutes": args.minutes, "weights": args.weights, "bpp": args.bpp, "frames": FRAMES,
                                                                  "train_options": args.train_options, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
