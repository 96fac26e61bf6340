"""Kinds of media users bring: what an output cannot carry is said (transparency, a second video
stream, interlacing), animated GIFs and the other containers players open are taken, an
original is found whatever Unicode form its name has, and every folder a run writes in is
checked before work."""
import subprocess
import unicodedata

from cli_helpers import cli_run, one_line_error
from vrestore.pipeline.media.probe import probe_video
from vrestore.pipeline.media.video_io import not_carried


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def test_what_an_output_cannot_carry_is_said(tmp_path):
    src = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.5"]
    ffmpeg(*src, "-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", tmp_path / "alpha.webm")
    ffmpeg(*src, "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.5", "-map", "0", "-map", "1", "-c:v", "ffv1",
           tmp_path / "two.mkv")
    ffmpeg(*src, "-vf", "setfield=tff", "-c:v", "libx264", "-flags", "+ildct+ilme", "-x264opts", "tff=1", tmp_path / "fields.mp4")
    ffmpeg(*src, "-c:v", "libx264", "-pix_fmt", "yuv420p", tmp_path / "plain.mp4")
    notes = {p: " ".join(not_carried(probe_video(tmp_path / p))) for p in ("alpha.webm", "two.mkv", "fields.mp4", "plain.mp4")}
    assert "transparency (alpha) not carried" in notes["alpha.webm"], notes
    assert "1 more video stream not carried" in notes["two.mkv"], notes
    assert "interlaced source processed as stored" in notes["fields.mp4"], notes
    assert notes["plain.mp4"] == ""


def test_an_animated_gif_is_restored_and_an_original_is_found_in_either_unicode_form(tmp_path, weights):
    src, originals = tmp_path / "in", tmp_path / "originals"
    src.mkdir()
    originals.mkdir()
    name = "caf\u00e9"  # NFC: é composed, as Linux keeps what it is given
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "6", src / f"{name}.avi")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "6", originals / f"{unicodedata.normalize('NFD', name)}.avi")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "6", src / "loop.gif")
    r = cli_run("vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "out", "--originals", originals,
                "--report", tmp_path / "r.json", "--quiet")
    assert r.returncode == 0, r.stderr
    import json

    rows = {v["video"]: v for v in json.loads((tmp_path / "r.json").read_text())["videos"]}
    assert set(rows) == {f"{name}.avi", "loop.gif"}
    assert rows[f"{name}.avi"]["original"] is not None and rows[f"{name}.avi"]["psnr_restored"] is not None
    assert rows["loop.gif"]["frames"] == 6 and (tmp_path / "out" / "loop.avi").is_file()


def test_a_blocked_side_by_side_folder_is_one_line_before_any_work(tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "4", src / "a.avi")
    out = tmp_path / "out"
    out.mkdir()
    (out / "side_by_side").write_text("a file where the folder goes")  # root ignores read-only bits: block it
    one_line_error(cli_run("vrestore", "restore", src, "--weights", weights, "--output-dir", out, "--side-by-side"),
                   "--side-by-side: cannot write in")
    assert sorted(p.name for p in out.iterdir()) == ["side_by_side"]  # nothing restored


def test_a_split_file_kept_inside_src_is_found_from_src(tmp_path, monkeypatch):
    """--split-file ucfTrainTestlist/list.txt from a folder where it is not: taken from SRC (as
    sample-videos lays it out); a name found nowhere stays one line naming it."""
    src = tmp_path / "tree"
    (src / "A").mkdir(parents=True)
    (src / "lists").mkdir()
    for n in (1, 2):
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "3", src / "A" / f"v_A_g0{n}_c01.avi")
    (src / "lists" / "one.txt").write_text("A/v_A_g01_c01.avi\n")
    monkeypatch.chdir(tmp_path)  # the list is not at ./lists/one.txt
    r = cli_run("vrestore", "degrade", src, tmp_path / "out", "--split-file", "lists/one.txt", "--quiet")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "out").rglob("*.avi")] == ["v_A_g01_c01.avi"]
    one_line_error(cli_run("vrestore", "degrade", src, tmp_path / "out2", "--split-file", "lists/none.txt"), "none.txt")
