"""Several machines, one folder, and the job's own limits, simulated on this one machine:
a second "host" is a process in its own PID namespace (`unshare --pid`), as a node of a cluster
sees none of another node's processes; `taskset` and a memory cgroup stand for a Slurm job's
allocation."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vrestore.pipeline.atomic import TMP_MARK, host_token, remove_dead_temp_files
from vrestore.pipeline.host.lease import exclusive
from vrestore.pipeline.host.limits import cpu_count, memory_free
from cli_helpers import BIN, cli_run, clip
from test_train import check_two_rank_run, tiny_cli

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


def namespaces_allowed() -> bool:
    try:
        return subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


other_host = pytest.mark.skipif(not namespaces_allowed(), reason="PID namespaces are not allowed here (unshare --pid)")


def test_cleanup_removes_only_this_hosts_dead_temp_files(tmp_path):
    dead = tmp_path / f"a.avi{TMP_MARK}{host_token()}-999999999"
    live = tmp_path / f"b.avi{TMP_MARK}{host_token()}-{os.getpid()}"
    foreign = tmp_path / f"c.avi{TMP_MARK}0123456789-999999999"  # another host's: its PIDs mean nothing here
    users = [tmp_path / "d.avi.tmp-999999999", tmp_path / "e.tmp-1"]  # not ours: no marker
    for p in [dead, live, foreign, *users]:
        p.write_bytes(b"x")
    assert remove_dead_temp_files(tmp_path) == 1
    assert not dead.exists() and live.exists() and foreign.exists() and all(p.exists() for p in users)


def test_a_second_run_into_one_place_stops_and_a_dead_runs_lock_is_taken_over(tmp_path):
    lock = tmp_path / ".x.lock"
    with exclusive(lock, "OUT x"):
        with pytest.raises(ValueError, match="another run .* is writing there"):
            with exclusive(lock, "OUT x"):
                pass
    lock.write_text(f"{host_token()} 999999999\n")  # a killed run's
    with exclusive(lock, "OUT x"):
        pass
    # another host's lock: test_preemption (refused while refreshed, taken when stale)


def start_and_wait_for_temp(cmd: list, out: Path, pattern: str):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.rglob(pattern)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(out.rglob(pattern)), "host A never started writing"
    return proc


@other_host
@pytest.mark.slow
@pytest.mark.parametrize("command", ["degrade", "restore", "make-shards"])
def test_two_hosts_writing_into_one_folder_lose_nothing(command, weights, tmp_path):
    """Host A writes a long output; host B starts into the same folder meanwhile. B's start-up
    cleanup must leave A's temporary file alone (A's PID is not in B's process table), and
    both finish complete. (restore and degrade take turns: B watches A's lock of the folder
    and goes on when A releases it; make-shards' two nodes write side by side.)"""
    a_in, b_in, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    for d in (a_in, b_in):
        d.mkdir()
    clip(a_in / "long.avi", seconds=8, rate=25, size="320x240")
    clip(b_in / "short.avi", seconds=1, rate=10)
    if command == "restore":
        args = lambda src: [str(BIN / "vrestore"), "restore", str(src), "--weights", str(weights), "--output-dir", str(out), "--quiet"]
        pattern = f"long.avi{TMP_MARK}*"
    elif command == "degrade":
        args = lambda src: [str(BIN / "vrestore"), "degrade", str(src), str(out), "--quiet"]
        pattern = f"long.avi{TMP_MARK}*"
    else:  # two nodes of one collection (long.avi is node 0's, short.avi node 1's), one OUT
        (b_in / "short.avi").rename(a_in / "short.avi")
        args = lambda src: [str(BIN / "make-shards"), str(a_in), str(out), "--num-nodes", "2", "--node-rank",
                            "0" if src == a_in else "1", "--max-frames", "1000", "--quiet"]
        pattern = f"*{TMP_MARK}*"
    a = start_and_wait_for_temp(args(a_in), out, pattern)
    b = subprocess.run([*UNSHARE, *args(b_in)], capture_output=True, text=True, timeout=300)
    a_out, a_err = a.communicate(timeout=300)
    assert b.returncode == 0, b.stderr
    assert a.returncode == 0, a_err  # before: "No such file or directory: 'out/long.avi.tmp-N' -> 'out/long.avi'"
    assert not list(out.rglob(f"*{TMP_MARK}*"))
    if command == "make-shards":
        assert (out / "manifest-node000.json").is_file() and (out / "manifest-node001.json").is_file()
    else:
        from conftest import count_frames

        assert count_frames(out / "long.avi") == 200 and count_frames(out / "short.avi") == 10


def limits_in(prefix: list) -> tuple:
    code = "from vrestore.pipeline.host.limits import cpu_count, memory_free; print(cpu_count(), memory_free())"
    r = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    cpus, mem = r.stdout.split()
    return int(cpus), int(mem)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity here")
def test_a_job_pinned_to_one_cpu_gets_one_cpus_defaults(tmp_path):
    assert limits_in(["taskset", "-c", "0"])[0] == 1
    assert cpu_count() == len(os.sched_getaffinity(0))
    # make-shards' default --workers follows the job's CPUs; its --help says so
    r = subprocess.run(["taskset", "-c", "0", str(BIN / "make-shards"), "--help"], capture_output=True, text=True)
    assert "job's CPUs" in " ".join(r.stdout.split())


def memory_cgroup(limit: int):
    """A child memory cgroup (v2 or v1) of this process's own, limited to `limit` bytes, or None."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, rel = line.split(":", 2)
        base = Path("/sys/fs/cgroup") / ("memory" if "memory" in controllers.split(",") else "")
        if controllers and "memory" not in controllers.split(","):
            continue
        group = base / rel.lstrip("/") / f"vrestore-test-{os.getpid()}"
        try:
            group.mkdir()
            (group / ("memory.max" if not controllers else "memory.limit_in_bytes")).write_text(str(limit))
            return group
        except OSError:
            if group.is_dir():
                group.rmdir()
    return None


def test_a_memory_limited_cgroup_sets_the_budget():
    limit = 256 * 2**20
    group = memory_cgroup(limit)
    if group is None:
        pytest.skip("cannot create a memory cgroup here")
    try:
        code = f"import os; open('{group}/cgroup.procs', 'w').write(str(os.getpid())); os.execvp({sys.executable!r}, [{sys.executable!r}, '-c', " \
               "'from vrestore.pipeline.host.limits import memory_free; print(memory_free())'])"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert int(r.stdout) <= limit < memory_free()  # the job's room, not the host's
    finally:
        time.sleep(0.2)
        group.rmdir()


@pytest.mark.slow
def test_a_torn_checkpoint_resumes_from_the_previous_one(sample_shards, tmp_path):
    out = tmp_path / "run"
    r = run_train(sample_shards, out, "--max-steps", 4, "--val-every", 2)
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(out / "checkpoint.prev.pt", weights_only=True)["step"] == 2
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # torn: half written when the machine died
    r = run_train(sample_shards, out, "--max-steps", 6, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from the previous checkpoint" in r.stderr and "resuming at step 2" in r.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 6


def run_train(shards, out, *extra, **kw):
    """`vrestore train` on the tiny settings: in this process (click's runner) unless `kw` asks
    for a process of its own."""
    if not kw:
        return cli_run("vrestore", "train", *tiny_cli(shards, out, *extra))
    cmd = [sys.executable, "-m", "vrestore", "train", *tiny_cli(shards, out, *extra)]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300, **kw)


@pytest.mark.slow
def test_sigkill_loses_at_most_the_save_interval(sample_shards, tmp_path):
    """No signal handler runs on SIGKILL (a machine that dies): the time-based save is what is left."""
    out, interval = tmp_path / "run", 0.03  # minutes: a save every 1.8 s
    cmd = [sys.executable, "-m", "vrestore", "train", *tiny_cli(sample_shards, out, "--epochs", 1000,
                                                                   "--save-every-minutes", interval, "--val-interval", 1e6)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert "training on" in proc.stderr.readline()
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.prev.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # two time-based saves: the second keeps the first as checkpoint.prev.pt
    time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    killed = time.time()
    saved = out / "checkpoint.pt"
    assert saved.is_file(), "no time-based save before the kill"
    assert killed - saved.stat().st_mtime < interval * 60 + 3  # lost at most the interval (plus one save's time)
    step = torch.load(saved, weights_only=True)["step"]
    r = run_train(sample_shards, out, "--max-steps", step + 2, "--resume")
    assert r.returncode == 0 and f"resuming at step {step}" in r.stderr, r.stderr[-2000:]


@pytest.mark.slow
def test_a_second_training_run_into_one_out_is_refused(sample_shards, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "vrestore", "train", *tiny_cli(sample_shards, out, "--epochs", 1000)],
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        assert "training on" in first.stderr.readline()
        r = run_train(sample_shards, out, "--max-steps", 2, "--overwrite")
        assert r.returncode == 2 and "another run" in r.stderr and str(out) in r.stderr, r.stderr[-2000:]
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(shards, out, *extra):
    """Two torchrun launchers, one process each, meeting by c10d rendezvous on localhost: two
    "nodes" of one job writing one --out (a shared folder)."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=vrestore-two-nodes",
                               "-m", "vrestore", "train", *tiny_cli(shards, out, *extra)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
              for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    return [p.returncode for p in procs], "\n".join(err for _, err in results)


@pytest.mark.slow
def test_two_nodes_train_and_save_one_network_on_every_rank(tiny_shards, tmp_path):
    """Batch norm, EMA on: before each save the ranks' batch-norm buffers (G, D and the EMA's)
    are averaged, so every rank holds the same networks (the checkpoint's per-rank checksums,
    which cover the EMA), and every file is written and loads (test_train.check_two_rank_run,
    the 2-rank batch-norm case). Two ranks resuming: test_preemption's torchrun restart."""
    out = tmp_path / "run"
    codes, err = two_nodes(tiny_shards, out, "--max-steps", 3, "--norm", "batch")
    check_two_rank_run(subprocess.CompletedProcess("two nodes", 0 if codes == [0, 0] else 1, "", err), out, "batch", 1)


@pytest.mark.slow
def test_usage_errors_under_torchrun_exit_2_on_every_rank(tiny_shards, tmp_path):
    """--device cuda:N is refused on every rank (each rank takes its LOCAL_RANK's GPU), and so is an
    --out blocked by a file (every rank checks it). Each rank that ends on its own exits 2, none 1;
    torchrun may stop a slower rank first (SIGTERM: -15 or 130), since it ends a job at its
    first failure."""
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    for extra, words in ((["--device", "cuda:1", "--out", tmp_path / "o"], "--device cuda:1 under torchrun"),
                         (["--out", blocked / "run"], f"--out: cannot write in {blocked / 'run'}")):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "vrestore", "train",
               "--shards", str(tiny_shards), "--crop", "32", "--depth", "5", "--ngf", "4", "--ndf", "4", "--batch-size", "4", "--quiet",
               *map(str, extra)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
        assert words in r.stderr, r.stderr[-3000:]
        codes = re.findall(r"exitcode\s*:\s*(-?\d+)", r.stderr)
        assert codes and codes[-1] == "2" and set(codes) <= {"2", "-15", "130"}, (codes, r.stderr[-3000:])  # the root cause last


TWO_NODE_RAY = """
import sys, json
from pathlib import Path
import ray
from ray.cluster_utils import Cluster
from vrestore.pipeline.degrade.degrade_videos import DegradeConfig, degrade_videos
from vrestore.pipeline.dataset.shard_config import ShardConfig
from vrestore.pipeline.dataset.make_shards_ray import make_shards_ray

src, out = Path(sys.argv[1]), Path(sys.argv[2])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
try:
    result = degrade_videos(DegradeConfig(src, out / "degraded", engine="ray", ray_address=cluster.address, ray_workers=2, progress=False))
    ray.init(address=cluster.address, ignore_reinit_error=True)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    # the nodes that ran degrade's workers (GCS's actor table; public state API needs the dashboard)
    from ray._private.state import actors
    ran_on = {a["Address"]["NodeID"] for a in actors().values() if "VideoWorker" in a.get("ActorClassName", "")}
    shards = make_shards_ray(ShardConfig(src, out / "shards", progress=False, mix_window=1), cluster.address)
    print(json.dumps({"nodes": len(nodes), "worker_nodes": len(ran_on), "degraded": len(result.done), "failed": len(result.failed),
                      "samples": shards.manifest["num_samples"]}))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


@pytest.mark.slow
def test_a_two_node_ray_cluster_runs_degrade_and_make_shards(tmp_path):
    """Two Ray nodes of one CPU each on this machine (Ray's own Cluster helper): two workers
    need a CPU each, so the videos run on both nodes; make-shards' tasks too."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        clip(src / f"v{i}.avi")
    r = subprocess.run([sys.executable, "-c", TWO_NODE_RAY, str(src), str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, RAY_DEDUP_LOGS="0"))
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {"nodes": 2, "worker_nodes": 2, "degraded": 4, "failed": 0, "samples": 40}, got


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "export", "sample-videos", "make-shards", "degrade", "restore"])
def test_every_writing_command_clears_only_this_hosts_dead_temp_files(command, tiny_shards, weights, tmp_path):
    """Each command that writes into a folder removes the temporary files its killed runs left
    there (this host's, dead process) and leaves another host's and any unmarked file alone."""
    from cli_helpers import cli_run

    src = tmp_path / "in"
    src.mkdir()
    clip(src / "a.avi")
    out = tmp_path / "out"
    target, argv = out, {
        "train": ["vrestore", "train", *tiny_cli(tiny_shards, out, "--max-steps", 1)],
        "export": ["vrestore", "export", weights, out / "g.pt", "--format", "torchscript"],
        "sample-videos": ["vrestore", "sample-videos", out, "--sources", "Cat", "--groups", "1", "--clips", "1"],
        "make-shards": ["make-shards", src, out, "--quiet"],
        "degrade": ["vrestore", "degrade", src, out, "--quiet"],
        "restore": ["vrestore", "restore", src, "--weights", weights, "--output-dir", out, "--quiet"],
    }[command]
    out.mkdir()
    stem = "g.pt" if command == "export" else "shard" if command == "make-shards" else "x"
    dead = target / f"{stem}{TMP_MARK}{host_token()}-999999999"
    foreign = target / f"{stem}{TMP_MARK}0123456789-999999999"
    # (sample-videos refuses a folder holding a file it did not write: no unmarked file there)
    unmarked = [] if command == "sample-videos" else [target / f"{stem}.tmp-999999999"]
    for p in (dead, foreign, *unmarked):
        p.write_bytes(b"x")
    r = cli_run(*argv)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not dead.exists() and foreign.exists() and all(p.exists() for p in unmarked)
