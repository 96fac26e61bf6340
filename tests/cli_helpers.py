"""What the command-line tests share: the installed commands run in this process or as their own
process, small videos made with ffmpeg, ffprobe readouts, and the one-line error checks."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


BIN = Path(sys.executable).parent  # the installed commands
ODD_NAMES = ["name with space.avi", "é ü.avi", "shell $(x);'q\".avi"]
PAIRS = ["pair.avi", "pair.mp4", "a.b.avi", "a_b.avi"]
UNREADABLE = {"empty.avi", "text.mp4", "audio_only.mp4"}


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def clip(path, seconds=1, rate=10, size="64x48", codec="mpeg4", extra=()):
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}", *extra, "-c:v", codec, path)
    return path


def run(cmd, *args, process=False, **kw):
    """`cmd ARGS` as the installed command runs it: in this process (cli_run) unless `process`
    or a subprocess keyword (env, cwd) asks for a process of its own (signals, the environment,
    the console's encoding, a second Ray instance)."""
    if process or kw or cmd not in ("vrestore", "make-shards"):
        return subprocess.run([str(BIN / cmd), *map(str, args)], capture_output=True, text=True, timeout=300, **kw)
    return cli_run(cmd, *args)


def cli_run(program, *args):
    """`program ARGS` run in this process by click's runner: the installed command's own code
    (its options, one-line errors, exit codes and output), without a Python and torch start-up
    (about 2 s) for each call."""
    from click.testing import CliRunner

    from vrestore.cli import cli, make_shards_cmd

    r = CliRunner().invoke(make_shards_cmd if program == "make-shards" else cli, [str(a) for a in args], catch_exceptions=False)
    return subprocess.CompletedProcess([program, *args], r.exit_code, r.stdout, r.stderr)


def failed_names(summary: str) -> set:
    """The videos a degrade/restore summary lists as failed ("  failed: NAME: reason")."""
    return {ln.split("failed: ", 1)[1].split(":")[0] for ln in summary.splitlines() if ln.startswith("  failed: ")}


def tree_hashes(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def one_line(r, code=2):
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == code and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def probe(path, *entries, stream="v:0"):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", ",".join(entries), "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def video_pts(path):
    packets = probe(path, "packet=pts_time")["packets"]
    return sorted(float(p["pts_time"]) for p in packets)


def audio_onset_ms(path) -> float:
    """When a file's first audio track first sounds, in ms from time 0, as a player decodes it."""
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "a:0", "-f", "s16le", "-ac", "1", "-ar", "44100", "-"],
                         capture_output=True, check=True).stdout
    return float(np.argmax(np.abs(np.frombuffer(pcm, np.int16)) > 1000)) / 44.1
