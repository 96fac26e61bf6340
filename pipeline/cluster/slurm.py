"""Slurm: job arrays (`sbatch --array=0-7 ...` runs 8 copies of a command, each told its index)
and a training job that requeues itself after Slurm's warning signal."""
import os
import subprocess
import sys
from typing import Optional, Tuple


def slurm_array_part(environ=os.environ) -> Optional[Tuple[int, int, str]]:
    """(count, index, what to tell the user) of this array task, or None outside an array.
    The index counts from the array's first id (`--array=1-8` gives indexes 0..7)."""
    task = environ.get("SLURM_ARRAY_TASK_ID")
    count = environ.get("SLURM_ARRAY_TASK_COUNT")
    if task is None or count is None:
        return None
    values = {}
    for name, value in (("SLURM_ARRAY_TASK_ID", task), ("SLURM_ARRAY_TASK_COUNT", count),
                        ("SLURM_ARRAY_TASK_MIN", environ.get("SLURM_ARRAY_TASK_MIN", "0"))):
        if not value.strip().isdigit():
            raise ValueError(f"{name}={value!r} in the environment is not a number; unset it, or give --num-nodes and --node-rank")
        values[name] = int(value)
    first, count = values["SLURM_ARRAY_TASK_MIN"], values["SLURM_ARRAY_TASK_COUNT"]
    index = values["SLURM_ARRAY_TASK_ID"] - first
    if not 0 <= index < count:
        raise ValueError(f"SLURM_ARRAY_TASK_ID {task} is outside the array ({count} tasks from {first}); give --num-nodes and --node-rank")
    return count, index, (f"Slurm array task {task} (SLURM_ARRAY_TASK_ID; {count} tasks from {first}): "
                          f"--num-nodes {count} --node-rank {index}")


def requeue_this_job(environ=os.environ) -> str:
    """After Slurm's warning signal, the checkpoint saved: put this job back in the queue when it
    was submitted with --requeue (or JobRequeue=1), so the same script continues the run. Returns
    what to tell the user; never raises (the state is saved whatever happens here)."""
    job = environ.get("SLURM_JOB_ID")
    if not job:
        return "SIGUSR1 outside a Slurm job: saved; the same command continues the run"
    try:
        shown = subprocess.run(["scontrol", "show", "job", "--oneliner", job], capture_output=True, text=True, timeout=60,
                               env=dict(environ))
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"Slurm job {job}: saved, but scontrol could not say whether it may be requeued ({e}); resubmit it to continue"
    fields = dict(f.split("=", 1) for f in shown.stdout.split() if "=" in f)
    if shown.returncode != 0:
        return f"Slurm job {job}: saved, but scontrol show job failed ({shown.stderr.strip()}); resubmit it to continue"
    if fields.get("Requeue") != "1":
        return (f"Slurm job {job}: saved; it was not submitted with --requeue, so it ends here "
                f"(sbatch --requeue, or resubmit the same script, continues the run)")
    # said before: Slurm stops this start (SIGTERM) as it requeues it, often before a later line is written
    print(f"Slurm job {job}: saved; requeueing it, its next start continues the run with the same command",
          file=sys.stderr, flush=True)
    r = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60, env=dict(environ))
    if r.returncode != 0:
        return f"Slurm job {job}: saved, but scontrol requeue failed ({r.stderr.strip() or r.returncode}); resubmit it to continue"
    return f"Slurm job {job}: saved and requeued; its next start continues the run with the same command"
