"""Training that outlives its jobs: one command for the first launch and every relaunch, under a
real Slurm (warned and requeued, requeued from outside), under torchrun restarts, and after its
host died holding the lock; the lease itself; the run's clock and id across launches."""
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from cli_helpers import cli_run
from test_shared_machines import UNSHARE, other_host
from test_train import TINY, tiny_cli
from vrestore.pipeline.atomic import host_token
from vrestore.pipeline.host.lease import Lease, fs_now, job_identity
from vrestore.trainer.checkpoint import load_checkpoint
from vrestore.trainer.config import TrainConfig
from vrestore.trainer.train import LoopHooks, train

SLURM_SCRIPTS = Path(__file__).parents[1] / "scripts" / "slurm"
ENTRY = Path(__file__).parent / "entry" / "train_entry.py"


def state_dict(out: Path) -> dict:
    return torch.load(out / "generator.pth", weights_only=True)["state_dict"]


def same_weights(a: Path, b: Path) -> bool:
    x, y = state_dict(a), state_dict(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def step_of(out: Path) -> int:
    return torch.load(out / "checkpoint.pt", weights_only=True)["step"]


# --- Slurm ----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.xdist_group("slurm")
def test_a_slurm_job_warned_then_requeued_from_outside_ends_as_an_uninterrupted_run(slurm, sample_shards, tmp_path):
    """scripts/slurm/train-one-node.sbatch, submitted once: Slurm's warning signal (B:USR1) makes
    the trainer save and requeue its own job; later `scontrol requeue` from outside, after a
    random delay (start-up, a step or a save), stops it again; the third start finishes. Every
    start ran the same command, and generator.pth is bit for bit an uninterrupted run's."""
    steps = 1500  # about 50 s of training here: longer than the first start waits for its warning (at most ~35 s)
    args = ["--max-steps", steps, "--val-interval", 1e6]
    reference = subprocess.Popen([sys.executable, "-m", "vrestore", "train", *tiny_cli(sample_shards, tmp_path / "whole", *args)],
                                 stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    out, log = tmp_path / "run", tmp_path / "job.log"
    # a 1-minute limit with the warning 25 s before it: Slurm sends it 5-35 s into the job
    # (it checks every 30 s, and may send up to 30 s early); the first start trains past that
    job = slurm.submit("--time=1", "--signal=B:USR1@25", f"--output={log}", f"--chdir={tmp_path}",
                       SLURM_SCRIPTS / "train-one-node.sbatch", *tiny_cli(sample_shards, out, *args),
                       env={"NPROC_PER_NODE": "1", "MAX_RESTARTS": "0", "OMP_NUM_THREADS": "1"})
    t0 = time.monotonic()
    slurm.wait(job, lambda f: f.get("Restarts") == "1" and f.get("JobState") == "PENDING", 150, "requeued by its warning")
    assert "saved; requeueing it" in log.read_text(), log.read_text()[-3000:]
    first = step_of(out)
    assert 0 < first < steps
    slurm.update(job, TimeLimit=10)  # no second warning in this test
    slurm.wait(job, lambda f: f.get("JobState") == "RUNNING", 60, "running again")
    time.sleep(random.uniform(0, 20))  # any moment: start-up, a step, a save
    slurm.run("scontrol", "requeue", job)
    slurm.wait(job, lambda f: f.get("Restarts") == "2" and f.get("JobState") == "PENDING", 120, "requeued from outside")
    slurm.wait(job, lambda f: f.get("JobState") in ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"), 300, "finished")
    text = log.read_text()
    assert slurm.job(job)["JobState"] == "COMPLETED", text[-3000:]
    # the second start may have been stopped before it trained (or said so); the third resumed
    assert text.count("training on 1 x cpu") >= 2 and f"resuming at step {first} " in text, text[-3000:]
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]
    assert step_of(out) == step_of(tmp_path / "whole") == steps
    assert same_weights(out, tmp_path / "whole")
    print(f"slurm chain: {time.monotonic() - t0:.0f} s, warned at step {first}")


@pytest.mark.slow
@pytest.mark.xdist_group("slurm")
def test_the_many_nodes_script_meets_at_the_first_node_of_the_job(slurm, tiny_shards, tmp_path):
    """scripts/slurm/train-many-nodes.sbatch on this one-node cluster: srun starts a torchrun on
    each node, which meet at the job's first node (from its node list) under the job's id; two
    ranks train and save."""
    from slurm_cluster import free_port

    out, log = tmp_path / "run", tmp_path / "job.log"
    job = slurm.submit("--nodes=1", f"--output={log}", f"--chdir={tmp_path}", SLURM_SCRIPTS / "train-many-nodes.sbatch",
                       *tiny_cli(tiny_shards, out, "--max-steps", 4),
                       env={"NPROC_PER_NODE": "2", "RDZV_PORT": str(free_port()), "OMP_NUM_THREADS": "1"})
    fields = slurm.wait(job, lambda f: f.get("JobState") in ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"), 240, "finished")
    assert fields["JobState"] == "COMPLETED", log.read_text()[-3000:]
    assert "training on 2 x cpu" in log.read_text()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and len(state["ranks"]) == 2


@pytest.mark.xdist_group("slurm")
def test_a_warned_job_is_requeued_only_when_it_may_be(slurm, tmp_path):
    """What the trainer does after saving on SIGUSR1, against real jobs: one submitted with
    --requeue goes back to the queue, one without stays as it is and the user is told how to
    go on; outside Slurm nothing is asked of it."""
    from vrestore.pipeline.cluster.slurm import requeue_this_job

    jobs = {flag: slurm.submit(flag, "--time=5", f"--output={tmp_path / 'sleep.log'}", "--wrap", "sleep 120")
            for flag in ("--requeue", "--no-requeue")}
    for job in jobs.values():
        slurm.wait(job, lambda f: f.get("JobState") == "RUNNING", 60, "running")
    said = requeue_this_job(dict(slurm.env, SLURM_JOB_ID=jobs["--no-requeue"]))
    assert "not submitted with --requeue" in said
    assert slurm.job(jobs["--no-requeue"])["JobState"] == "RUNNING"
    said = requeue_this_job(dict(slurm.env, SLURM_JOB_ID=jobs["--requeue"]))
    assert "requeued" in said and "not" not in said
    slurm.wait(jobs["--requeue"], lambda f: f.get("Restarts") == "1", 60, "requeued")
    assert "outside a Slurm job" in requeue_this_job({})
    slurm.run("scancel", *jobs.values())


# --- torchrun restarts ----------------------------------------------------------------------

@pytest.mark.slow
def test_torchrun_restarts_a_killed_rank_and_the_run_ends_as_an_uninterrupted_one(tiny_frame_shards, tmp_path):
    """`torchrun --max-restarts 1`, 2 ranks, instance norm, windows of 3 frames: rank 1 dies by
    SIGKILL before step 5; torchrun restarts the group, which takes the lock of its dead rank 0
    at once, resumes at the last checkpoint (step 4) by itself and finishes with the weights of
    a run never killed.

    That run is checked whole too (test_train.check_two_rank_run), with rank 1's clock running
    1000 times as fast: validate-and-save at an epoch end (--val-interval 5 s) is decided on the
    agreed clock, so both ranks enter it together at every epoch end (a per-rank decision would
    hang: rank 1 in the gather, rank 0 in the next step's all-reduce)."""
    from test_train import check_two_rank_run, two_rank_run

    args = ["--max-steps", 6, "--norm", "instance", "--frames", 3]  # 2 steps an epoch
    whole = tmp_path / "whole"
    r, _ = two_rank_run(tiny_frame_shards, whole, *args, "--val-interval", 5, hooks=("--clock-scale", "1=1000"))
    check_two_rank_run(r, whole, "instance", 3, steps=6, spacing=4)  # the shards keep every 4th frame
    assert len((whole / "metrics.jsonl").read_text().splitlines()) == 3  # every epoch end validated
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max-restarts=1", str(ENTRY),
           "--kill-at", "1=5", "--", *tiny_cli(tiny_frame_shards, out, *args, "--val-interval", 0)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming at step 4" in r.stderr and r.stderr.count("training on 2 x cpu") == 2, r.stderr[-3000:]
    assert step_of(out) == 6 and same_weights(out, whole)


# --- the lock: a lease a dead host cannot hold -----------------------------------------------

@other_host
@pytest.mark.slow
def test_a_run_whose_host_died_is_taken_over_and_a_live_one_is_refused(sample_shards, tmp_path):
    """Host A (its own PID namespace) trains; this host is refused while A runs. A dies by
    kill -9 holding the lock; the same command here waits out A's lease (not refreshed for
    --lock-stale-minutes), takes the lock with one line, and continues A's run."""
    out = tmp_path / "run"
    args = ["--epochs", 1000, "--save-every-minutes", 0.02, "--lock-stale-minutes", 0.1]
    a = subprocess.Popen([*UNSHARE, sys.executable, "-m", "vrestore", "train", *tiny_cli(sample_shards, out, *args)],
                         stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)
    try:
        assert "training on" in a.stderr.readline()
        lock = out / ".vrestore-train.lock"
        holder = json.loads(lock.read_text())
        assert holder["host"] != host_token()  # another host, as far as this one can tell
        r = cli_run("vrestore", "train", *tiny_cli(sample_shards, out, *args))
        assert r.returncode == 2 and "another run" in r.stderr and "refreshed" in r.stderr, r.stderr[-2000:]
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.pt").is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(a.pid, signal.SIGKILL)  # the host dies: no handler, no cleanup
        a.wait(timeout=60)
    assert json.loads(lock.read_text())["nonce"] == holder["nonce"]  # the dead host's lock is still there
    saved = step_of(out)
    r = cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--epochs", 1000, "--lock-stale-minutes", 0.1, "--max-steps", saved + 3))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "took over the lock of process" in r.stderr and "its host is gone" in r.stderr
    assert f"resuming at step {saved} " in r.stderr and step_of(out) == saved + 3
    assert not lock.exists()


def lock_of(holder_job: str, host: str = "0123456789", age: float = 0.0, path: Path = None, stale_s: float = None) -> Path:
    """A lock file as another host's run writes it (`age` seconds since its last refresh)."""
    holder = {"host": host, "pid": 1, "hostname": "elsewhere", "job": holder_job, "nonce": "theirs"}
    if stale_s is not None:
        holder["stale_s"] = stale_s
    path.write_text(json.dumps(holder) + "\n")
    if age:
        now = fs_now(path.parent)
        os.utime(path, (now - age, now - age))
    return path


@contextmanager
def refreshed(lock: Path, every: float):
    """Another host's live run: its lock touched every `every` seconds until the block ends."""
    done = threading.Event()

    def touch():
        while not done.wait(every):
            os.utime(lock)
    thread = threading.Thread(target=touch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_another_hosts_lock_is_refused_while_refreshed_and_taken_when_it_stops(tmp_path):
    """Another host's lock is watched: refused as soon as it is seen refreshed (its lease says
    every 0.12 s here), taken over once not refreshed for its stale time (1.2 s); at once when
    its holder was the same Slurm job (a requeue may start on another node) or torchelastic run.
    torchrun's default run id "none" names no run."""
    lock = lock_of("slurm:77", path=tmp_path / ".lock", stale_s=1.2)
    with refreshed(lock, 0.12):
        t = time.monotonic()
        with pytest.raises(ValueError, match=r"another run \(process 1 on host elsewhere, slurm job 77\).*refreshed 0 s ago"):
            Lease(lock, "OUT x", environ={"SLURM_JOB_ID": "78"}).acquire()
        assert time.monotonic() - t < 1.0  # one refresh seen, long before the lease could go stale
        for job, environ in (("slurm:77", {"SLURM_JOB_ID": "77"}), ("torchelastic:abc", {"TORCHELASTIC_RUN_ID": "abc"})):
            lock_of(job, path=lock, stale_s=1.2)
            lease = Lease(lock, "OUT x", environ=environ)
            lease.acquire()  # a relaunch of the same job: at once, though refreshed
            assert json.loads(lock.read_text())["nonce"] == lease.nonce
            lease.release()
            assert not lock.exists()
            lock_of("slurm:77", path=lock, stale_s=1.2)
    t = time.monotonic()
    lease = Lease(lock, "OUT x", environ={"TORCHELASTIC_RUN_ID": "none"})
    lease.acquire()  # no longer refreshed: taken when stale
    assert 1.0 < time.monotonic() - t < 5
    lease.release()
    assert job_identity({"SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "5", "SLURM_ARRAY_TASK_ID": "2"}) == "slurm:5_2"
    assert job_identity({"TORCHELASTIC_RUN_ID": "none"}) == ""


def test_staleness_is_judged_by_the_file_systems_clock(tmp_path, monkeypatch):
    """This host's clock runs an hour ahead, or behind (time.time lies): a live lock is still
    refused and a dead one taken only when stale, since a lease's age is read from the file
    system (the lock's mtime against a probe file's), never from two hosts' clocks."""
    lock = lock_of("", path=tmp_path / ".lock", stale_s=1.2)
    real = time.time
    for skew in (3600, -3600):
        monkeypatch.setattr(time, "time", lambda: real() + skew)
        with refreshed(lock, 0.12):
            with pytest.raises(ValueError, match="another run"):
                Lease(lock, "OUT x").acquire()
        lock_of("", path=lock, stale_s=1.2, age=0.5)
        t = time.monotonic()
        lease = Lease(lock, "OUT x")
        lease.acquire()
        assert 0.5 < time.monotonic() - t < 5  # waited for the rest of its lease, neither 0 nor an hour
        lease.release()
        lock_of("", path=lock, stale_s=1.2)


def _take(lock, results):
    try:
        lease = Lease(Path(lock), "OUT x", stale_minutes=1)
        lease.acquire()
        results.put(lease.nonce)
        time.sleep(1.0)  # hold it while the others try
        lease.release()
    except ValueError as e:
        results.put(f"refused: {e}")


def test_of_four_runs_breaking_one_stale_lock_at_once_one_holds_it(tmp_path):
    lock = lock_of("", path=tmp_path / ".lock", age=600)
    results = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(target=_take, args=(str(lock), results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    got = [results.get(timeout=5) for _ in procs]
    assert sum(not g.startswith("refused") for g in got) == 1, got
    assert all("another run" in g for g in got if g.startswith("refused"))


def test_a_run_whose_lock_was_taken_stops_without_writing(sample_shards, tmp_path):
    """While a run trains, another run takes its lock (as after a long network partition): the
    holder sees it at its next refresh, every rank stops at the same step, and nothing more is
    written into OUT; the CLI exits 1 saying so."""
    out = tmp_path / "run"
    taken = {}

    def on_step(rank, step):
        if step == 3:
            lock_of("", path=out / ".vrestore-train.lock")
            taken["mtime"] = (out / "checkpoint.pt").stat().st_mtime_ns
            time.sleep(0.5)  # the holder notices at its next refresh (every 0.06 s here, and a second look)

    cfg = TrainConfig(sample_shards, out=out, max_steps=400, val_every=2, lock_stale_minutes=0.01, **TINY)
    result = train(cfg, LoopHooks(on_step=on_step))
    assert result.stopped == "lease-lost" and result.step == 4
    assert "taken by another run (process 1 on host elsewhere)" in result.note
    assert (out / "checkpoint.pt").stat().st_mtime_ns == taken["mtime"] and step_of(out) == 2
    assert json.loads((out / ".vrestore-train.lock").read_text())["nonce"] == "theirs"  # the new holder's lock is left alone


# --- one command for every launch -------------------------------------------------------------

def test_resume_auto_starts_continues_refuses_and_finishes(sample_shards, tmp_path):
    """The same command starts a run, continues it, and once finished says so (exit 0); a
    checkpoint of another configuration is refused in one line naming what differs; `never`
    and `require` keep the old strictness."""
    out = tmp_path / "run"
    r = cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--max-steps", 2, "--resume", "require"))
    assert r.returncode == 2 and "--resume require: no checkpoint.pt" in r.stderr
    for expected in ("", "resuming at step 2 "):
        r = cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--max-steps", 2 if not expected else 4))
        assert r.returncode == 0 and expected in r.stderr, r.stderr[-2000:]
    r = cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--max-steps", 4))
    assert r.returncode == 0 and "holds a finished run (step 4" in r.stderr
    r = cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--max-steps", 6, "--lr", 1e-3, "--noise-std", 0.2))
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "--lr: 0.0002 in the checkpoint, 0.001 now" in lines[0] and "--noise-std: 15.0 in the checkpoint, 0.2 now" in lines[0]
    r = cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--max-steps", 6, "--resume", "never"))
    assert r.returncode == 2 and "--resume auto continues it" in r.stderr
    assert step_of(out) == 4


def test_the_schedule_and_the_time_limit_count_the_runs_training_time(sample_shards, tmp_path):
    """Under --max-minutes the lr follows the run's training time, saved in the checkpoint: a
    run stopped twice and resumed ends at the very step, with the very weights, of one that ran
    through (a clock that advances one second per step, so both see the same times)."""
    def clock():
        t = [0.0]

        def tick():
            t[0] += 1.0
            return t[0]
        return tick

    run = dict(TINY, max_minutes=0.5, decay_fraction=0.5, lr=1e-3)  # 30 s: 29 steps here, the last 15 decaying
    whole = train(TrainConfig(sample_shards, out=tmp_path / "whole", **run), LoopHooks(clock=clock()))
    assert whole.stopped == "max-minutes"
    for stop in (8, 20, None):
        part = train(TrainConfig(sample_shards, out=tmp_path / "split", max_steps=stop, **run), LoopHooks(clock=clock()))
    assert part.stopped == "max-minutes" and part.step == whole.step
    assert load_checkpoint(tmp_path / "split")["trained_seconds"] == load_checkpoint(tmp_path / "whole")["trained_seconds"]
    assert same_weights(tmp_path / "split", tmp_path / "whole")


def test_the_fallback_checkpoint_is_only_ever_this_runs(sample_shards, tmp_path):
    """--overwrite removes the earlier run's checkpoints before anything else, so a torn first
    save of the new run cannot fall back to them; a checkpoint.prev.pt of another run (left
    there by hand) is refused by its run id."""
    out = tmp_path / "run"
    assert cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--max-steps", 4, "--val-every", 2)).returncode == 0
    old = (out / "checkpoint.pt").read_bytes()
    assert cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--max-steps", 2, "--overwrite")).returncode == 0
    assert not (out / "checkpoint.prev.pt").exists()
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # the new run's first save, torn
    r = cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--max-steps", 4))
    assert r.returncode == 2 and "unreadable checkpoint" in r.stderr, r.stderr[-2000:]
    (out / "checkpoint.prev.pt").write_bytes(old)  # the discarded run's, back by hand
    r = cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--max-steps", 4))
    assert r.returncode == 2 and "is of another run" in r.stderr, r.stderr[-2000:]


def test_a_skipped_steps_losses_stay_out_of_the_means_and_a_run_of_them_stops_training(sample_shards, tmp_path):
    """A batch of NaNs makes its step skipped; the logged means leave it out (they stay finite).
    From step 5 on every batch is NaN: after --max-bad-steps in a row the run stops with its
    error and leaves the last checkpoint (step 4) as it was."""
    from vrestore.trainer import train as training

    def poison(batches, bad):
        for i, batch in enumerate(batches):
            if bad(i + 1):
                batch = dict(batch, degraded=batch["degraded"] * float("nan"))
            yield batch

    class Poisoned:
        def __init__(self, inner, bad):
            self.inner, self.bad = inner, bad

        def __iter__(self):
            return poison(self.inner, self.bad)

        def __len__(self):
            return len(self.inner)

        def state(self):
            return self.inner.state()

    real = training.train_batches
    out = tmp_path / "run"
    try:
        training.train_batches = lambda *a, **k: Poisoned(real(*a, **k), lambda step: step == 2)
        result = train(TrainConfig(sample_shards, out=out, max_steps=4, val_every=4, log_every=1, **TINY))
        assert result.skipped_steps == 1
        line = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        assert all(v == v for v in line["train"].values()), line  # no NaN among the means
        before = (out / "checkpoint.pt").read_bytes()
        training.train_batches = lambda *a, **k: Poisoned(real(*a, **k), lambda step: True)
        with pytest.raises(training.NonFiniteLosses, match="not finite for 3 steps in a row"):
            train(TrainConfig(sample_shards, out=out, max_steps=400, log_every=1, max_bad_steps=3, **TINY))
        assert (out / "checkpoint.pt").read_bytes() == before
    finally:
        training.train_batches = real
