"""--engine ray against the built-in engines on the same cores: Ray's cost on one machine.

    python bench/ray_engines.py                  # all cores of this machine
    python bench/ray_engines.py --videos 40 --restore-videos 10

make-shards: the sample videos (`vrestore sample-videos`, 320x240, 2-4 s each), clips of 5
frames, local engine (`--workers` = cores, one window of videos decoding ahead) against
`--engine ray` (one task per `--mix-window` videos on a local instance of as many cores).
restore: the test split degraded, a demo-size 5-frame generator (ngf 16, fresh weights: speed
does not depend on what it learned), the local engine (one process, torch using every core)
against Ray (one actor per core, one torch thread each). Figures with and without Ray's
start-up (a local instance: about 4 s), and the per-core rates the README's cluster arithmetic
uses.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import ray

from vrestore.models import GeneratorConfig, build_generator
from vrestore.models.weights import save_weights
from vrestore.pipeline.dataset.make_shards import make_shards
from vrestore.pipeline.dataset.shard_config import ShardConfig
from vrestore.pipeline.dataset.make_shards_ray import make_shards_ray
from vrestore.pipeline.dataset.sample_videos import SampleConfig, make_sample_videos
from vrestore.pipeline.degrade.degrade_videos import DegradeConfig, degrade_videos
from vrestore.pipeline.inference.restore import RestoreConfig, restore_videos


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--mix-window", type=int, default=4, help="videos per Ray task (and per local shuffle window)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    videos = tmp / "videos"
    make_sample_videos(SampleConfig(videos, workers=args.cores))
    n_videos = len(list(videos.rglob("*.avi")))
    settings = dict(clip_len=5, mix_window=args.mix_window, workers=args.cores, progress=False)

    local, t_local = timed(lambda: make_shards(ShardConfig(videos, tmp / "local", **settings)))
    frames = sum(v["frames"] for v in local.manifest["videos"])
    _, t_start = timed(lambda: ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False))
    _, t_ray = timed(lambda: make_shards_ray(ShardConfig(videos, tmp / "ray", **settings)))
    print(f"make-shards, {n_videos} videos ({frames} frames, frames layout for windows of 5), {args.cores} cores, --mix-window {args.mix_window}:")
    print(f"  local engine : {t_local:6.1f} s  {frames / t_local:6.0f} frames/s  ({frames / t_local / args.cores:.0f} per core)")
    print(f"  --engine ray : {t_ray:6.1f} s  {frames / t_ray:6.0f} frames/s  ({frames / t_ray / args.cores:.0f} per core)"
          f"  = {t_local / t_ray:.2f}x the local engine; with Ray's start-up ({t_start:.1f} s): {t_local / (t_ray + t_start):.2f}x")

    test = videos / "ucfTrainTestlist" / "testlist01.txt"
    degrade_videos(DegradeConfig(videos, tmp / "degraded", split_file=test, progress=False))
    weights = tmp / "g.pth"
    save_weights(weights, build_generator(GeneratorConfig(ngf=16, frames=5)))
    common = dict(codec="mjpeg", progress=False, device="cpu")
    r_local, t_rl = timed(lambda: restore_videos(RestoreConfig(tmp / "degraded", weights, tmp / "restored_local", **common)))
    r_ray, t_rr = timed(lambda: restore_videos(RestoreConfig(tmp / "degraded", weights, tmp / "restored_ray", engine="ray", **common)))
    rf = sum(r.frames for r in r_local.videos)
    assert rf == sum(r.frames for r in r_ray.videos)
    print(f"restore, {len(r_local.videos)} videos ({rf} frames, 320x240), a 5-frame ngf-16 generator, {args.cores} cores:")
    print(f"  local engine : {t_rl:6.1f} s  {rf / t_rl:6.1f} frames/s  ({rf / t_rl / args.cores:.1f} per core)")
    print(f"  --engine ray : {t_rr:6.1f} s  {rf / t_rr:6.1f} frames/s  ({rf / t_rr / args.cores:.1f} per core)"
          f"  = {t_rl / t_rr:.2f}x the local engine ({args.cores} actors, one thread each)")
    ray.shutdown()


if __name__ == "__main__":
    main()
