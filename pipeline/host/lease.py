"""The lock a command holds on the folder it writes into: a lease that a dead host cannot hold.

One run writes into a folder at a time (two would interleave their files); the runs may be on
different hosts that share the folder (NFS, Lustre), and a host may die without a word. So the
lock is a lease:

- taken by creating `LOCK` with O_EXCL; it names the host, the process and the job (Slurm job
  id, torchelastic run id) that holds it;
- refreshed while the holder runs (a thread touches it every `stale / 10`, at least every
  minute), and checked then: a holder that finds its lock gone or someone else's stops;
- judged by its age on the shared file system's own clock (the lock's mtime against the mtime
  of a file written there now), never by comparing two hosts' clocks, which differ;
- taken over, with a one-line notice, at once when its process is dead on this host, at once
  by a relaunch of the same Slurm job or torchelastic run (a requeued job or a restarted worker
  group, on any node), and when it was not refreshed for `stale` seconds (its host died);
- refused in one line when its process runs on this host, or, for another host's lock, as soon
  as it is seen refreshed: a run finding another host's lock watches it (at most one refresh
  interval when that host is alive, `stale` when it is dead), so no relaunch waits for a human.
"""
import _thread
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

from vrestore.pipeline.atomic import host_token, pid_alive, temp_path_for

DEFAULT_STALE_MINUTES = 5.0  # far above NFS attribute caching (up to 60 s) and a slow save


def job_identity(environ=os.environ) -> str:
    """The scheduler's name for this job, the same on every relaunch of it: a requeued Slurm job
    keeps its SLURM_JOB_ID, torchelastic keeps TORCHELASTIC_RUN_ID across its restarts ("none",
    torchrun's default without --standalone or --rdzv-id, names nothing)."""
    if environ.get("SLURM_JOB_ID"):
        array = environ.get("SLURM_ARRAY_JOB_ID"), environ.get("SLURM_ARRAY_TASK_ID")
        return f"slurm:{array[0]}_{array[1]}" if all(array) else f"slurm:{environ['SLURM_JOB_ID']}"
    run = environ.get("TORCHELASTIC_RUN_ID", "")
    return f"torchelastic:{run}" if run and run != "none" else ""


def fs_now(folder: Path) -> float:
    """The shared file system's clock: the mtime of a file written in `folder` now (set by the
    file server on NFS; the local clock on a local disk)."""
    probe = temp_path_for(Path(folder) / ".vrestore-clock")
    try:
        with open(probe, "wb") as f:
            f.write(b".")
        return probe.stat().st_mtime
    finally:
        probe.unlink(missing_ok=True)


def describe(holder: dict) -> str:
    where = "this machine" if holder.get("host") == host_token() else f"host {holder.get('hostname') or 'unknown'}"
    job = holder.get("job") or ""
    return f"process {holder.get('pid', '?')} on {where}" + (f", {job.replace(':', ' job ', 1)}" if job else "")


def interrupt_main(message: str) -> None:
    """What a command does when its lease was taken: say so and stop as Ctrl-C stops it (its
    temporary files removed on the way out, exit 130)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    _thread.interrupt_main()


class Lease:
    """Hold `lock` for a `with` block (see the module docstring). `what` names the folder in
    messages (e.g. "--out runs/a"); `stale_minutes` is --lock-stale-minutes. `on_lost(message)`
    runs on the refresh thread when the lease was taken by another run; `lost` then holds the
    message (the training loop polls it; by default the command stops as on Ctrl-C)."""

    def __init__(self, lock: Path, what: str, stale_minutes: float = DEFAULT_STALE_MINUTES,
                 on_lost: Optional[Callable[[str], None]] = None, environ=os.environ):
        if not stale_minutes > 0:
            raise ValueError(f"--lock-stale-minutes {stale_minutes:g}: must be > 0")
        self.lock, self.what = Path(lock), what
        self.stale = 60.0 * stale_minutes
        self.interval = min(60.0, self.stale / 10)  # refreshed well inside the stale time
        self.nonce = uuid.uuid4().hex
        self.me = {"host": host_token(), "pid": os.getpid(), "hostname": os.uname().nodename, "job": job_identity(environ),
                   "nonce": self.nonce, "stale_s": self.stale}
        self.on_lost = on_lost or interrupt_main
        self.lost: Optional[str] = None
        self.refreshes = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # --- taking it ---------------------------------------------------------------------------
    def acquire(self) -> None:
        watched = None  # (mtime, when first seen) of another host's lock we are watching
        for _ in range(100_000):
            try:
                fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder, seen = self._read()
                if seen is None:
                    continue  # released between our create and our read: try again
                age = fs_now(self.lock.parent) - seen.st_mtime
                # the holder's promise, not ours: it refreshes well inside the stale time it wrote
                stale = holder["stale_s"] if isinstance(holder.get("stale_s"), (int, float)) else self.stale
                reason = self._takeover_reason(holder, age, stale)
                if reason is not None:
                    if self._break(seen):
                        print(f"{self.what}: took over the lock of {describe(holder)}: {reason}", file=sys.stderr, flush=True)
                    continue
                if holder.get("host") == host_token() or (watched is not None and watched != seen.st_mtime_ns):
                    # alive: its process runs here, or its host refreshed the lease while we watched
                    raise ValueError(
                        f"{self.what}: another run ({describe(holder)}) is writing there; its lease was refreshed "
                        f"{max(age, 0):.0f} s ago (it is taken over when not refreshed for {stale / 60:g} min, "
                        f"its --lock-stale-minutes)") from None
                if watched is None:
                    # Another host's: only a refresh tells a live one from a dead one. Watch it.
                    print(f"{self.what}: locked by {describe(holder)}, refreshed {max(age, 0):.0f} s ago; waiting: refused "
                          f"if it is refreshed, taken over if not refreshed for {stale / 60:g} min", file=sys.stderr, flush=True)
                    watched = seen.st_mtime_ns
                time.sleep(min(stale / 40, max(stale - age, 0) + 0.05))
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(self.me) + "\n")
                f.flush()
                os.fsync(f.fileno())
            return
        raise ValueError(f"{self.what}: could not take {self.lock}")

    def _read(self):
        """(what the lock file says, its stat), or ({}, None) when it is gone. A lock created but
        not yet written (or written by an older version: "HOST PID") says what it can."""
        try:
            with open(self.lock) as f:
                seen = os.fstat(f.fileno())
                text = f.read()
        except FileNotFoundError:
            return {}, None
        try:
            holder = json.loads(text)
        except ValueError:
            parts = text.split()
            holder = {"host": parts[0], "pid": int(parts[1])} if len(parts) == 2 and parts[1].isdigit() else {}
        return (holder if isinstance(holder, dict) else {}), seen

    def _takeover_reason(self, holder: dict, age: float, stale: float) -> Optional[str]:
        if holder.get("host") == host_token() and isinstance(holder.get("pid"), int) and not pid_alive(holder["pid"]):
            return "its process is gone"
        if holder.get("job") and holder.get("job") == self.me["job"]:
            return f"a relaunch of the same {self.me['job'].split(':')[0]} job"
        if age > stale:
            return f"not refreshed for {age / 60:.1f} min (its --lock-stale-minutes {stale / 60:g}): its host is gone"
        return None

    def _break(self, seen) -> bool:
        """Remove the very lock file that was judged (same inode, not refreshed since): moved
        aside first, so two runs breaking it at once cannot both succeed, and a lock refreshed or
        replaced in between is put back."""
        aside = temp_path_for(self.lock.with_name(self.lock.name + ".stale"))
        try:
            os.rename(self.lock, aside)
        except FileNotFoundError:
            return False  # another run broke it first
        now = os.stat(aside)
        if (now.st_ino, now.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
            try:
                os.link(aside, self.lock)  # alive after all: put it back
            except FileExistsError:
                pass  # a third run took the name; the one we moved finds it gone at its next refresh and stops
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True

    # --- holding it --------------------------------------------------------------------------
    def holds(self) -> bool:
        holder, seen = self._read()
        return seen is not None and holder.get("nonce") == self.nonce

    def refresh(self) -> bool:
        """Touch the lock (its mtime becomes the file system's now) if it is still ours."""
        if not self.holds():
            time.sleep(min(1.0, self.interval))  # a run breaking a stale lock may be putting ours back
            if not self.holds():
                holder, _ = self._read()
                self.lost = (f"{self.what}: this run's lock {self.lock} was taken by another run"
                             + (f" ({describe(holder)})" if holder else " (removed)") + "; stopping without writing more")
                self.on_lost(self.lost)
                return False
        os.utime(self.lock)
        self.refreshes += 1
        return True

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.refresh():
                    return
            except OSError as e:  # a file server hiccup: try again at the next interval
                print(f"warning: {self.what}: could not refresh {self.lock} ({e.strerror or e})", file=sys.stderr, flush=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.holds():
            self.lock.unlink(missing_ok=True)

    def __enter__(self):
        self.acquire()
        self._thread = threading.Thread(target=self._refresh_loop, name="vrestore-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def exclusive(lock: Path, what: str, stale_minutes: float = DEFAULT_STALE_MINUTES) -> Lease:
    """`with exclusive(OUT / ".x.lock", "OUT x"):` one run at a time in OUT (a Lease)."""
    return Lease(lock, what, stale_minutes)
