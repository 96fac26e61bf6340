"""Real-world files and mistakes through every command that reads videos (issue 11).

The corpus is made here with ffmpeg: rotated phone-style clips, names with spaces, non-ASCII
and shell characters, same-stem pairs, variable frame rate, a clip ffmpeg warns about but
decodes, Opus audio, an audio-only file, an empty file and a text file.
"""
import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from conftest import count_frames
from vrestore.pipeline.atomic import TMP_MARK, host_token
from vrestore.pipeline.degrade.degradations import DegradationSpec, blur
from vrestore.pipeline.media.discover import find_videos, output_names, with_unique_ids
from vrestore.pipeline.media.probe import probe_video
from test_restore import decode

BIN = Path(sys.executable).parent
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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus") / "in"
    d.mkdir()
    base = clip(d.parent / "base.mp4", codec="libx264", extra=("-pix_fmt", "yuv420p"))
    for angle in (90, 180, 270):
        ffmpeg("-i", base, "-c", "copy", "-metadata:s:v:0", f"rotate={angle}", d / f"rot{angle}.mp4")
    for name in ODD_NAMES + PAIRS:
        clip(d / name, codec="libx264" if name.endswith(".mp4") else "mpeg4")
    # variable frame rate: 10 frames 0.1 s apart, then 10 frames 0.2 s apart (3 s in all)
    clip(d / "vfr.mp4", seconds=2, codec="libx264",
         extra=("-vf", "setpts='if(lt(N,10),N/10/TB,(10+(N-10)*2)/10/TB)'", "-fps_mode", "vfr"))
    clip(d / "opus.mkv", codec="libx264", extra=("-f", "lavfi", "-i", "sine=f=440:d=1", "-c:a", "libopus", "-shortest"))
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=1", "-c:a", "aac", d / "audio_only.mp4")
    (d / "empty.avi").write_bytes(b"")
    (d / "text.mp4").write_text("not a video\n")
    # damaged: bytes zeroed in the middle of frames; ffmpeg logs errors, exits 0, decodes most frames
    good = bytearray(clip(d.parent / "good.avi", seconds=4, size="160x120").read_bytes())
    rng = random.Random(1)
    for _ in range(30):
        p = rng.randrange(len(good) // 4, len(good))
        good[p : p + 40] = bytes(40)
    (d / "damaged.avi").write_bytes(bytes(good))
    return d


def test_damaged_clip_is_a_warning_not_a_failure(corpus):
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(corpus / "damaged.avi"), "-f", "null", "-"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip(), "the corpus needs a clip ffmpeg complains about but decodes"


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_probe_reports_shown_orientation(corpus, angle):
    info = probe_video(corpus / f"rot{angle}.mp4")
    assert info.rotation == angle
    assert (info.width, info.height) == ((48, 64) if angle in (90, 270) else (64, 48))


def test_ids_and_output_names_are_unique_per_input_path(corpus):
    entries = with_unique_ids(find_videos(corpus))
    ids = [e.video_id for e in entries]
    assert len(set(ids)) == len(ids)
    assert all(not set(i) - set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/") for i in ids)
    names = output_names([e.rel for e in entries], ".avi")
    assert len(set(names.values())) == len(names)
    assert names["pair.avi"].name == "pair_avi.avi" and names["pair.mp4"].name == "pair_mp4.avi"
    assert names["a.b.avi"] != names["a_b.avi"]
    # the result depends on the paths, not on their order
    again = with_unique_ids(list(reversed(find_videos(corpus))))
    assert {e.rel: e.video_id for e in again} == {e.rel: e.video_id for e in entries}


@pytest.mark.slow
def test_make_shards_preview_and_train_take_every_readable_file(corpus, tmp_path):
    before = tree_hashes(corpus)
    out = tmp_path / "shards"
    r = run("make-shards", corpus, out, "--quiet", "--max-frames", "40")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert {s["path"] for s in m["skipped"]} == UNREADABLE
    videos = {v["path"]: v for v in m["videos"]}
    assert set(videos) == {p.name for p in corpus.iterdir()} - UNREADABLE
    assert videos["damaged.avi"]["partial"] and videos["damaged.avi"]["frames"] > 0
    assert (videos["rot90.mp4"]["width"], videos["rot90.mp4"]["height"]) == (48, 64)
    assert videos["vfr.mp4"]["frames"] == 20
    # every tar member name is unique (one sample id per input path)
    names = [n for t in sorted(out.glob("*.tar")) for n in tarfile.open(t).getnames()]
    assert len(names) == len(set(names)) == 2 * m["num_samples"]
    assert "Traceback" not in r.stderr

    r = run("vrestore", "preview", out, "--crop", "32", "--out", tmp_path / "p.png")
    assert r.returncode == 0, r.stderr
    r = run("vrestore", "train", "--shards", out, "--out", tmp_path / "run", "--crop", "32", "--ngf", "4", "--ndf", "4",
            "--batch-size", "4", "--max-steps", "2", "--val-frames", "1", "--num-threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "generator.pth").is_file()
    assert tree_hashes(corpus) == before


def test_degrade_keeps_orientation_frames_and_duration_and_fails_only_the_unreadable(corpus, tmp_path):
    before = tree_hashes(corpus)
    out = tmp_path / "deg"
    r = run("vrestore", "degrade", corpus, out, "--quiet", "--noise-std", "0", "--boxes-min", "0", "--boxes-max", "0")
    assert r.returncode == 1, r.stdout + r.stderr  # some inputs failed: exit 1
    assert "Traceback" not in r.stderr
    assert failed_names(r.stdout) == UNREADABLE
    assert "partial: damaged.avi" in r.stdout
    # upright: the degraded frames are the blurred upright frames (no noise, no boxes asked for)
    for angle in (90, 180, 270):
        upright = torch.from_numpy(decode(corpus / f"rot{angle}.mp4").copy()).permute(0, 3, 1, 2).float()
        ours = torch.from_numpy(decode(out / f"rot{angle}.avi").copy()).permute(0, 3, 1, 2).float()
        assert ours.shape == upright.shape
        assert (ours - blur(upright, DegradationSpec()).round()).abs().max() <= 1
    names = {p.relative_to(out).as_posix() for p in out.rglob("*.avi")}
    assert {"pair_avi.avi", "pair_mp4.avi", "a.b.avi", "a_b.avi", *ODD_NAMES} <= names
    for name in ODD_NAMES + ["vfr.mp4"]:
        src, dst = corpus / name, out / Path(name).with_suffix(".avi")
        assert count_frames(dst) == count_frames(src)
    assert abs(probe_video(out / "vfr.avi").duration - probe_video(corpus / "vfr.mp4").duration) < 0.15
    assert tree_hashes(corpus) == before


@pytest.mark.slow
def test_restore_a_real_world_folder(corpus, weights, tmp_path):
    before = tree_hashes(corpus)
    out = tmp_path / "restored"
    r = run("vrestore", "restore", corpus, "--weights", weights, "--output-dir", out, "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert failed_names(r.stdout) == UNREADABLE
    assert "partial: damaged.avi" in r.stdout
    assert "note: opus.mkv: audio re-encoded from opus to pcm_s16le" in r.stdout
    assert subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
                           str(out / "opus.avi")], capture_output=True, text=True).stdout.strip() == "pcm_s16le"
    for angle in (90, 270):
        assert decode(out / f"rot{angle}.avi").shape[1:3] == (64, 48)
    assert {"pair_avi.avi", "pair_mp4.avi"} <= {p.name for p in out.iterdir()}
    assert count_frames(out / "vfr.avi") == 20
    assert tree_hashes(corpus) == before


@pytest.mark.slow
def test_outputs_never_replace_or_reread_inputs(corpus, weights, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    clip(work / "a.avi")
    before = tree_hashes(work)
    r = run("vrestore", "degrade", work, work, "--overwrite", "--quiet")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "input folder" in r.stderr
    r = run("vrestore", "restore", work, "--weights", weights, "--output-dir", work, "--overwrite", "--quiet")
    assert r.returncode == 2 and "input folder" in r.stderr
    assert tree_hashes(work) == before
    # an output folder inside the input is not searched on the next run
    for _ in range(2):
        r = run("vrestore", "restore", work, "--weights", weights, "--output-dir", work / "restored", "--quiet", "--overwrite")
        assert r.returncode == 0, r.stderr
    assert not (work / "restored" / "restored").exists()
    assert [p.relative_to(work).as_posix() for p in (work / "restored").rglob("*.avi")] == ["restored/a.avi"]


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


def one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_every_bad_argument_is_one_line_with_exit_2(corpus, weights, sample_shards, tmp_path):
    video = corpus / "pair.avi"
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    one_line_error(cli_run("vrestore", "restore", video, "--weights", empty, "--output-dir", tmp_path / "o"), "empty.pth")
    one_line_error(cli_run("vrestore", "restore", video, "--weights", tmp_path, "--output-dir", tmp_path / "o"), "folder")
    one_line_error(cli_run("vrestore", "restore", video, "--weights", weights, "--device", "foo", "--output-dir", tmp_path / "o"), "--device")
    if not torch.cuda.is_available():
        one_line_error(cli_run("vrestore", "restore", video, "--weights", weights, "--device", "cuda", "--output-dir", tmp_path / "o"), "--device cuda")
        one_line_error(cli_run("vrestore", "preview", sample_shards, "--device", "cuda", "--out", tmp_path / "p.png"), "--device cuda")
    for crop in ("0", "100"):
        one_line_error(cli_run("vrestore", "preview", sample_shards, "--crop", crop, "--out", tmp_path / "p.png"), f"--crop {crop}")
    one_line_error(cli_run("vrestore", "train", "--shards", sample_shards, "--ngf", "0", "--out", tmp_path / "t"), "--ngf")
    one_line_error(cli_run("vrestore", "sample-videos", tmp_path / "s", "--workers", "0"), "--workers")
    for side in ("0", "-5", "33"):
        one_line_error(cli_run("make-shards", corpus, tmp_path / f"s{side}", "--short-side", side), "--short-side")
    one_line_error(cli_run("vrestore", "degrade", corpus, tmp_path / "d", "--batch-size", "0"), "--batch-size")

    # broken training inputs: a truncated checkpoint, a missing or truncated shard, a corrupt manifest
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    one_line_error(cli_run("vrestore", "train", "--shards", sample_shards, "--out", run_dir, "--resume", "--crop", "32"), "checkpoint.pt")
    broken = tmp_path / "broken"
    shutil.copytree(sample_shards, broken)
    first_tar = sorted(broken.glob("*.tar"))[0]
    # a tar rewritten after its index (the same size, its members elsewhere): one line, not DALI's
    # "nvImageCodec failure" traceback; for preview and train alike
    data = bytearray(first_tar.read_bytes())
    data[:1024], data[1024:2048] = data[1024:2048], data[:1024]
    first_tar.write_bytes(bytes(data))
    for args in (("preview", broken, "--crop", "32", "--out", tmp_path / "p.png"),
                 ("train", "--shards", broken, "--out", tmp_path / "t1", "--crop", "32")):
        one_line_error(cli_run("vrestore", *args), f"{first_tar.name.replace('.tar', '.idx')} does not match", "--overwrite")
    first_tar.write_bytes(first_tar.read_bytes()[:1000])
    one_line_error(cli_run("vrestore", "preview", broken, "--crop", "32", "--out", tmp_path / "p.png"), first_tar.name, "truncated")
    first_tar.unlink()
    one_line_error(cli_run("vrestore", "preview", broken, "--crop", "32", "--out", tmp_path / "p.png"), first_tar.name, "missing")
    (broken / "manifest.json").write_text('{"format_version": 1, "shards": [')
    one_line_error(cli_run("vrestore", "train", "--shards", broken, "--out", tmp_path / "t2", "--crop", "32"), "manifest.json")


def test_frame_stride_summary_says_frames_are_kept_not_decoded(corpus, tmp_path):
    r = run("make-shards", corpus / "vfr.mp4", tmp_path / "s", "--frame-stride", "5")
    assert r.returncode == 0, r.stderr
    assert "kept frames/s" in r.stdout and "decoded about 5x as many" in r.stdout
