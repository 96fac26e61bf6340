"""Write files under a temporary name and rename them, so a crash never leaves a half-written
file under its real name."""
import json
import os
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp-"


def temp_path_for(path: Path) -> Path:
    # The pid keeps two processes (e.g. two nodes on a shared disk) from sharing a temp file.
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")


@contextmanager
def atomic_path(path):
    """Yield a temporary path to write; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1) + "\n")


def remove_stale_temp_files(folder: Path, stem_prefix: str) -> int:
    """Delete temp files an interrupted run left behind; returns how many."""
    removed = 0
    for p in folder.glob(f"{stem_prefix}*{TMP_MARK}*"):
        p.unlink()
        removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_dead_temp_files(folder: Path) -> int:
    """Delete, below `folder`, the temp files of processes that no longer run (a run killed
    before it could clean up); another live run's files are left alone. Returns how many."""
    removed = 0
    if not Path(folder).is_dir():
        return 0
    for p in Path(folder).rglob(f"*{TMP_MARK}*"):
        pid = p.name.rsplit(TMP_MARK, 1)[1]
        if p.is_file() and pid.isdigit() and not pid_alive(int(pid)):
            p.unlink(missing_ok=True)
            removed += 1
    return removed
