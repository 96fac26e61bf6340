"""A real one-node Slurm cluster for the tests: Debian's munged, slurmctld and slurmd on
localhost, started as root in a folder of the test run's own (its own config, ports, state and
munge key), stopped at the end. scripts/setup_env.sh installs slurm-wlm and munge with the test
dependencies, as it installs ffmpeg."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue")


def unavailable() -> str:
    """Why no cluster can be started here, or ""."""
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing; scripts/setup_env.sh test installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.procs = []

    def start(self) -> "SlurmCluster":
        r = self.root
        for d in ("state", "spool", "log", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        sock = r / "munge" / "munge.socket"
        subprocess.run(["munged", "--force", f"--socket={sock}", f"--key-file={key}", f"--log-file={r / 'log' / 'munged.log'}",
                        f"--pid-file={r / 'munge' / 'munged.pid'}", f"--seed-file={r / 'munge' / 'munged.seed'}"], check=True)
        memory_mb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1]) // 1024 - 1024
        self.conf.write_text("\n".join([
            "ClusterName=vrestore-test", "SlurmctldHost=localhost", "SlurmUser=root", "SlurmdUser=root",
            # cred_expire: a requeued job may start again after 6 s instead of Slurm's 2 minutes
            "AuthType=auth/munge", f"AuthInfo=socket={sock},cred_expire=5", "CredType=cred/munge",
            f"StateSaveLocation={r / 'state'}", f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}", f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
            # what a container allows: processes tracked by their parentage, no cgroups or affinity
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            # a requeued job that may start again (cred_expire) starts within a second, not at the
            # next scheduling pass (a minute)
            "SchedulerType=sched/backfill", "SchedulerParameters=bf_interval=1,sched_interval=1",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "ReturnToService=2", "MpiDefault=none", "JobCompType=jobcomp/none", "AccountingStorageType=accounting_storage/none",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN",
            "PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP", ""]))
        for daemon in (["slurmctld", "-c", "-i"], ["slurmd"]):
            subprocess.run(daemon, env=self.env, check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the test Slurm cluster did not come up: sinfo says {state!r}; see {r / 'log'}")

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "--user=root"], env=self.env, capture_output=True)
        subprocess.run(["scontrol", "shutdown"], env=self.env, capture_output=True, timeout=60)
        pids = []
        for pid_file in (self.root / "slurmd.pid", self.root / "slurmctld.pid", self.root / "munge" / "munged.pid"):
            try:
                pids.append(int(pid_file.read_text()))
                os.kill(pids[-1], signal.SIGTERM)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 10
        for pid in pids:  # none may outlive the test run
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def run(self, *args, check=True) -> str:
        r = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def submit(self, *args, env=None) -> str:
        r = subprocess.run(["sbatch", "--parsable", *map(str, args)], env=dict(self.env, **(env or {})), capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"sbatch: {r.stderr.strip()}")
        return r.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict:
        """scontrol's fields of the job (JobState, Restarts, Requeue, ...)."""
        out = self.run("scontrol", "show", "job", "--oneliner", job_id, check=False)
        return dict(f.split("=", 1) for f in out.split() if "=" in f)

    def wait(self, job_id: str, until, timeout: float = 180, what: str = "") -> dict:
        """Poll the job until `until(fields)` holds; the fields then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fields = self.job(job_id)
            if until(fields):
                return fields
            time.sleep(0.25)
        raise AssertionError(f"job {job_id}: {what or 'condition'} not reached in {timeout:.0f} s: {fields}")

    def update(self, job_id: str, **fields) -> None:
        self.run("scontrol", "update", f"jobid={job_id}", *(f"{k}={v}" for k, v in fields.items()))
