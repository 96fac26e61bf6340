"""What restore and degrade do to a folder of outputs: one run at a time writes there, a
finished output is never replaced without --overwrite, and an output made from a partly
decoded input is done again once the input is whole."""
import json
import subprocess
import time

import pytest

from conftest import count_frames
from cli_helpers import BIN, cli_run, clip, one_line, one_line_error, run, tree_hashes
from test_restore import make_video
from vrestore.pipeline.atomic import marker_path, publish, temp_path_for
from vrestore.pipeline.media.discover import PARTIAL, VIDEOS_LOCK


@pytest.mark.slow
@pytest.mark.parametrize("second", ["restore", "degrade"])
def test_a_second_run_into_one_output_folder_is_refused(second, weights, tmp_path):
    """Restore A writes a long video into OUT; restore B (or degrade, which writes videos
    there too), started meanwhile into OUT, is refused in one line (exit 2) and writes
    nothing; A finishes whole."""
    src, out = tmp_path / "in", tmp_path / "out"
    make_video(src / "long.avi", size="320x240", rate=25, seconds=16, audio=False)
    a = subprocess.Popen([str(BIN / "vrestore"), "restore", str(src), "--weights", str(weights), "--output-dir", str(out), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / VIDEOS_LOCK).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (out / VIDEOS_LOCK).exists(), "restore A never took its folder"
    if second == "restore":
        r = cli_run("vrestore", "restore", src, "--weights", weights, "--output-dir", out, "--quiet", "--overwrite")
    else:
        r = cli_run("vrestore", "degrade", src, out, "--quiet", "--overwrite")
    one_line_error(r, f"{out}", "another run", "this machine")
    _, err = a.communicate(timeout=300)
    assert a.returncode == 0, err
    assert count_frames(out / "long.avi") == 400 and sorted(p.name for p in out.iterdir()) == ["long.avi"]


def test_a_finished_output_is_never_replaced_without_overwrite(tmp_path):
    """The last step of every video output: a name that another writer took meanwhile is kept
    (FileExistsError naming it), unless the run was told to replace."""
    dst = tmp_path / "v.avi"
    dst.write_bytes(b"finished by someone else")
    tmp = temp_path_for(dst)
    tmp.write_bytes(b"ours")
    with pytest.raises(FileExistsError, match="appeared while this run wrote it"):
        publish(tmp, dst, replace=False)
    assert dst.read_bytes() == b"finished by someone else" and not tmp.exists()
    tmp.write_bytes(b"ours")
    publish(tmp, dst, replace=True)
    assert dst.read_bytes() == b"ours" and not tmp.exists()
    tmp.write_bytes(b"new")
    publish(tmp, tmp_path / "w.avi", replace=False)
    assert (tmp_path / "w.avi").read_bytes() == b"new"


@pytest.mark.slow
@pytest.mark.parametrize("command", ["restore", "degrade"])
def test_an_output_of_a_partly_decoded_input_is_done_again_when_it_is_whole(command, weights, tmp_path):
    """A video still being written (a Matroska recording, its first 40 %: "File ended
    prematurely") gives a partial output, marked as such; the next run, once the video is whole,
    does it again instead of taking it for done, and the mark goes."""
    whole = make_video(tmp_path / "whole" / "v.mkv", size="160x120", rate=25, seconds=6, audio=False)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    data = whole.read_bytes()
    (src / "v.mkv").write_bytes(data[: len(data) * 2 // 5])  # the recorder is at 40 %
    args = ["restore", src, "--weights", weights, "--output-dir", out] if command == "restore" else ["degrade", src, out]
    r = cli_run("vrestore", *args, "--quiet")
    assert r.returncode == 0 and "partial" in r.stdout, r.stdout + r.stderr
    first = count_frames(out / "v.avi")
    assert 0 < first < 150 and marker_path(out / "v.avi", PARTIAL).exists()
    (src / "v.mkv").write_bytes(data)  # the recorder finished
    r = cli_run("vrestore", *args, "--quiet")
    assert r.returncode == 0 and "0 already there" in r.stdout, r.stdout + r.stderr
    assert count_frames(out / "v.avi") == 150 and not marker_path(out / "v.avi", PARTIAL).exists()
    r = cli_run("vrestore", *args, "--quiet")
    assert "1 already there" in r.stdout  # whole now: done


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


def test_outputs_never_land_on_what_the_user_owns(weights, tmp_path):
    clean, deg = tmp_path / "clean", tmp_path / "deg"
    clean.mkdir()
    clip(clean / "a.avi")
    assert run("vrestore", "degrade", clean, deg, "--quiet").returncode == 0
    before = tree_hashes(clean)
    w_before = weights.read_bytes()
    cases = {
        "--output-dir": ["restore", deg, "--weights", weights, "--originals", clean, "--output-dir", clean],
        "weights": ["restore", deg, "--weights", weights, "--output-dir", tmp_path / "r", "--report", weights],
        "original": ["restore", deg, "--weights", weights, "--output-dir", tmp_path / "r", "--originals", clean,
                     "--report", clean / "a.avi"],
        "csv": ["restore", deg, "--weights", weights, "--output-dir", tmp_path / "r", "--report", tmp_path / "x.csv"],
        "export onto weights": ["export", weights, weights],
    }
    for what, argv in cases.items():
        r = cli_run("vrestore", *argv, "--quiet") if argv[0] == "restore" else cli_run("vrestore", *argv)
        one_line(r)
    assert weights.read_bytes() == w_before and tree_hashes(clean) == before
    # an existing file is not replaced by export without --overwrite
    other = tmp_path / "mine.onnx"
    other.write_bytes(b"user data")
    one_line(cli_run("vrestore", "export", weights, other))
    assert other.read_bytes() == b"user data"
    # sample-videos into a folder holding the user's own clips and split files
    mine = tmp_path / "mine"
    (mine / "ucfTrainTestlist").mkdir(parents=True)
    (mine / "ucfTrainTestlist" / "trainlist01.txt").write_text("my/own.avi 1\n")
    one_line(cli_run("vrestore", "sample-videos", mine))
    assert (mine / "ucfTrainTestlist" / "trainlist01.txt").read_text() == "my/own.avi 1\n"
    assert weights.read_bytes() == w_before and tree_hashes(clean) == before


def test_an_earlier_output_inside_the_originals_folder_is_never_an_original(weights, tmp_path):
    """originals/x/b.avi is b's original; restore writes originals/out/sub/b.avi. On a second run
    that output must not count as a second candidate (b would lose its original) or as the
    original itself (+40 dB against itself)."""
    originals, deg = tmp_path / "originals", tmp_path / "deg"
    (originals / "x").mkdir(parents=True)
    clip(originals / "x" / "b.avi")
    (deg / "sub").mkdir(parents=True)
    assert run("vrestore", "degrade", originals / "x" / "b.avi", deg / "sub" / "b.avi", "--quiet").returncode == 0
    out = originals / "out"
    for extra in ([], ["--overwrite"]):
        r = run("vrestore", "restore", deg, "--weights", weights, "--originals", originals, "--output-dir", out,
                "--report", tmp_path / "rep.json", "--quiet", *extra)
        assert r.returncode == 0, r.stderr
        row = json.loads((tmp_path / "rep.json").read_text())["videos"][0]
        assert row["original"] == str(originals / "x" / "b.avi") and row["psnr_restored"] < 40, row


def test_report_cells_that_a_spreadsheet_would_run_are_quoted(weights, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "=HYPERLINK(1).avi")
    r = run("vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "r", "--report", tmp_path / "rep.json", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "'=HYPERLINK(1).avi" in (tmp_path / "rep.csv").read_text()
    assert json.loads((tmp_path / "rep.json").read_text())["videos"][0]["video"] == "=HYPERLINK(1).avi"  # the JSON keeps the name
