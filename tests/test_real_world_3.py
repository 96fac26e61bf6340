"""Real-world files, round 3: outputs that never land on anything the user owns, full disks
that fail loudly, names in any encoding, tiny and lying files, Ray that cannot hang, one line
instead of a traceback. Each test is one class of issue 35, run through the installed commands."""
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
import torch

from conftest import count_frames
from test_real_world import BIN, clip, cli_run, ffmpeg, run, tree_hashes
from vrestore.models import GeneratorConfig, build_generator
from vrestore.models.weights import save_weights


def one_line(r, code=2):
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == code and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def frames_left_on_a_small_disk(tmp_path, size_kib, argv) -> tuple:
    """Run `vrestore ARGV` with tmp_path/disk a tmpfs of SIZE_KIB (its own mount namespace, as
    test_real_world_2.on_small_disk), then, still inside, count the frames of every .avi left on
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


def test_preview_refuses_to_write_into_the_shards_and_to_grow_without_bound(sample_shards, tmp_path):
    one_line(cli_run("vrestore", "preview", sample_shards, "--out", sample_shards / "shard-000000.png"))
    one_line(cli_run("vrestore", "preview", sample_shards, "--out", tmp_path / "p.png", "--num", 100000))


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


def test_non_finite_weights_are_refused_in_one_line(tmp_path):
    G = build_generator(GeneratorConfig(ngf=4, depth=5))
    with torch.no_grad():
        next(G.parameters())[0] = float("nan")
    save_weights(tmp_path / "nan.pth", G)
    clip(tmp_path / "a.avi")
    line = one_line(cli_run("vrestore", "restore", tmp_path / "a.avi", "--weights", tmp_path / "nan.pth", "--output-dir", tmp_path / "o"))
    assert "NaN" in line and "nan.pth" in line
    assert "not a regular file" in one_line(cli_run("vrestore", "restore", tmp_path / "a.avi", "--weights", "/dev/zero",
                                                "--output-dir", tmp_path / "o"))


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


def test_report_cells_that_a_spreadsheet_would_run_are_quoted(weights, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "=HYPERLINK(1).avi")
    r = run("vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "r", "--report", tmp_path / "rep.json", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "'=HYPERLINK(1).avi" in (tmp_path / "rep.csv").read_text()
    assert json.loads((tmp_path / "rep.json").read_text())["videos"][0]["video"] == "=HYPERLINK(1).avi"  # the JSON keeps the name


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


def test_bad_settings_and_files_are_one_line_each(sample_shards, weights, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "a.avi")
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="abc", SLURM_ARRAY_TASK_COUNT="2")
    assert "SLURM_ARRAY_TASK_ID" in one_line(subprocess.run([str(BIN / "make-shards"), src, tmp_path / "s"], capture_output=True,
                                                            text=True, env=env))
    split = tmp_path / "split.txt"
    split.write_text("a.avi\n", encoding="utf-16")
    assert "UTF-8" in one_line(cli_run("make-shards", src, tmp_path / "s2", "--split-file", split))
    for broken, change in (("no_params", lambda m: m.pop("params")), ("empty", lambda m: m.update(videos=[], shards=[]))):
        folder = tmp_path / broken
        folder.mkdir()
        m = json.loads((sample_shards / "manifest.json").read_text())
        change(m)
        (folder / "manifest.json").write_text(json.dumps(m))
        assert "manifest.json" in one_line(cli_run("vrestore", "preview", folder, "--out", tmp_path / "p.png"))
    for value in ("inf", "nan", "0"):
        assert "--max-memory" in one_line(cli_run("vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "o",
                                              "--max-memory", value))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the output folder should be")
    assert "--output-dir" in one_line(cli_run("vrestore", "restore", src, "--weights", weights, "--output-dir", blocked / "sub"))


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


def test_real_options_given_to_train_on_made_shards_are_refused(sample_shards, tmp_path):
    from test_train import tiny_cli

    r = subprocess.run([sys.executable, "-m", "vrestore", "train", *tiny_cli(sample_shards, tmp_path / "run", "--max-steps", 1),
                        "--real-p-noise", "0.9"], capture_output=True, text=True, timeout=300)
    assert "make-shards --preset real" in one_line(r), r.stderr


@pytest.mark.slow
def test_the_real_presets_damage_lands_on_the_resized_frames_as_degrade_lands_it(tmp_path):
    """make-shards --preset real --short-side 96 holds, for each frame, exactly what `vrestore
    degrade --preset real` makes of the same video resized to that size (same seed rule, same
    function, lossless both ways): the damage at the size training sees, not at the source's."""
    from vrestore.pipeline.media.frame_reader import resized_copy
    from vrestore.pipeline.media.video_io import read_frames
    import io
    from PIL import Image
    import tarfile

    src, small = tmp_path / "in", tmp_path / "small"
    src.mkdir(), small.mkdir()
    clip(src / "a.avi", seconds=1, rate=10, size="320x240")
    assert run("make-shards", src, tmp_path / "shards", "--preset", "real", "--short-side", "96", "--quiet").returncode == 0
    resized_copy(src / "a.avi", small / "a.avi", short_side=96)
    assert run("vrestore", "degrade", small, tmp_path / "deg", "--preset", "real", "--codec", "ffv1", "--quiet").returncode == 0
    expected = np.concatenate(list(read_frames(tmp_path / "deg" / "a.avi")))
    with tarfile.open(next((tmp_path / "shards").glob("*.tar"))) as t:
        damaged = {m.name: np.asarray(Image.open(io.BytesIO(t.extractfile(m).read())).convert("RGB"))
                   for m in t.getmembers() if m.name.endswith(".d.png")}
    frames = [damaged[k] for k in sorted(damaged)]
    assert len(frames) == len(expected) == 10 and frames[0].shape == expected[0].shape == (96, 128, 3)
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected))


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # the local Ray instance is started once, on one worker
def test_ray_never_waits_on_workers_that_cannot_start(weights, tmp_path, ray_local):
    """--ray-workers above the cluster's CPUs (2 here) finishes; an address nothing listens on
    is one line within seconds, not a wait without end."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        clip(src / f"v{i}.avi")
    from vrestore.pipeline.degrade.degrade_videos import DegradeConfig, degrade_videos

    result = degrade_videos(DegradeConfig(src, tmp_path / "out", engine="ray", ray_workers=8, progress=False))
    assert len(result.done) == 3 and not result.failed
    t0 = time.monotonic()
    r = run("vrestore", "degrade", src, tmp_path / "o2", "--engine", "ray", "--ray-address", "127.0.0.1:9", process=True)
    assert "--ray-address" in one_line(r) and time.monotonic() - t0 < 60


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


def test_merge_manifests_joins_only_the_nodes_of_one_source_and_keeps_a_single_nodes_manifest(tmp_path):
    from vrestore.pipeline.dataset.make_shards import ShardConfig, make_shards

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        clip(d / "x.avi")
        clip(d / "y.avi")
    out = tmp_path / "shards"
    make_shards(ShardConfig(a, out, num_nodes=2, node_rank=0, progress=False, workers=1))
    make_shards(ShardConfig(b, out, num_nodes=2, node_rank=1, progress=False, workers=1))  # another collection
    assert "different sources" in one_line(cli_run("vrestore", "merge-manifests", out))
    single = tmp_path / "single"
    make_shards(ShardConfig(a, single, progress=False, workers=1))
    before = (single / "manifest.json").read_bytes()
    make_shards(ShardConfig(a, single, num_nodes=2, node_rank=0, progress=False, workers=1, prefix="n"))
    make_shards(ShardConfig(a, single, num_nodes=2, node_rank=1, progress=False, workers=1, prefix="n"))
    assert "single-node run's manifest" in one_line(cli_run("vrestore", "merge-manifests", single))
    assert (single / "manifest.json").read_bytes() == before


def audio_onset_ms(path) -> float:
    """When a file's first audio track first sounds, in ms from time 0, as a player decodes it."""
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "a:0", "-f", "s16le", "-ac", "1", "-ar", "44100", "-"],
                         capture_output=True, check=True).stdout
    return float(np.argmax(np.abs(np.frombuffer(pcm, np.int16)) > 1000)) / 44.1


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
