"""Slurm job arrays: `sbatch --array=0-7 ...` runs 8 copies of a command, each told its index."""
import os
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
