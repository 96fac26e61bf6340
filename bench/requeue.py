"""Training that outlives its jobs, measured: what the lease costs a run, and how long a Slurm
job takes from its warning signal to its next training step.

    python bench/requeue.py                  # both, on sample shards it makes itself
    python bench/requeue.py --skip-slurm     # the lease alone (no root, no Slurm needed)

The lease: the same run (tiny networks on the CPU, the test suite's settings) with OUT's lock
refreshed every 0.06 s (--lock-stale-minutes 0.01), every 30 s (the default, 5 min), and at most
once (60 s, longer than the run: as good as no lease), each twice, alternating; steps per minute
and their ratio to the last.

The requeue: a real one-node Slurm (tests/slurm_cluster.py; root, Debian's slurm-wlm and munge)
runs scripts/slurm/train-one-node.sbatch; once it trains, the warning is sent as Slurm sends
`--signal=B:USR1` (`scancel --batch --signal=USR1`), and the time is taken to the save, to the
job back in the queue, to its start, and to its first step after the resume (a checkpoint after
every step shows it). The test cluster lets a requeued job start after 6 s (cred_expire=5); a
default Slurm waits for the credential to expire, 2 minutes, which adds to the figure.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's Slurm cluster

from vrestore.pipeline.dataset.make_shards import make_shards  # noqa: E402

from vrestore.pipeline.dataset.shard_config import ShardConfig  # noqa: E402
from vrestore.pipeline.dataset.sample_videos import SampleConfig, make_sample_videos  # noqa: E402
from vrestore.trainer.config import TrainConfig  # noqa: E402
from vrestore.trainer.train import train  # noqa: E402

TINY = dict(crop=32, depth=5, ngf=4, ndf=4, batch_size=4, val_frames=2, num_threads=1, progress=False, val_interval=1e9)


def sample_shards(work: Path) -> Path:
    tree, shards = work / "tree", work / "shards"
    make_sample_videos(SampleConfig(tree, sources=("Astronaut", "Cat"), groups=2, clips=2, seed=0))
    make_shards(ShardConfig(tree, shards, max_frames=150, progress=False, workers=2))
    return shards


def lease_cost(shards: Path, work: Path, steps: int) -> None:
    settings = [("every 0.06 s", 0.01), ("every 30 s (default)", 5.0), ("at most once (60 s)", 1e6)]
    rates = {name: [] for name, _ in settings}
    for rep in range(2):
        for name, stale in settings:
            out = work / f"lease-{stale}-{rep}"
            t = time.perf_counter()
            result = train(TrainConfig(shards, out=out, max_steps=steps, lock_stale_minutes=stale, **TINY))
            rates[name].append(result.images_per_s / TINY["batch_size"] * 60)
            print(f"  {name}, run {rep + 1}: {rates[name][-1]:.0f} steps/min ({time.perf_counter() - t:.1f} s in all)", flush=True)
    base = sum(rates[settings[-1][0]]) / 2
    print(f"lease, {steps} steps of the test suite's tiny run, 1 process, {torch.get_num_threads()} torch threads:")
    for name, _ in settings:
        mean = sum(rates[name]) / 2
        print(f"  refreshed {name:22s} {mean:7.0f} steps/min  ({mean / base:.3f}x of at most once; runs "
              f"{rates[name][0]:.0f}, {rates[name][1]:.0f})")


def requeue_time(shards: Path, work: Path) -> None:
    from slurm_cluster import SlurmCluster, unavailable

    why = unavailable()
    if why:
        print(f"requeue: not measured: {why}")
        return
    cluster = SlurmCluster(work / "slurm").start()
    out, log = work / "run", work / "job.log"
    try:
        args = ["--shards", shards, "--out", out, "--quiet", "--epochs", 1000, "--save-every-minutes", 0.0001,
                *[x for k, v in TINY.items() if k not in ("progress",) for x in (f"--{k.replace('_', '-')}", v)]]
        job = cluster.submit("--time=10", f"--output={log}", f"--chdir={work}", ROOT / "scripts/slurm/train-one-node.sbatch",
                             *args, env={"NPROC_PER_NODE": "1", "MAX_RESTARTS": "0", "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)
        t0 = time.time()
        cluster.run("scancel", "--batch", "--signal=USR1", job)
        cluster.wait(job, lambda f: f.get("Restarts") == "1" and f.get("JobState") == "PENDING", 120, "requeued")
        queued = time.time()
        saved_at = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
        saved = (out / "checkpoint.pt").stat().st_mtime
        cluster.wait(job, lambda f: f.get("JobState") == "RUNNING", 300, "started again")
        started = time.time()
        while time.monotonic() < deadline + 300:
            if torch.load(out / "checkpoint.pt", weights_only=True)["step"] > saved_at:
                break
            time.sleep(0.05)
        stepped = (out / "checkpoint.pt").stat().st_mtime
        print(f"requeue (warning at {time.strftime('%H:%M:%S', time.localtime(t0))}, saved at step {saved_at}): "
              f"saved after {saved - t0:.1f} s, back in the queue after {queued - t0:.1f} s, running again after "
              f"{started - t0:.1f} s, first step (and its save) after the resume {stepped - t0:.1f} s after the signal")
    finally:
        cluster.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1500, help="steps per run for the lease's cost")
    p.add_argument("--skip-slurm", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="vrestore-bench-requeue-") as tmp:
        work = Path(tmp)
        shards = sample_shards(work)
        lease_cost(shards, work, args.steps)
        if not args.skip_slurm:
            requeue_time(shards, work)


if __name__ == "__main__":
    main()
