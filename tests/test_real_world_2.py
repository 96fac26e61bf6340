"""Real-world files, round 2 (issue 23): timing and shape kept, outputs never over inputs by any
path, names matched back, long names, dangling links, one-line errors. Inputs made here with
ffmpeg; each test asserts what a user sees: exit code, one line, inputs unchanged, timestamps."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from test_real_world import BIN, clip, cli_run, ffmpeg, run, tree_hashes
from vrestore.pipeline.atomic import TMP_MARK
from vrestore.models import GeneratorConfig, build_generator
from vrestore.models.weights import save_weights


def probe(path, *entries, stream="v:0"):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", ",".join(entries), "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def video_pts(path):
    packets = probe(path, "packet=pts_time")["packets"]
    return sorted(float(p["pts_time"]) for p in packets)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w2") / "g.pth"
    save_weights(path, build_generator(GeneratorConfig(ngf=4, depth=5)))
    return path


@pytest.mark.slow
def test_phone_mp4_with_aac_keeps_even_timestamps_and_audio_in_step(tmp_path, weights):
    """H.264 + AAC (the encoder's priming packet at -0.023 s) restored to .avi: 100 frames at
    0, 0.04, 0.08 ..., the duration of the source, the audio starting with the video."""
    src = tmp_path / "in" / "phone.mp4"
    src.parent.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-t", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", src)
    for codec in ("mjpeg", "ffv1"):
        r = run("vrestore", "restore", src.parent, "--weights", weights, "--output-dir", tmp_path / codec, "--codec", codec, "--quiet")
        assert r.returncode == 0, r.stderr
        out = tmp_path / codec / "phone.avi"
        pts = video_pts(out)
        assert len(pts) == 100 and pts[:3] == [0.0, 0.04, 0.08] and pts[-1] == pytest.approx(3.96)
        audio = probe(out, "stream=start_time,codec_name", stream="a:0")["streams"][0]
        assert float(audio["start_time"]) == 0.0 and audio["codec_name"] == "pcm_s16le"


@pytest.mark.slow
def test_anamorphic_video_keeps_its_display_aspect(tmp_path, weights):
    src = tmp_path / "in" / "dv.mp4"
    src.parent.mkdir()
    clip(src, size="64x48", codec="libx264", extra=("-vf", "setsar=16/11", "-pix_fmt", "yuv420p"))
    for cmd, out in (("restore", tmp_path / "r" / "dv.avi"), ("degrade", tmp_path / "d" / "dv.avi")):
        extra = ("--weights", weights, "--output-dir", out.parent) if cmd == "restore" else (out.parent,)
        r = run("vrestore", cmd, src.parent, *extra, "--quiet")
        assert r.returncode == 0, r.stderr
        s = probe(out, "stream=width,height,sample_aspect_ratio,display_aspect_ratio")["streams"][0]
        assert (s["width"], s["height"], s["sample_aspect_ratio"], s["display_aspect_ratio"]) == (64, 48, "16:11", "64:33"), cmd


@pytest.mark.slow
def test_report_and_its_csv_never_replace_an_input_or_a_stranger(tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "a.avi")
    (tmp_path / "notes.csv").write_text("someone's notes\n")
    before = tree_hashes(src)
    r = run("vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "out", "--report", src / "a.avi", "--quiet")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {src / 'a.avi'} is one of the inputs: writing it would replace an original; choose another output"]
    r = run("vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "out", "--report", tmp_path / "notes.json", "--quiet")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "notes.csv exists" in r.stderr
    assert (tmp_path / "notes.csv").read_text() == "someone's notes\n" and tree_hashes(src) == before
    # a report written before may be written again (its JSON is there), and --overwrite allows the rest
    r = run("vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "out", "--report", tmp_path / "notes.json",
            "--overwrite", "--quiet")
    assert r.returncode == 0 and (tmp_path / "notes.csv").read_text().startswith("video,")
    r = run("vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "out", "--report", tmp_path / "notes.json", "--quiet")
    assert r.returncode == 0, r.stderr
    assert tree_hashes(src) == before


def test_report_in_an_unwritable_place_fails_before_any_video(tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "a.avi")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the report's folder should be")
    r = run("vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "out", "--report", blocked / "r.json", "--quiet")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--report: cannot write in" in r.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.avi"))  # nothing restored first


@pytest.mark.slow
def test_originals_are_matched_by_their_whole_name(tmp_path, weights):
    """scene.v2 is scored against scene.v2, not scene; degrade's same-stem names (a_avi, a_mp4)
    find a.avi and a.mp4; one original file for a folder of inputs is refused."""
    clean = tmp_path / "clean"
    clean.mkdir()
    clip(clean / "scene.avi", extra=("-vf", "hue=h=90"))
    clip(clean / "scene.v2.avi")
    clip(clean / "a.avi", extra=("-vf", "negate"))
    clip(clean / "a.mp4", codec="libx264", extra=("-pix_fmt", "yuv420p"))
    r = run("vrestore", "degrade", clean, tmp_path / "deg", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "deg").iterdir()) == ["a_avi.avi", "a_mp4.avi", "scene.avi", "scene.v2.avi"]
    r = run("vrestore", "restore", tmp_path / "deg", "--weights", weights, "--output-dir", tmp_path / "out", "--originals", clean,
            "--report", tmp_path / "r.json", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = {v["video"]: v for v in json.loads((tmp_path / "r.json").read_text())["videos"]}
    assert {k: Path(v["original"]).name for k, v in rows.items()} == {
        "a_avi.avi": "a.avi", "a_mp4.avi": "a.mp4", "scene.avi": "scene.avi", "scene.v2.avi": "scene.v2.avi"}
    assert "no original found" not in r.stdout
    r = run("vrestore", "restore", tmp_path / "deg", "--weights", weights, "--output-dir", tmp_path / "out2", "--originals", clean / "a.avi")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: --originals {clean / 'a.avi'} is one file but INPUT {tmp_path / 'deg'} is a folder: give the originals' folder"]


@pytest.mark.slow
def test_names_as_long_as_the_file_system_allows(tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    name = "v" * 251 + ".avi"  # 255 bytes: a temporary suffix would not fit
    clip(src / name)
    r = run("vrestore", "degrade", src, tmp_path / "deg", "--quiet")
    assert r.returncode == 0 and (tmp_path / "deg" / name).is_file(), r.stdout + r.stderr
    r = run("vrestore", "restore", tmp_path / "deg", "--weights", weights, "--output-dir", tmp_path / "out", "--quiet")
    assert r.returncode == 0 and (tmp_path / "out" / name).is_file(), r.stdout + r.stderr
    assert not [p for p in tmp_path.rglob("*") if TMP_MARK in p.name]


@pytest.mark.slow
def test_dangling_links_are_reported_not_ignored(tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "ok.avi")
    (src / "gone.avi").symlink_to(tmp_path / "nowhere.avi")
    r = run("make-shards", src, tmp_path / "shards", "--quiet", "--workers", "1")
    assert r.returncode == 0, r.stderr
    skipped = json.loads((tmp_path / "shards" / "manifest.json").read_text())["skipped"]
    assert skipped == [{"path": "gone.avi", "reason": "a symbolic link to a file that does not exist"}]
    for cmd, extra in (("degrade", (tmp_path / "deg",)), ("restore", ("--weights", weights, "--output-dir", tmp_path / "out"))):
        r = run("vrestore", cmd, src, *extra, "--quiet")
        assert r.returncode == 1 and "failed: gone.avi: a symbolic link to a file that does not exist" in r.stdout, (cmd, r.stdout)


def test_weights_of_an_unknown_format_are_refused(tmp_path, weights):
    payload = torch.load(weights, weights_only=True)
    payload["format"] = 99
    torch.save(payload, tmp_path / "future.pth")
    r = run("vrestore", "export", tmp_path / "future.pth", tmp_path / "g.pt", "--format", "torchscript")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'future.pth'}: weights format 99, this version reads format 1; use the version of vrestore that wrote it"]


def test_degrade_into_a_file_is_a_usage_error(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "a.avi")
    (tmp_path / "taken").write_text("x")
    r = run("vrestore", "degrade", src, tmp_path / "taken")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: DST {tmp_path / 'taken'} is a file; give a folder for the degraded videos"]


def test_make_shards_into_a_read_only_folder_is_one_line(tmp_path):
    if os.geteuid() == 0:
        # root ignores permission bits: a file where the folder should be blocks it instead
        out = tmp_path / "blocked"
        out.write_text("x")
    else:
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o500)
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "a.avi")
    r = run("make-shards", src, out / "shards", "--quiet")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "cannot write in" in r.stderr, r.stderr


@pytest.mark.parametrize("args,option", [
    (["train", "--shards", "{shards}", "--max-minutes", "0"], "--max-minutes 0"),
    (["train", "--shards", "{shards}", "--epochs", "0"], "--epochs 0"),
    (["train", "--shards", "{shards}", "--max-steps", "0"], "--max-steps 0"),
    (["train", "--shards", "{shards}", "--val-every", "0"], "--val-every 0"),
    (["degrade", "{shards}", "{tmp}/d", "--box-value", "300"], "--box-value 300"),
    (["make-shards", "{shards}", "{tmp}/s", "--num-nodes", "0"], "--num-nodes 0"),
])
def test_numeric_errors_name_their_option(sample_shards, tmp_path, args, option):
    args = [a.format(shards=sample_shards, tmp=tmp_path) for a in args]
    r = cli_run("vrestore", *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and option in r.stderr, r.stderr


def test_split_files_as_editors_write_them(tmp_path):
    """A byte-order mark and CRLF line ends, as Windows editors save UCF-101's lists."""
    src = tmp_path / "in"
    (src / "A").mkdir(parents=True)
    clip(src / "A" / "one.avi")
    clip(src / "A" / "two.avi")
    split = tmp_path / "list.txt"
    split.write_bytes("\ufeffA/one.avi 1\r\nA/two.avi 1\r\n".encode("utf-8"))
    r = run("make-shards", src, tmp_path / "shards", "--split-file", split, "--quiet", "--workers", "1")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert [v["path"] for v in m["videos"]] == ["A/one.avi", "A/two.avi"] and m["skipped"] == []


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
