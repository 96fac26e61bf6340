"""The job's own limits, not the host's: CPUs from this process's affinity and its cgroup's CPU
quota, memory from its cgroup's limit (v2 and v1) when lower than what the host has free. A
Slurm job, a container or a `taskset` sees what it was given; the defaults of `--workers`,
Ray's local instance and restore's memory budget all come from here.
"""
import math
import os
from pathlib import Path
from typing import Optional

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_dirs() -> list:
    """This process's cgroup folders, innermost first, then each parent up to the root: a limit
    set on any of them binds (Slurm and systemd put it on a parent). v2 and v1 alike."""
    dirs = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return dirs
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        bases = [CGROUP_ROOT] if controllers == "" else [CGROUP_ROOT / c for c in controllers.split(",")] + [
            CGROUP_ROOT / controllers]
        for base in bases:
            d = base / rel.lstrip("/")
            while True:
                if d.is_dir() and d not in dirs:
                    dirs.append(d)
                if d == base or base not in d.parents:
                    break
                d = d.parent
    return dirs


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota() -> Optional[float]:
    """CPUs the cgroup's quota allows (cpu.max, or v1 cfs_quota/cfs_period); None: no quota."""
    quotas = []
    for d in _cgroup_dirs():
        if (v2 := _read(d / "cpu.max")) is not None:
            quota, _, period = v2.partition(" ")
            if quota != "max" and period:
                quotas.append(int(quota) / int(period))
        q, p = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        if q is not None and p and int(q) > 0:
            quotas.append(int(q) / int(p))
    return min(quotas) if quotas else None


def cpu_count() -> int:
    """CPUs this job may use: its affinity (taskset, Slurm's cpuset), lowered by a cgroup quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if (quota := cgroup_cpu_quota()) is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


_share = None  # CPUs this process may use when it is one of several workers (a Ray actor)


def set_thread_share(n) -> None:
    """Bound this process's threads (each ffmpeg it starts, torch) to `n` CPUs; None: the job's."""
    global _share
    _share = None if n is None else max(1, int(n))


def thread_share():
    """The share set for this process (a Ray worker's CPUs), or None: no share was set."""
    return _share


def cgroup_memory_free() -> Optional[int]:
    """Bytes the cgroup may still allocate (limit minus usage, the tightest level); None: no limit."""
    free = []
    for d in _cgroup_dirs():
        for limit_name, usage_name in (("memory.max", "memory.current"), ("memory.limit_in_bytes", "memory.usage_in_bytes")):
            limit, usage = _read(d / limit_name), _read(d / usage_name)
            # v1 writes "no limit" as a huge number near 2^63
            if limit is not None and limit != "max" and int(limit) < 2**60:
                free.append(max(0, int(limit) - int(usage or 0)))
    return min(free) if free else None


def host_memory_free() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def memory_free() -> int:
    """Bytes this job may still use: the host's MemAvailable, or its cgroup's room when lower."""
    host, group = host_memory_free(), cgroup_memory_free()
    return host if group is None else min(host, group)
