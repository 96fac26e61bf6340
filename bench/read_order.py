"""The training loader's samples/s with windows read in the order their bytes lie in each shard
(sequential) against a shuffled window index (random), from a cold page cache, on the disk as it
is and on a slowed one, in one run. Root: it drops the page cache (/proc/sys/vm/drop_caches) and
slows reads with a cgroup v1 blkio throttle (read IOPS and bandwidth, as a network file system
serves a client).

    python bench/read_order.py                       # makes a UCF-shaped tree (bench/ucf_tree.py)
    python bench/read_order.py --clips 800 --frames 50 --iops 300 --mbps 40

Each row runs in a process of its own (so it can be put in the cgroup); rows alternate over
--rounds. DALI's own shuffle buffer (initial_fill 1024, as training) mixes either order.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
CHILD = """
import sys, time
from pathlib import Path
import torch
from vrestore.pipeline.dataset.shard_set import load_shard_set
from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.trainer.dali_input import train_batches
shards = load_shard_set(Path(sys.argv[1]), 5, order=sys.argv[2])
batches = iter(train_batches(shards, DegradationSpec(), 16, 64, torch.device("cpu"), num_threads=2))
n = int(sys.argv[3])
t = time.perf_counter()
for _ in range(n):
    next(batches)
print(n * 16 / (time.perf_counter() - t))
"""


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def device_of(path: Path) -> str:
    st = os.stat(path)
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"


def throttled_group(device: str, iops: int, mbps: int) -> Path:
    group = Path("/sys/fs/cgroup/blkio") / f"vrestore-read-order-{os.getpid()}"
    group.mkdir()
    (group / "blkio.throttle.read_iops_device").write_text(f"{device} {iops}\n")
    (group / "blkio.throttle.read_bps_device").write_text(f"{device} {mbps * 2**20}\n")
    return group


def run(shards: Path, order: str, batches: int, group=None) -> float:
    drop_caches()
    cmd = [sys.executable, "-c", CHILD, str(shards), order, str(batches)]
    if group is not None:  # the child joins the cgroup before it reads a byte
        cmd = [sys.executable, "-c", f"import os; open('{group}/cgroup.procs', 'w').write(str(os.getpid())); "
               f"os.execvp({sys.executable!r}, {cmd!r})"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return float(r.stdout.split()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=Path, help="a frames-layout make-shards folder (default: made from a generated tree)")
    p.add_argument("--clips", type=int, default=400)
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iops", type=int, default=200, help="the slowed disk's read operations per second")
    p.add_argument("--mbps", type=int, default=40, help="the slowed disk's read MB/s")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="vrestore-read-order-", dir="/var/tmp") as tmp:
        shards = args.shards
        if shards is None:
            sys.path.insert(0, str(HERE))
            from ucf_tree import make_tree
            from vrestore.pipeline.dataset.make_shards import make_shards
            from vrestore.pipeline.dataset.shard_config import ShardConfig

            root = make_tree(Path(tmp), args.clips, args.frames)
            shards = Path(tmp) / "shards"
            make_shards(ShardConfig(root, shards, clip_len=5, progress=False))
        size = sum(f.stat().st_size for f in shards.glob("*.tar")) / 2**20
        group = throttled_group(device_of(shards), args.iops, args.mbps)
        rows = {(order, slow): [] for slow in (False, True) for order in ("sequential", "random")}
        try:
            for _ in range(args.rounds):
                for (order, slow), got in rows.items():
                    got.append(run(shards, order, args.batches, group if slow else None))
        finally:
            group.rmdir()
        print(f"{shards}: {size:.0f} MB of shards; T = 5, crop 64, batch 16, 2 DALI threads, CPU, {args.batches} batches from a "
              f"cold page cache, median of {args.rounds} (range)")
        for (order, slow), got in rows.items():
            disk = f"slowed ({args.iops} reads/s, {args.mbps} MB/s)" if slow else "as it is"
            base = statistics.median(rows["sequential", slow])
            print(f"  {order:10s} disk {disk:32s} {statistics.median(got):7.1f} samples/s ({min(got):.1f}-{max(got):.1f}), "
                  f"{statistics.median(got) / base:.2f}x of sequential")


if __name__ == "__main__":
    main()
