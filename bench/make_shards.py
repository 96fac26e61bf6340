"""make-shards frames/s against plain ffmpeg writing the same JPEG frames, on short clips and on
long ones, in one run: where a clip's fixed cost goes, and what the frames cost.

Plain ffmpeg is the command make-shards ran per video before this round (`-f image2pipe -c:v
mjpeg`, one process a clip, output discarded): the floor of a process-per-clip design. Debian's
ffmpeg loads 215 shared libraries, and starting it costs about 150 ms on this machine, more than
a 25-frame clip's frames; make-shards now decodes short clips several to one ffmpeg process
(dataset/make_shards.py, TOGETHER_VIDEOS), so on short clips it can beat the plain per-clip
command. Both run on the same UCF-shaped trees (bench/ucf_tree.py: XviD 320x240, 25 fps), per
worker count, --clip-len 5 (frames layout, as training reads UCF-101), best of --repeat.

    python bench/make_shards.py                           # 400 clips of 25 frames, 50 of 200
    python bench/make_shards.py --short 2000 --long 200 --workers 1 2
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ucf_tree import make_tree  # noqa: E402
from vrestore.pipeline.dataset import make_shards as make_shards_module  # noqa: E402
from vrestore.pipeline.dataset.make_shards import make_shards  # noqa: E402
from vrestore.pipeline.dataset.shard_config import ShardConfig  # noqa: E402
from vrestore.pipeline.media.frame_reader import ffmpeg_image_pipe_args  # noqa: E402


def plain_ffmpeg(videos, workers, quality) -> float:
    def run(v):
        return len(subprocess.run(ffmpeg_image_pipe_args(v, "jpg", quality), capture_output=True, check=True).stdout)

    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, videos))
    return time.perf_counter() - t


def ours(src, out, workers, quality, together=None) -> tuple:
    """(seconds, frames) of one make-shards run; `together`: clips per ffmpeg process (1: one
    process a clip, as before this round)."""
    shutil.rmtree(out, ignore_errors=True)
    default = make_shards_module.TOGETHER_VIDEOS
    make_shards_module.TOGETHER_VIDEOS = together or default
    try:
        t = time.perf_counter()
        m = make_shards(ShardConfig(src, out, workers=workers, quality=quality, clip_len=5, progress=False)).manifest
        return time.perf_counter() - t, sum(v["frames"] for v in m["videos"])
    finally:
        make_shards_module.TOGETHER_VIDEOS = default


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", type=int, default=400, help="clips of 25 frames (1 s)")
    ap.add_argument("--long", type=int, default=50, help="clips of 200 frames (8 s)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quality", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs each")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vrestore-bench-shards-", dir="/var/tmp") as tmp:
        tmp = Path(tmp)
        trees = {25: make_tree(tmp / "short", args.short, 25), 200: make_tree(tmp / "long", args.long, 200)}
        print(f"{'workers':>7} {'clips':>13} {'plain ffmpeg':>22} {'make-shards, 1 clip/ffmpeg':>27} {'make-shards':>22} "
              f"{'vs 1 clip':>9} {'vs plain':>8}")
        per_clip = {}
        for w in args.workers:
            for frames, src in trees.items():
                videos = sorted(src.rglob("*.avi"))
                plain = min(plain_ffmpeg(videos, w, args.quality) for _ in range(args.repeat))
                alone, n = min(ours(src, tmp / "shards", w, args.quality, together=1) for _ in range(args.repeat))
                best, n = min(ours(src, tmp / "shards", w, args.quality) for _ in range(args.repeat))
                per_clip[w, frames] = (plain / len(videos), alone / len(videos), best / len(videos))
                rate = lambda s: f"{n / s:>8.0f} f/s {1000 * s / len(videos):>6.1f} ms/clip"
                print(f"{w:>7} {len(videos):>5} x {frames:>3} f {rate(plain)}      {rate(alone)} {rate(best)} "
                      f"{alone / best:>8.2f}x {plain / best:>7.2f}x")
        for w in args.workers:
            # a clip costs fixed + frames x per-frame: two clip lengths give both
            for i, name in enumerate(("plain ffmpeg", "make-shards, 1 clip/ffmpeg", "make-shards")):
                short, long = per_clip[w, 25][i], per_clip[w, 200][i]
                per_frame = (long - short) / 175
                print(f"workers {w}, {name}: fixed cost {1000 * (short - 25 * per_frame):.1f} ms a clip, "
                      f"{1000 * per_frame:.2f} ms a frame")


if __name__ == "__main__":
    main()
