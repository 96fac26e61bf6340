"""Videos as users have them, through every command that reads videos: damaged, rotated, variable
frame rate, phone audio, anamorphic, lying headers, frames of a few pixels, what an output cannot
carry. The inputs are made here with ffmpeg (the corpus fixture, conftest.py); each test asserts
what a user sees: frames, timing, shape, exit codes."""
import json
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import ODD_NAMES, UNREADABLE, ffmpeg, clip, run, failed_names, tree_hashes, probe, video_pts, audio_onset_ms
from conftest import count_frames
from vrestore.pipeline.degrade.degradations import DegradationSpec, blur
from vrestore.pipeline.media.probe import probe_video
from test_restore import decode


def test_damaged_clip_is_a_warning_not_a_failure(corpus):
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(corpus / "damaged.avi"), "-f", "null", "-"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip(), "the corpus needs a clip ffmpeg complains about but decodes"


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_probe_reports_shown_orientation(corpus, angle):
    info = probe_video(corpus / f"rot{angle}.mp4")
    assert info.rotation == angle
    assert (info.width, info.height) == ((48, 64) if angle in (90, 270) else (64, 48))


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
    r = run("vrestore", "train", "--shards", out, "--out", tmp_path / "run", "--crop", "32", "--depth", "5", "--ngf", "4", "--ndf", "4",
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


def test_frame_stride_summary_says_frames_are_kept_not_decoded(corpus, tmp_path):
    r = run("make-shards", corpus / "vfr.mp4", tmp_path / "s", "--frame-stride", "5")
    assert r.returncode == 0, r.stderr
    assert "kept frames/s" in r.stdout and "decoded about 5x as many" in r.stdout


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


def test_a_header_that_declares_huge_frames_allocates_nothing_for_them(tmp_path):
    from vrestore.pipeline.media.video_io import read_frames

    fake = tmp_path / "huge.y4m"  # declares 16000x16000, holds no frame
    fake.write_bytes(b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\n")
    tracemalloc.start()
    try:
        frames = list(read_frames(fake, batch=8, warnings=[]))
    except Exception:
        frames = []
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert frames == [] and peak < 64 * 2**20, peak  # not 8 x 768 MB of zeros


def test_frames_of_a_few_pixels_are_degraded_and_restored(weights, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=2x2:rate=10:duration=1", "-c:v", "ffv1", src / "two.avi")
    assert run("vrestore", "degrade", src, tmp_path / "deg", "--quiet").returncode == 0
    r = run("vrestore", "restore", tmp_path / "deg", "--weights", weights, "--output-dir", tmp_path / "r", "--originals", src, "--quiet")
    assert r.returncode == 0 and count_frames(tmp_path / "r" / "two.avi") == 10, r.stderr


def test_niqe_and_the_middle_frame_do_not_depend_on_the_container(weights, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    clip(tmp_path / "a" / "x.avi", seconds=3, size="128x96")
    ffmpeg("-i", tmp_path / "a" / "x.avi", "-c:v", "ffv1", tmp_path / "b" / "x.mkv")  # mkv keeps no frame count
    rows = []
    for name in ("a", "b"):
        r = run("vrestore", "restore", tmp_path / name, "--weights", weights, "--output-dir", tmp_path / f"r{name}",
                "--report", tmp_path / f"{name}.json", "--side-by-side", "--quiet")
        assert r.returncode == 0, r.stderr
        rows.append(json.loads((tmp_path / f"{name}.json").read_text())["videos"][0])
    assert rows[0]["niqe_input"] is not None and rows[0]["niqe_input"] == pytest.approx(rows[1]["niqe_input"])
    stills = [np.asarray(__import__("PIL.Image").Image.open(p)) for p in (tmp_path / "ra/side_by_side/x.png", tmp_path / "rb/side_by_side/x.png")]
    assert np.array_equal(stills[0], stills[1])


def test_what_an_output_cannot_carry_is_said_and_its_audio_stays_in_step(weights, tmp_path):
    """MP3 in an MP4 (its 1105-sample encoder delay trimmed by the MP4's own record) restored to
    .avi starts its sound when the source does; subtitles and 10-bit frames, which the outputs
    do not carry, are said per video by restore (and its report) and degrade."""
    src = tmp_path / "in"
    src.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "libmp3lame", "-shortest", src / "talk.mp4")
    (tmp_path / "s.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-i", tmp_path / "s.srt", "-t", "1", "-c:v", "libx265",
           "-pix_fmt", "yuv420p10le", "-c:s", "srt", src / "film.mkv")
    r = run("vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "r", "--report", tmp_path / "rep.json",
            "--quiet")  # the summary says it too
    assert r.returncode == 0, r.stderr
    assert abs(audio_onset_ms(tmp_path / "r" / "talk.avi") - audio_onset_ms(src / "talk.mp4")) < 1  # 25 ms when copied
    said = "film.mkv: 1 subtitle stream not carried into the output; 10-bit source written as 8-bit"
    assert said in r.stderr + r.stdout and "talk.mp4: audio decoded from mp3" in r.stderr + r.stdout
    rows = {row["video"]: row for row in json.loads((tmp_path / "rep.json").read_text())["videos"]}
    assert rows["film.mkv"]["not_carried"].startswith("1 subtitle stream") and rows["talk.mp4"]["not_carried"] is None
    r = run("vrestore", "degrade", src, tmp_path / "d", "--quiet")
    assert r.returncode == 0 and said in r.stdout, r.stderr
