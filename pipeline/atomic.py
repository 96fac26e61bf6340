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
