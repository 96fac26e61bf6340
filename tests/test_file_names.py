"""File names and folders as users have them: spaces, shell characters, non-UTF-8 bytes, names
that look like options, same stems, names as long as the file system allows, dangling links and
link loops, split files as editors write them, originals matched by their whole name."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from cli_helpers import BIN, clip, run
from conftest import count_frames
from vrestore.pipeline.atomic import TMP_MARK
from vrestore.pipeline.media.discover import find_videos, output_names, with_unique_ids


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


@pytest.mark.slow
def test_names_that_are_not_utf8_or_look_like_options_go_through_every_command(weights, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "good.avi")
    odd = os.fsdecode(os.fsencode(str(src)) + b"/\xff\xfebad.avi")  # not valid UTF-8
    os.link(src / "good.avi", odd)
    r = run("vrestore", "degrade", src, tmp_path / "deg", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(os.fsencode(tmp_path / "deg"))) == [b"good.avi", b"\xff\xfebad.avi"]
    r = run("vrestore", "restore", tmp_path / "deg", "--weights", weights, "--output-dir", tmp_path / "r", "--originals", src,
            "--report", tmp_path / "r" / "rep.json", "--quiet", process=True)  # the console's own encoding
    assert r.returncode == 0 and "\\udcff\\udcfebad.avi" in r.stdout, r.stderr
    assert b"\xff\xfebad.avi" in (tmp_path / "r" / "rep.csv").read_bytes()
    r = run("make-shards", src, tmp_path / "shards", "--quiet")
    assert r.returncode == 0 and json.loads((tmp_path / "shards" / "manifest.json").read_text())["num_samples"] == 20, r.stderr
    # names like options, given on the command line, are files to ffprobe and ffmpeg
    work = tmp_path / "opt"
    work.mkdir()
    clip(work / "-y.avi")
    r = subprocess.run([str(BIN / "vrestore"), "degrade", "--quiet", "--", "-y.avi", "-out.avi"], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0 and count_frames(work / "-out.avi") == 10, r.stderr
    assert count_frames(work / "-y.avi") == 10  # the input untouched (-y did not become "overwrite")


def test_a_symlinked_folder_in_the_input_is_restored_once_even_with_a_loop(tmp_path):
    src, elsewhere = tmp_path / "in", tmp_path / "elsewhere" / "sub"
    src.mkdir()
    elsewhere.mkdir(parents=True)
    clip(src / "b.avi")
    clip(elsewhere / "a.avi")
    (src / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(elsewhere.parent, target_is_directory=True)
    r = run("vrestore", "degrade", src, tmp_path / "out", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.avi")) == ["b.avi", "linked/a.avi"]
