"""Write files under a temporary name and rename them, so a crash never leaves a half-written
file under its real name."""
import functools
import glob
import hashlib
import json
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

TMP_MARK = ".vrestore-tmp-"  # only this tool writes names with this marker; cleanup touches nothing else
NAME_MAX = 255  # bytes in one file name on ext4, xfs, btrfs, APFS
# NAME.vrestore-tmp-<host>-<pid>: <host> tells this machine's processes from another's on a shared disk
TEMP_NAME = re.compile(re.escape(TMP_MARK) + r"(?P<host>[0-9a-f]{10})-(?P<pid>\d+)$")


@functools.cache
def host_token() -> str:
    """Ten hex digits naming this host and PID namespace: two machines (or two containers on
    one, each with its own process table) never share one, so a PID is only ever judged dead by
    a process that could see it alive."""
    try:
        pid_ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        pid_ns = 0
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return hashlib.sha1(f"{socket.gethostname()}/{boot}/{pid_ns}".encode()).hexdigest()[:10]


def temp_path_for(path: Path) -> Path:
    """PATH.vrestore-tmp-HOST-PID beside PATH: host and pid keep two processes (on one machine
    or on two nodes sharing a disk) from ever sharing a temp file. A name too long for the suffix
    is shortened, with a hash of the whole name so two long names never share a temp file."""
    suffix = f"{TMP_MARK}{host_token()}-{os.getpid()}"
    name = path.name
    # os.fsencode: a name that is not valid UTF-8 (bytes kept as surrogates) is still a name
    if len(os.fsencode(name + suffix)) > NAME_MAX:
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
        keep = NAME_MAX - len(suffix.encode()) - len(digest) - 1
        name = os.fsdecode(os.fsencode(name)[:keep]) + "~" + digest
    return path.with_name(name + suffix)


def fit_name(name: str) -> str:
    """`name` as it is when the file system takes it (255 bytes), else its stem cut short and
    given a hash of the whole name, its extension kept: a name derived from a long input name
    (`a_mp4.avi` beside `a_mkv.avi`, `NAME_mask.avi`) still fits, and two stay apart."""
    if len(os.fsencode(name)) <= NAME_MAX:
        return name
    stem, dot, ext = name.rpartition(".")
    ext = dot + ext if stem and len(ext) <= 8 else ""
    stem = stem if ext else name
    digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
    keep = NAME_MAX - len(os.fsencode(ext)) - len(digest) - 1
    return os.fsdecode(os.fsencode(stem)[:keep]).rstrip("\udcff") + "~" + digest + ext


def marker_path(path: Path, tag: str) -> Path:
    """`.NAME.TAG` beside `path` (a note about it, e.g. "partial"), shortened as temp_path_for
    shortens a name too long for its suffix."""
    name, suffix = "." + Path(path).name, f".{tag}"
    if len(os.fsencode(name + suffix)) > NAME_MAX:
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
        keep = NAME_MAX - len(suffix.encode()) - len(digest) - 1
        name = os.fsdecode(os.fsencode(name)[:keep]) + "~" + digest
    return Path(path).with_name(name + suffix)


@contextmanager
def kept_only_if_used(folder: Path):
    """A folder the block may create (an output folder, for its lock): removed again when the
    block fails and the folder is still empty, so a refused run leaves nothing behind."""
    existed = Path(folder).exists()
    try:
        yield
    except BaseException:
        if not existed:
            try:
                Path(folder).rmdir()  # only if empty
            except OSError:
                pass
        raise


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


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's: its entries, i.e. a rename) data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path, durable: bool = False, keep_previous: Optional[Path] = None):
    """Yield a temporary path to write; rename it onto `path` only if the block succeeds.
    durable: the file and then its folder are fsynced, so after a power cut the new name holds
    the whole new file (or the rename never happened). keep_previous: the file `path` held is
    first renamed there, so a reader finds a complete older one even if the new one is lost."""
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        with naming(path):
            yield tmp
            if durable:
                fsync_path(tmp)
            if keep_previous is not None and path.exists():
                os.replace(path, keep_previous)
            os.replace(tmp, path)
            if durable:
                fsync_path(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1) + "\n")


def ours_and_dead(p: Path) -> bool:
    """A temp file this tool wrote, on this host, whose process is gone. Another host's files
    are never judged: its PIDs mean nothing here."""
    m = TEMP_NAME.search(p.name)
    return bool(m) and m["host"] == host_token() and not pid_alive(int(m["pid"]))


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie, exited but not yet reaped by
    its parent, writes nothing more: not alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: os.kill's answer


def remove_dead_temp_files(folder: Path, prefix: str = "") -> int:
    """Delete, in `folder` and below, the temp files (names starting with `prefix`) of this
    host's processes that no longer run (a run killed before it could clean up). A live run's
    files, another host's, and anything without this tool's marker are left alone."""
    removed = 0
    if not Path(folder).is_dir():
        return 0
    for p in Path(folder).rglob(f"{glob.escape(prefix)}*{TMP_MARK}*"):
        if p.is_file() and not p.is_symlink() and ours_and_dead(p):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def publish(tmp: Path, path: Path, replace: bool) -> None:
    """Give the finished `tmp` its name. replace=False never replaces a file that took the name
    meanwhile (another run, by hand): a hard link creates the name only if it is free, then the
    temporary name goes. A file system without hard links gets a rename after a check."""
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        Path(tmp).unlink(missing_ok=True)
        raise FileExistsError(f"{path} appeared while this run wrote it (another run?); it was kept, --overwrite replaces it") from None
    except OSError:  # no hard links here (some FUSE or SMB mounts)
        if Path(path).exists():
            Path(tmp).unlink(missing_ok=True)
            raise FileExistsError(f"{path} appeared while this run wrote it (another run?); it was kept, --overwrite replaces it") from None
        os.replace(tmp, path)
        return
    Path(tmp).unlink()
