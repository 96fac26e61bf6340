"""Restoration quality on a test split: the degraded input, a classical ffmpeg baseline tuned
on the train split, and the trained generator, by PSNR and SSIM.

    python bench/quality.py                                   # the sample data, demo's model
    python bench/quality.py --clean UCF-101 --test-split ucfTrainTestlist/testlist01.txt \\
        --train-split ucfTrainTestlist/trainlist01.txt --weights saved_models/generator.pth

Test videos are degraded by `vrestore degrade`'s code (the one spec, fixed seed, box masks
saved). The classical baseline is what a user could run instead: ffmpeg's hqdn3d or nlmeans
denoiser, then unsharp; its strength and sharpening are chosen by PSNR on degraded videos of
the train split, never the test split. ffmpeg has no per-frame inpainting, so the boxes stay
for it. Figures: PSNR and SSIM per frame, averaged over all frames of all test videos; and
PSNR inside and outside the boxes (squared error pooled over those pixels), since a model can
win on noise and lose on inpainting. Prints a table, writes JSON.
"""
import argparse
import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from vrestore.pipeline.degrade.degrade_videos import DegradeConfig, degrade_videos, mask_path, output_path
from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.media.discover import list_source_videos
from vrestore.pipeline.evaluation.metrics import VideoScores
from vrestore.pipeline.media.probe import probe_video
from vrestore.models.weights import load_network
from vrestore.pipeline.inference.restore_video import restore_video
from vrestore.pipeline.inference.restorer import Restorer
from vrestore.pipeline.inference.video_scores import FrameQueue
from vrestore.pipeline.dataset.sample_videos import SampleConfig, make_sample_videos
from vrestore.pipeline.media.video_io import read_frames

BATCH = 16


def classical_candidates():
    """(name, ffmpeg filter chain). yuv444p keeps full chroma through the filters. The grid
    brackets the best settings found on the sample data (a first, coarser grid peaked at its
    strongest nlmeans and hqdn3d; unsharp amounts of 1.0 never won)."""
    for strength, amount in itertools.product((8, 16, 24, 32), (0.0, 0.5)):
        sharpen = f",unsharp=5:5:{amount}:5:5:0" if amount else ""
        yield f"hqdn3d {strength}, unsharp {amount}", f"format=yuv444p,hqdn3d={strength}:{strength * 0.75:g}:{strength * 1.5:g}:{strength * 1.1:g}{sharpen}"
    for strength, amount in itertools.product((6, 10, 14), (0.0, 0.5)):
        sharpen = f",unsharp=5:5:{amount}:5:5:0" if amount else ""
        yield f"nlmeans {strength}, unsharp {amount}", f"format=yuv444p,nlmeans=s={strength}:p=7:r=9{sharpen}"


def method_frames(method, degraded: Path, info):
    """Batches of a method's output for one degraded video."""
    kind, arg = method
    if kind == "identity":
        yield from read_frames(degraded, BATCH, info)
    elif kind == "classical":
        yield from read_frames(degraded, BATCH, info, vf=arg)
    else:  # a Restorer: each frame from its window of neighbours, as `vrestore restore` runs it
        for _, restored in arg.stream(read_frames(degraded, BATCH, info)):
            yield restored


def evaluate(method, videos: list, with_ssim=True) -> dict:
    """videos: (clean, degraded, mask) paths; the scores of vrestore.pipeline.evaluation.metrics.VideoScores."""
    scores = VideoScores(with_ssim)
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float()
    for clean, degraded, mask in videos:
        info = probe_video(degraded)
        originals, masks = FrameQueue(read_frames(clean, BATCH)), FrameQueue(read_frames(mask, BATCH))
        for y in method_frames(method, degraded, info):
            c, m = originals.take(len(y)), masks.take(len(y))
            if c is None or len(c) != len(y):
                raise RuntimeError(f"{degraded}: output and original differ in length")
            scores.add(to(y), to(c), torch.from_numpy(m[..., :1] > 127).permute(0, 3, 1, 2))
        scores.end_video()
    return asdict(scores.result())  # JSON-ready, the names of metrics.Scores


def model_cost(weights: Path) -> dict:
    G = load_network(weights).eval()
    m, t = G.cfg.multiple, G.cfg.frames
    h, w = -(-240 // m) * m, -(-320 // m) * m
    x = torch.rand(1, 3 * t, h, w) * 2 - 1
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        G(x)
    return {"params_M": sum(p.numel() for p in G.parameters()) / 1e6, "gflops_per_frame": counter.get_total_flops() / 1e9}


def restore_speed(weights: Path, clip: Path, tmp: Path) -> dict:
    """Frames/s at 320x240: the model alone on batches of 8 windows, and restore_video end to end."""
    restorer = Restorer(weights, "cpu")
    windows = np.random.default_rng(0).integers(0, 256, (8, restorer.frames, 240, 320, 3), dtype=np.uint8)
    restorer(windows)  # warm-up
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 5:
        restorer(windows)
        n += len(windows)
    alone = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    report = restore_video(clip, tmp / "out.avi", restorer)
    return {"model_fps": alone, "restore_fps": report.frames / (time.perf_counter() - t0)}


def degraded_set(clean_root: Path, split, work: Path, spec, seed, limit=None) -> list:
    entries, _ = list_source_videos(clean_root, split)
    rels = [e.rel for e in entries]
    if limit:  # spread over the list (classes are sorted), not the first few of one class
        rels = rels[:: max(1, len(rels) // limit)][:limit]
    for rel in rels:
        cfg = DegradeConfig(clean_root / rel, output_path(work, rel, "ffv1"), spec=spec, seed=seed, save_masks=True, overwrite=True, progress=False)
        degrade_videos(cfg)  # a single file with a suffixed DST is written to DST itself
    return [(clean_root / rel, output_path(work, rel, "ffv1"), mask_path(output_path(work, rel, "ffv1"))) for rel in rels]


def print_table(rows: dict) -> None:
    width = max(len(k) for k in rows)
    print(f"{'method':<{width}}  {'PSNR':>6}  {'SSIM':>6}  {'PSNR boxes':>10}  {'PSNR outside':>12}  {'temporal PSNR':>13}")
    for name, r in rows.items():
        print(f"{name:<{width}}  {r['psnr']:6.2f}  {r['ssim']:6.4f}  {r['psnr_boxes']:10.2f}  {r['psnr_outside']:12.2f}"
              f"  {r['temporal_psnr']:13.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clean", type=Path, default=Path("demo_output/videos"), help="clean videos (made from the sample data if missing)")
    p.add_argument("--test-split", type=Path, help="default: CLEAN/ucfTrainTestlist/testlist01.txt")
    p.add_argument("--train-split", type=Path, help="default: CLEAN/ucfTrainTestlist/trainlist01.txt")
    p.add_argument("--tune-videos", type=int, default=6, help="train-split videos the baseline is tuned on")
    p.add_argument("--weights", type=Path, default=Path("demo_output/model/generator.pth"))
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=1, help="degradation seed (the demo's test inputs use 0)")
    p.add_argument("--work", type=Path, default=Path("demo_output/quality"), help="degraded copies go here")
    p.add_argument("--json", type=Path, default=None, help="default: WORK/quality.json")
    args = p.parse_args()
    if not args.clean.exists():
        print(f"making the sample videos in {args.clean}")
        make_sample_videos(SampleConfig(args.clean))
    splits = args.clean / "ucfTrainTestlist"
    test_split = args.test_split or splits / "testlist01.txt"
    train_split = args.train_split or splits / "trainlist01.txt"
    spec = DegradationSpec()

    t0 = time.monotonic()
    test = degraded_set(args.clean, test_split, args.work / "test", spec, args.seed)
    tune = degraded_set(args.clean, train_split, args.work / "tune", spec, args.seed, limit=args.tune_videos)
    print(f"degraded {len(test)} test and {len(tune)} tuning videos ({time.monotonic() - t0:.0f} s)")

    t0 = time.monotonic()
    tuning = {name: evaluate(("classical", vf), tune, with_ssim=False)["psnr"] for name, vf in classical_candidates()}
    best = max(tuning, key=tuning.get)
    best_vf = dict(classical_candidates())[best]
    print(f"baseline tuned on {len(tune)} train-split videos over {len(tuning)} settings ({time.monotonic() - t0:.0f} s): "
          f"best {best} ({tuning[best]:.2f} dB)")

    rows = {"degraded input": evaluate(("identity", None), test), f"ffmpeg {best}": evaluate(("classical", best_vf), test)}
    if args.weights.is_file():
        restorer = Restorer(args.weights, args.device)
        rows[f"generator ({args.weights})"] = evaluate(("generator", restorer), test)
    else:
        print(f"no generator at {args.weights}; train one (scripts/demo.sh) or pass --weights")

    frames = next(iter(rows.values()))["frames"]
    print(f"\n{len(test)} test videos, {frames} frames, {args.clean}; spec: blur 7x7 sigma {spec.blur_sigma}, noise std {spec.noise_std}, "
          f"{spec.boxes_min}-{spec.boxes_max} boxes; seed {args.seed}")
    print_table(rows)
    out = args.json or args.work / "quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"test_videos": len(test), "frames": frames, "seed": args.seed, "tuning_psnr": tuning,
                               "baseline_filter": best_vf, "rows": rows}, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
