"""`--engine ray`: a command's videos as Ray tasks, on this machine or a cluster.

Without an address a local instance starts on this machine's cores, without the dashboard, and
with Ray's token authentication (on by default for local instances since Ray 2.59); with one,
the driver joins that cluster (docs/cluster.md: a private network and a token). Work that holds
state (a generator on a GPU) runs on long-lived actors, one per GPU, or one per CPU slot where
there are no GPUs; each video is one task, so a video that fails fails alone, and an actor that
dies is restarted and its task retried. One progress bar covers the whole job on the driver.
"""
import dataclasses
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from tqdm import tqdm

from vrestore.pipeline.atomic import pid_alive
from vrestore.pipeline.host.limits import cpu_count, set_thread_share
from vrestore.pipeline.options import option

RETRIES = 3  # a task whose worker or node was lost runs again, up to this many times; an error
# raised by the work itself (a corrupt video) is not retried: it fails that video once, reported
CONNECT_TIMEOUT_S = 10  # --ray-address: how long to wait for the cluster's port before saying so
ENGINES = ("local", "ray")


# The cluster options of every command that takes them (restore, degrade, make-shards), written
# once: `per_task` says what one Ray task does in that command, `workers` how many run.
def engine_option(per_task: str):
    return option("local", f"local: this process; ray: {per_task}, on a local instance or --ray-address.", choices=ENGINES)


def ray_address_option(local: str = "this machine"):
    return option(None, f"With --engine ray: the cluster to join (host:port, or auto); default: start a local instance on {local}.")


def ray_workers_option(default: str):
    return option(None, f"With --engine ray: how many workers (default: {default}).")


def check_engine(engine: str, address: Optional[str], workers: Optional[int]) -> None:
    if engine not in ENGINES:
        raise ValueError(f"--engine {engine!r}: must be one of {', '.join(ENGINES)}")
    if engine != "ray" and (address or workers):
        raise ValueError("--ray-address and --ray-workers need --engine ray")
    if workers is not None and workers < 1:
        raise ValueError(f"--ray-workers {workers}: must be >= 1")
    if engine == "ray":  # a missing extra is said before any folder is made
        import_ray()


def absolute_paths(job):
    """A dataclass job with every Path field made absolute (workers run in other folders)."""
    return dataclasses.replace(job, **{f.name: getattr(job, f.name).absolute() for f in dataclasses.fields(job)
                                       if isinstance(getattr(job, f.name), Path)})


def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install 'video-restoration-gan[cluster]' (or pip install ray)") from None
    return ray


def connect(address: Optional[str] = None, num_cpus: Optional[int] = None) -> bool:
    """Join the cluster at `address` ("auto": the one this node belongs to), or start a local
    instance with `num_cpus` cores. An instance already started in this process is reused (tests
    share one). Returns whether this call started it, so the caller shuts down only its own."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    # ray.init puts its own SIGTERM handler in place (a stack dump, then exit 15): ours go back,
    # so SIGTERM unwinds like Ctrl-C, the workers are stopped and the command exits 130
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    if address:
        check_reachable(address)
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # "local": a new instance even when RAY_ADDRESS is set in the environment (Ray would
        # otherwise try to join that address and fail with its own error)
        ray.init(address="local", num_cpus=num_cpus or cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    for s, handler in handlers.items():
        if handler is not None:
            signal.signal(s, handler)
    return True


def check_reachable(address: str) -> None:
    """host:port must accept a connection within CONNECT_TIMEOUT_S, or one line says so (Ray
    itself would wait on a dead address without end). "auto" and ray:// addresses are Ray's."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as e:
        raise ValueError(f"--ray-address {address}: nothing answers there ({e})") from None


def shutdown(started: bool, wait_s: float = 15) -> None:
    """Stop the instance this process started, and wait (up to `wait_s`) until its processes,
    the workers among them, have exited: a run stopped by a signal can then tell their
    half-written files from a live run's and remove them. A cluster joined keeps running; this
    driver's tasks and actors end as it disconnects."""
    if not started:
        return
    ours = descendants(os.getpid())
    import_ray().shutdown()
    deadline = time.monotonic() + wait_s
    while any(pid_alive(p) for p in ours) and time.monotonic() < deadline:
        time.sleep(0.05)


def descendants(pid: int) -> list:
    """The processes below `pid` (children, theirs, ...), from /proc (Linux, as Ray's nodes are)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # after the name, which may hold spaces
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class Slots:
    workers: int  # actors
    gpus: bool  # one GPU each (device "cuda" inside)
    cpus: int  # cores each (torch threads)


def worker_slots(device: str, workers: Optional[int]) -> Slots:
    """One actor per GPU in the cluster (unless --device cpu); else one per CPU core, each with
    one torch thread (frames/s per core is what a CPU cluster is sized by)."""
    ray = import_ray()
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if device != "cpu" else 0
    if device.startswith("cuda") and not gpus:
        raise ValueError(f"--device {device} with --engine ray: the Ray cluster has no GPUs")
    cpus = max(1, int(resources.get("CPU", 1)))
    if gpus:
        return Slots(min(workers or gpus, gpus), True, 1)
    # more actors than CPUs would wait for a CPU that never comes: the job would hang near its end
    return Slots(min(workers or cpus, cpus), False, 1)


class VideoWorker:
    """A long-lived Ray actor: builds its state once (e.g. a generator on its GPU), then runs
    `work(state, job)` for one video per call."""

    def __init__(self, make_state: Callable, threads: int):
        import torch

        torch.set_num_threads(threads)
        set_thread_share(threads)  # the actor's share, not a thread per core of the node
        self.state = make_state()

    def run(self, work: Callable, job):
        return work(self.state, job)


def map_videos(jobs: list, make_state: Callable, work: Callable, slots: Slots, frames_of: Callable, desc: str,
               progress: bool = True) -> Iterator:
    """Yield (index, result) for each job, in completion order, with a bar over all videos
    (videos done of all, frames/s from `frames_of(result)`)."""
    ray = import_ray()
    from ray.util import ActorPool

    actor = ray.remote(VideoWorker).options(num_gpus=1 if slots.gpus else 0, num_cpus=slots.cpus,
                                            max_restarts=RETRIES, max_task_retries=RETRIES)
    actors = [actor.remote(make_state, slots.cpus) for _ in range(max(1, min(slots.workers, len(jobs))))]
    pool = ActorPool(actors)
    bar = tqdm(total=len(jobs), unit="video", desc=desc, disable=not progress, dynamic_ncols=True)
    frames, t0 = 0, time.perf_counter()
    try:
        for index, result in pool.map_unordered(lambda a, ij: a.run.remote(_indexed(work), ij), list(enumerate(jobs))):
            frames += frames_of(result)
            bar.update(1)
            bar.set_postfix(frames=frames, frames_s=f"{frames / (time.perf_counter() - t0):.0f}", workers=len(actors), refresh=False)
            yield index, result
    finally:
        bar.close()
        for a in actors:
            ray.kill(a)


class _indexed:
    """work(state, job) -> (index, result) for jobs handed over as (index, job)."""

    def __init__(self, work):
        self.work = work

    def __call__(self, state, indexed_job):
        index, job = indexed_job
        return index, self.work(state, job)


def run_tasks(fn: Callable, args_list: list, on_done: Callable) -> None:
    """Run `fn(*args)` as one Ray task per entry of `args_list` (one CPU each), retried if its
    worker or node is lost (never for an error `fn` raises); `on_done(i, result)` on the driver
    as each finishes."""
    ray = import_ray()
    task = ray.remote(fn).options(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)
    # No ray.cancel on Ctrl-C or SIGTERM: the tasks are this driver's, and Ray ends them when it
    # disconnects (shutdown) on a cluster as on a local instance; a cancel racing a task's retry
    # can abort the driver itself (Ray 2.60: "Tried to complete task that was not pending")
    pending = {task.remote(*args): i for i, args in enumerate(args_list)}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            on_done(pending.pop(ref), ray.get(ref))
