"""A disk that fills up: every command fails in one line and leaves nothing partial under a
finished name (each test mounts a small tmpfs in a user and mount namespace of its own)."""
import subprocess

import pytest
import torch

from cli_helpers import BIN, clip, tree_hashes
from vrestore.pipeline.atomic import TMP_MARK
from vrestore.models import GeneratorConfig, build_generator
from vrestore.models.weights import save_weights


def on_small_disk(tmp_path, size_kib, program, *argv):
    """Run `PROGRAM ARGV` (an installed command) with `tmp_path/disk` a real tmpfs of SIZE_KIB (a mount namespace of its
    own, so no privileges are needed where user namespaces are allowed); returns the result and
    the names left on that disk afterwards (read inside the namespace, which ends with the run)."""
    disk = tmp_path / "disk"
    disk.mkdir(exist_ok=True)
    probe_cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{disk}'"]
    if subprocess.run(probe_cmd, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small file system here (no user namespaces)")
    script = (f'mount -t tmpfs -o size={size_kib}k tmpfs "$0" && "$@"; rc=$?; '
              f'echo "LEFT:$(cd "$0" && find . -mindepth 1 | sort | tr "\\n" " ")" >&2; exit $rc')
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(disk),
                        str(BIN / program), *map(str, argv)], capture_output=True, text=True, timeout=600)
    lines = r.stderr.strip().splitlines()
    left = lines.pop().removeprefix("LEFT:").split()
    return r.returncode, lines, left, disk


def test_make_shards_on_a_full_disk_is_one_line_and_leaves_nothing_partial(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        clip(src / f"v{i}.avi", seconds=2, size="160x120")
    before = tree_hashes(src)
    rc, lines, left, disk = on_small_disk(tmp_path, 200, "make-shards", src, tmp_path / "disk" / "shards", "--quiet",
                                          "--workers", "1", "--format", "png")
    assert rc == 1 and len(lines) == 1 and "No space left on device" in lines[0] and str(disk) in lines[0], lines
    assert not [n for n in left if TMP_MARK in n], left
    assert tree_hashes(src) == before


@pytest.mark.slow
def test_train_save_on_a_full_disk_is_one_line(sample_shards, tmp_path):
    # ngf 16 weights (~14 MB) cannot fit a 2 MB disk; the first save fails after one step
    rc, lines, left, disk = on_small_disk(tmp_path, 2048, "vrestore", "train", "--shards", sample_shards, "--out", tmp_path / "disk" / "run",
                                          "--max-steps", "1", "--batch-size", "1", "--crop", "64", "--ngf", "16", "--val-frames", "1",
                                          "--quiet", "--device", "cpu")
    # the start line, then one error line naming the file
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert rc == 1 and lines[-1] == errors[-1] and len(errors) == 1 and "Traceback" not in "\n".join(lines), lines
    assert "No space left on device" in errors[0] and str(disk) in errors[0], lines
    assert not [n for n in left if TMP_MARK in n], left


@pytest.mark.slow
def test_export_on_a_full_disk_is_one_line(tmp_path, weights):
    big = tmp_path / "big.pth"
    torch.manual_seed(0)
    save_weights(big, build_generator(GeneratorConfig(ngf=8, depth=5)))  # 1 MB of weights: 4x the disk
    for fmt in ("onnx", "torchscript"):
        rc, lines, left, disk = on_small_disk(tmp_path, 256, "vrestore", "export", big, tmp_path / "disk" / f"g.{fmt}", "--format", fmt)
        assert rc == 1 and len(lines) == 1 and "No space left on device" in lines[0] and str(disk) in lines[0], (fmt, lines)
        assert left == [], (fmt, left)


def frames_left_on_a_small_disk(tmp_path, size_kib, argv) -> tuple:
    """Run `vrestore ARGV` with tmp_path/disk a tmpfs of SIZE_KIB (its own mount namespace, as
    on_small_disk above), then, still inside, count the frames of every .avi left on
    it: (exit code, stderr lines, {name: frames})."""
    disk = tmp_path / "disk"
    disk.mkdir(exist_ok=True)
    if subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode:
        pytest.skip("cannot mount a small file system here (no user namespaces)")
    script = (f'mount -t tmpfs -o size={size_kib}k tmpfs "$0" && "$@"; rc=$?; cd "$0"; for f in $(find . -name "*.avi"); do '
              'echo "LEFT:$f:$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$f")" >&2; '
              'done; exit $rc')
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(disk), str(BIN / "vrestore"),
                        *map(str, argv)], capture_output=True, text=True, timeout=600)
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("LEFT:")]
    left = dict(ln.removeprefix("LEFT:").rsplit(":", 1) for ln in r.stderr.splitlines() if ln.startswith("LEFT:"))
    return r.returncode, lines + r.stdout.splitlines(), left


@pytest.mark.slow
@pytest.mark.parametrize("command", ["restore", "degrade"])
def test_a_full_disk_never_leaves_a_short_output_under_its_name(command, weights, tmp_path):
    """Whatever the disk's size, every video left under its final name has all 30 frames, and a
    video that did not fit is reported failed (exit 1), never "done" with a truncated file."""
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "a.avi", seconds=3, rate=10, size="320x240")
    out = tmp_path / "disk" / "out"
    argv = ([command, src, "--weights", weights, "--output-dir", out, "--side-by-side", "--quiet"] if command == "restore"
            else [command, src, out, "--codec", "mjpeg", "--quiet"])
    outcomes = set()
    for size_kib in (700, 8000):  # full mid-video (the side-by-side came out short there); enough
        code, lines, left = frames_left_on_a_small_disk(tmp_path, size_kib, argv)
        assert code in (0, 1), lines
        assert all(n == "30" for n in left.values()), (size_kib, left, lines)  # nothing short under a final name
        if code == 1:
            assert any("failed: a.avi" in ln for ln in lines), lines
        else:
            assert "./out/a.avi" in left, (size_kib, left)
        outcomes.add(code)
    assert outcomes == {0, 1}, outcomes  # the sizes span a disk too small and one large enough
