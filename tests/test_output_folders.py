"""What restore and degrade do to a folder of outputs: one run at a time writes there, a
finished output is never replaced without --overwrite, and an output made from a partly
decoded input is done again once the input is whole."""
import subprocess
import sys
import time

import pytest

from conftest import count_frames
from test_real_world import BIN, cli_run, one_line_error
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
