"""One runner for a command's per-video jobs, here or on Ray: restore and degrade (and anything
shaped like them) hand it their planned jobs, a state factory (a generator on a device, or
nothing) and `work(state, job, on_frames)`, and get every job's outcome back by index.

An outcome is ("failed", reason) or ("done", ...); a video that fails fails alone, and its line
is printed as it happens. One bar covers all videos, with frames and frames/s, on either engine.
"""
import time
from typing import Callable, Optional

from tqdm import tqdm

from vrestore.pipeline.cluster import ray_engine


def run_jobs(jobs: list, make_state: Callable, work: Callable, frames_of: Callable, desc: str, engine: str = "local",
             device: str = "cpu", ray_address: Optional[str] = None, ray_workers: Optional[int] = None,
             progress: bool = True) -> dict:
    """{index: outcome} for `jobs` (dataclasses with a `rel` name). `frames_of(outcome)` counts a
    finished job's frames for the bar. engine "local": one state, jobs in order in this process;
    "ray": a local instance (or the cluster at `ray_address`), `ray_workers` actors (default one
    per GPU, else one per CPU), each with its own state."""
    if not jobs:
        return {}
    say = tqdm.write if progress else (lambda line: None)  # --quiet: the summary alone
    outcomes = {}
    if engine == "local":
        state = make_state()
        bar = tqdm(total=len(jobs), unit="video", desc=desc, disable=not progress, dynamic_ncols=True)
        frames, t0 = [0], time.perf_counter()

        def count(n: int) -> None:  # frames as they stream, so a long video shows progress
            frames[0] += n
            bar.set_postfix(frames=frames[0], frames_s=f"{frames[0] / (time.perf_counter() - t0):.0f}", refresh=False)
        try:
            for i, job in enumerate(jobs):
                outcomes[i] = work(state, job, count)
                if outcomes[i][0] == "failed":
                    say(f"failed: {job.rel}: {outcomes[i][1]}")
                bar.update(1)
        finally:
            bar.close()
        return outcomes
    started = ray_engine.connect(ray_address)
    try:
        slots = ray_engine.worker_slots(device, ray_workers)
        sent = [ray_engine.absolute_paths(job) for job in jobs]  # a worker's working folder is not ours
        for i, outcome in ray_engine.map_videos(sent, make_state, work, slots, frames_of, desc, progress):
            outcomes[i] = outcome
            if outcome[0] == "failed":
                say(f"failed: {jobs[i].rel}: {outcome[1]}")
    finally:
        ray_engine.shutdown(started)
    return outcomes
