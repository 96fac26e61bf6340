"""Write files under a temporary name and rename them, so a crash never leaves a half-written
file under its real name."""
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp-"


NAME_MAX = 255  # bytes in one file name on ext4, xfs, btrfs, APFS


def temp_path_for(path: Path) -> Path:
    """PATH.tmp-PID beside PATH. The pid keeps two processes (e.g. two nodes on a shared disk)
    from sharing a temp file. A name too long for the suffix is shortened, with a hash of the
    whole name so two long names never share a temp file."""
    suffix = f"{TMP_MARK}{os.getpid()}"
    name = path.name
    if len((name + suffix).encode()) > NAME_MAX:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        keep = NAME_MAX - len(suffix.encode()) - len(digest) - 1
        name = name.encode()[:keep].decode(errors="ignore") + "~" + digest
    return path.with_name(name + suffix)


def check_writable(folder: Path, option: str) -> None:
    """Create `folder` if missing and write a probe file in it, so an unwritable place is one line
    naming the option before any work, not a traceback after it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_path_for(folder / ".vrestore-write-check")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"{option}: cannot write in {folder} ({e.strerror or e})") from None


@contextmanager
def naming(path):
    """Give an OSError raised inside the block `path` as its file name when it has none (a write
    into an open stream fails with "No space left on device" and no name): the one-line error
    then says which file could not be written."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


@contextmanager
def atomic_path(path):
    """Yield a temporary path to write; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        with naming(path):
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
