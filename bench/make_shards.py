"""make-shards frames/s against raw ffmpeg writing the same JPEG frames to a pipe.

Raw ffmpeg (`-f image2pipe -c:v mjpeg`, output discarded) is the physical limit: make-shards
runs the very same ffmpeg command and adds stream splitting, shuffling, tar writing and DALI
indexing. Both are measured in one run, per worker count, as a ratio, for single frames and
for T = 5 in both layouts (clips: each clip whole, every frame 5 times, the layout before this
round; frames: each frame once), with the bytes each stores.

    python bench/make_shards.py                      # sample videos, made in a temp folder
    python bench/make_shards.py --videos ../shared/videos --workers 1 2
"""
import argparse
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vrestore.pipeline.media.discover import find_videos
from vrestore.pipeline.media.frame_reader import ffmpeg_image_pipe_args
from vrestore.pipeline.dataset.make_shards import ShardConfig, make_shards
from vrestore.pipeline.dataset.sample_videos import SampleConfig, make_sample_videos


def raw_ffmpeg(videos, workers, quality):
    def run(v):
        out = subprocess.run(ffmpeg_image_pipe_args(v, "jpg", quality), capture_output=True, check=True).stdout
        return len(out)

    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, videos))
    return time.perf_counter() - t


def ours(src, out, workers, quality, clip_len=1, layout="frames"):
    """(seconds, video frames, shard bytes) of one make-shards run."""
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    m = make_shards(ShardConfig(src, out, workers=workers, quality=quality, clip_len=clip_len, layout=layout, progress=False)).manifest
    return time.perf_counter() - t, sum(v["frames"] for v in m["videos"]), sum(s["bytes"] for s in m["shards"])


KINDS = [(1, "frames"), (5, "clips"), (5, "frames")]  # (--clip-len, --layout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=Path, help="folder of videos (default: generated sample videos)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quality", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs each")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = args.videos
        if src is None:
            src = tmp / "videos"
            make_sample_videos(SampleConfig(src))
        videos = [e.path for e in find_videos(src)]
        print(f"{len(videos)} videos from {src}")
        print(f"{'workers':>7} {'samples':<20} {'frames':>7} {'MB':>7} {'raw ffmpeg f/s':>15} {'make-shards f/s':>16} {'ratio':>6}")
        for w in args.workers:
            raw = min(raw_ffmpeg(videos, w, args.quality) for _ in range(args.repeat))
            for clip_len, layout in KINDS:
                runs = [ours(src, tmp / "shards", w, args.quality, clip_len, layout) for _ in range(args.repeat)]
                best, frames, size = min(r[0] for r in runs), runs[0][1], runs[0][2]
                kind = "single frames" if clip_len == 1 else f"T = {clip_len}, {layout}"
                print(f"{w:>7} {kind:<20} {frames:>7} {size / 2**20:>7.1f} {frames / raw:>15.0f} {frames / best:>16.0f} {raw / best:>6.2f}")

if __name__ == "__main__":
    main()
