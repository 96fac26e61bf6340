"""How much a damaged clip can be improved by any linear filter: the oracle bound.

Per clip and colour channel, the K x K filter (plus an offset) that best maps the damaged frames
to the clean ones in the least-squares sense, fitted WITH the clean frames (an oracle: no real
method knows them). On the clip's total squared error no linear filter of that size does better,
deblocking and sharpening filters included (on the mean per-frame PSNR that restore reports
nearly so: a clip whose frames differ much in quality can trade a little), so it says how much
of the damage is recoverable by filtering at all; a learned network beats it only by knowing
what images look like (a prior).

    python bench/headroom.py DAMAGED_DIR CLEAN_DIR     # every .mp4/.avi under DAMAGED_DIR
"""
import argparse
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from vrestore.pipeline.media.probe import probe_video
from vrestore.pipeline.media.video_io import VideoWriter, read_frames

FIT_PIXELS = 200_000  # pixels per channel the least squares are fitted on (a fixed random sample)


def oracle_linear(clean: np.ndarray, damaged: np.ndarray, k: int = 5) -> np.ndarray:
    """(N, H, W, 3) uint8: `damaged` through the per-channel K x K filter fitted to `clean`."""
    r = k // 2
    out = np.empty(damaged.shape, np.uint8)
    rng = np.random.default_rng(0)
    for c in range(3):
        x = np.pad(damaged[..., c].astype(np.float32), ((0, 0), (r, r), (r, r)), mode="edge")
        windows = sliding_window_view(x, (k, k), axis=(1, 2)).reshape(-1, k * k)  # (N*H*W, k*k), a view until indexed
        pick = rng.choice(len(windows), min(len(windows), FIT_PIXELS), replace=False)
        a = np.concatenate([windows[pick], np.ones((len(pick), 1), np.float32)], axis=1)
        w, *_ = np.linalg.lstsq(a, clean[..., c].reshape(-1)[pick].astype(np.float32), rcond=None)
        y = windows @ w[:-1] + w[-1]
        out[..., c] = np.clip(np.rint(y), 0, 255).reshape(damaged.shape[:3])
    return out


def oracle_set(videos: list, work: Path, k: int = 5) -> list:
    """(clean, oracle output, mask) per (clean, damaged, mask): each damaged clip filtered by its
    own oracle filter, written losslessly (ffv1) under `work`."""
    out = []
    for clean, damaged, mask in videos:
        c, d = np.concatenate(list(read_frames(clean))), np.concatenate(list(read_frames(damaged)))
        if len(c) != len(d):
            raise RuntimeError(f"{damaged}: {len(d)} frames, its original {len(c)}")
        info = probe_video(damaged)
        path = work / f"{damaged.parent.name}_{damaged.stem}.avi"
        path.parent.mkdir(parents=True, exist_ok=True)
        with VideoWriter(path, info.width, info.height, info.fps, "ffv1") as w:
            w.write(oracle_linear(c, d, k))
        out.append((clean, path, mask))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("damaged", type=Path)
    p.add_argument("clean", type=Path, help="the originals, at the same relative paths (any video suffix)")
    p.add_argument("-k", type=int, default=5, help="filter size")
    args = p.parse_args()
    psnr = lambda a, b: 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))
    rows = []
    for d in sorted(x for x in args.damaged.rglob("*") if x.suffix in (".mp4", ".avi") and not x.stem.endswith("_mask")):
        clean = next(args.clean.glob(str(d.relative_to(args.damaged).with_suffix(".*"))), None)
        if clean is None:
            raise SystemExit(f"error: {d}: no original at {args.clean / d.relative_to(args.damaged).with_suffix('.*')}")
        c, x = np.concatenate(list(read_frames(clean))), np.concatenate(list(read_frames(d)))
        rows.append((psnr(x, c), psnr(oracle_linear(c, x, args.k), c)))
        print(f"{d.relative_to(args.damaged)}: {rows[-1][0]:.2f} -> {rows[-1][1]:.2f} dB", flush=True)
    a = np.array(rows)
    print(f"mean over {len(a)} clips: input {a[:, 0].mean():.2f} dB, oracle {args.k}x{args.k} linear filter {a[:, 1].mean():.2f} "
          f"({a[:, 1].mean() - a[:, 0].mean():+.2f})")


if __name__ == "__main__":
    main()
