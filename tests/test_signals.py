"""Ctrl-C and SIGTERM: every command stops within seconds, exits 130 without a traceback, and
leaves no temporary file; under Ray, every worker stops too."""
import os
import signal
import subprocess
import time

import pytest

from cli_helpers import BIN, clip
from vrestore.pipeline.atomic import TMP_MARK, host_token


@pytest.mark.slow
@pytest.mark.parametrize("command", ["degrade", "restore"])
def test_sigterm_leaves_no_temp_file_and_exits_130(command, weights, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    clip(src / "long.avi", seconds=40, rate=25, size="320x240")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f"long.avi{TMP_MARK}{host_token()}-999999999"  # a dead process's leftover: removed by the next run
    stale.write_bytes(b"x")
    args = [src, out, "--quiet"] if command == "degrade" else [src, "--weights", weights, "--output-dir", out, "--quiet"]
    proc = subprocess.Popen([str(BIN / "vrestore"), command, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not [p for p in out.glob(f"long.avi{TMP_MARK}*") if p != stale] and time.monotonic() < deadline:
        time.sleep(0.1)  # wait until it is writing
    assert not stale.exists(), "the dead process's temp file was not removed"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().startswith("error: interrupted")
    assert list(out.rglob("*")) == [], list(out.rglob("*"))


@pytest.mark.slow
def test_ctrl_c_in_make_shards_exits_130_without_noise(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # Enough videos that the signal lands mid-run: the first shard is done after the first video,
    # and 29 remain (~7 s of work), a margin for slow machines.
    for i in range(30):
        clip(src / f"c{i:02d}.avi", seconds=4, rate=25, size="320x240")
    out = tmp_path / "out"
    # Started as a non-interactive shell starts `make-shards ... &`: SIGINT inherited as ignored,
    # where Python installs no Ctrl-C handler of its own (the CLI must, or `kill -INT` goes unheard).
    proc = subprocess.Popen([str(BIN / "make-shards"), str(src), str(out), "--quiet", "--workers", "1", "--mix-window", "1",
                             "--max-frames", "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 60
    while not list(out.glob("*.tar")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "make-shards finished before the test could interrupt it"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Exception ignored" not in err and "Traceback" not in err, err
    assert not [p for p in out.iterdir() if TMP_MARK in p.name]


def processes_with(tag: str) -> list:
    """PIDs of the live processes whose environment holds `tag` (a command, and every worker of
    the Ray instance it started, inherit it)."""
    found = []
    for env in __import__("pathlib").Path("/proc").glob("[0-9]*/environ"):
        try:
            if tag.encode() in env.read_bytes() and env.parent.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(env.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
# degrade and restore hand their jobs to the same Ray actors (pipeline/cluster/ray_engine.py): one of the two suffices
@pytest.mark.parametrize("command,sig", [("restore", signal.SIGINT), ("make-shards", signal.SIGTERM)])
def test_a_signal_during_a_ray_run_stops_every_worker_and_leaves_no_temporary_file(command, sig, weights, tmp_path):
    """SIGTERM or SIGINT while Ray workers write (actors for degrade and restore, tasks for
    make-shards): one line, exit 130, no stack dump, no process of the run left, no temporary file."""
    src = tmp_path / "in" / "A"
    src.mkdir(parents=True)
    for g in (1, 2):
        clip(src / f"v_A_g0{g}_c01.avi", seconds=10, rate=25, size="640x480")
    out, tag = tmp_path / "out", f"VRESTORE_RUN_{os.getpid()}_{command}"
    argv = {"make-shards": [BIN / "make-shards", src.parent, out, "--mix-window", "1"],
            "degrade": [BIN / "vrestore", "degrade", src.parent, out],
            "restore": [BIN / "vrestore", "restore", src.parent, "--weights", weights, "--output-dir", out]}[command] + ["--engine", "ray"]
    proc = subprocess.Popen(list(map(str, argv)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **{tag: "1"}))
    deadline = time.monotonic() + 120
    while not any(".vrestore-tmp-" in p.name for p in out.rglob("*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before a worker wrote"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "SIGTERM received" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted"), stderr[-3000:]
    assert not processes_with(tag)
    assert not [p for p in out.rglob("*") if ".vrestore-tmp-" in p.name]


@pytest.mark.slow
def test_sample_videos_stops_within_seconds_of_a_signal(tmp_path):
    """Mid-work (its first clip written), SIGTERM ends sample-videos within 5 s: exit 130, one
    line, no half-written clip (it kept rendering for minutes)."""
    out = tmp_path / "out"
    proc = subprocess.Popen([str(BIN / "vrestore"), "sample-videos", str(out), "--workers", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not list(out.rglob("*.avi")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "sample-videos ended before the signal"
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert time.monotonic() - t0 < 5 and proc.returncode == 130, (time.monotonic() - t0, err[-2000:])
    assert err.strip().splitlines()[-1].startswith("error: interrupted") and "Traceback" not in err, err[-2000:]
    assert not [p for p in out.rglob("*") if ".vrestore-tmp-" in p.name]
