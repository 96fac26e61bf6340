"""Several machines, one folder, and the job's own limits, simulated on this one machine:
a second "host" is a process in its own PID namespace (`unshare --pid`), as a node of a cluster
sees none of another node's processes; `taskset` and a memory cgroup stand for a Slurm job's
allocation."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vrestore.pipeline.atomic import TMP_MARK, exclusive, host_token, remove_dead_temp_files
from vrestore.pipeline.limits import cpu_count, memory_free
from test_real_world import BIN, clip
from test_train import tiny_cli

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
    lock.write_text("0123456789 999999999\n")  # another host's: respected
    with pytest.raises(ValueError, match="another machine"):
        with exclusive(lock, "OUT x"):
            pass


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
    both finish complete."""
    a_in, b_in, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    for d in (a_in, b_in):
        d.mkdir()
    clip(a_in / "long.avi", seconds=20, rate=25, size="320x240")
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

        assert count_frames(out / "long.avi") == 500 and count_frames(out / "short.avi") == 10


def limits_in(prefix: list) -> tuple:
    code = "from vrestore.pipeline.limits import cpu_count, memory_free; print(cpu_count(), memory_free())"
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
               "'from vrestore.pipeline.limits import memory_free; print(memory_free())'])"
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
    cmd = [sys.executable, "-m", "vrestore", "train", *tiny_cli(shards, out, *extra)]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300, **kw)


@pytest.mark.slow
def test_sigkill_loses_at_most_the_save_interval(sample_shards, tmp_path):
    """No signal handler runs on SIGKILL (a machine that dies): the time-based save is what is left."""
    out, interval = tmp_path / "run", 0.05  # minutes: a save every 3 s
    cmd = [sys.executable, "-m", "vrestore", "train", *tiny_cli(sample_shards, out, "--epochs", 1000,
                                                                   "--save-every-minutes", interval, "--val-interval", 1e6)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert "training on" in proc.stderr.readline()
    time.sleep(10)
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
