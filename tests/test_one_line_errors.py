"""Mistakes get one line naming the option or file, exit 2, no traceback, and nothing written:
bad arguments and numbers, unwritable places, weights of another format or with non-finite
values, options that do not apply."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from cli_helpers import BIN, clip, run, cli_run, one_line_error, one_line
from vrestore.models import GeneratorConfig, build_generator
from vrestore.models.weights import save_weights


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
    one_line_error(cli_run("vrestore", "train", "--shards", sample_shards, "--out", run_dir, "--resume", "--crop", "32", "--depth", "5"), "checkpoint.pt")
    broken = tmp_path / "broken"
    shutil.copytree(sample_shards, broken)
    first_tar = sorted(broken.glob("*.tar"))[0]
    # a tar rewritten after its index (the same size, its members elsewhere): one line, not DALI's
    # "nvImageCodec failure" traceback; for preview and train alike
    data = bytearray(first_tar.read_bytes())
    data[:1024], data[1024:2048] = data[1024:2048], data[:1024]
    first_tar.write_bytes(bytes(data))
    for args in (("preview", broken, "--crop", "32", "--out", tmp_path / "p.png"),
                 ("train", "--shards", broken, "--out", tmp_path / "t1", "--crop", "32", "--depth", "5")):
        one_line_error(cli_run("vrestore", *args), f"{first_tar.name.replace('.tar', '.idx')} does not match", "--overwrite")
    first_tar.write_bytes(first_tar.read_bytes()[:1000])
    one_line_error(cli_run("vrestore", "preview", broken, "--crop", "32", "--out", tmp_path / "p.png"), first_tar.name, "truncated")
    first_tar.unlink()
    one_line_error(cli_run("vrestore", "preview", broken, "--crop", "32", "--out", tmp_path / "p.png"), first_tar.name, "missing")
    (broken / "manifest.json").write_text('{"format_version": 1, "shards": [')
    one_line_error(cli_run("vrestore", "train", "--shards", broken, "--out", tmp_path / "t2", "--crop", "32", "--depth", "5"), "manifest.json")


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


def test_report_in_an_unwritable_place_fails_before_any_video(tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "a.avi")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the report's folder should be")
    r = run("vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "out", "--report", blocked / "r.json", "--quiet")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--report: cannot write in" in r.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.avi"))  # nothing restored first


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


def test_real_options_given_to_train_on_made_shards_are_refused(sample_shards, tmp_path):
    from test_train import tiny_cli

    r = subprocess.run([sys.executable, "-m", "vrestore", "train", *tiny_cli(sample_shards, tmp_path / "run", "--max-steps", 1),
                        "--real-p-noise", "0.9"], capture_output=True, text=True, timeout=300)
    assert "make-shards --preset real" in one_line(r), r.stderr


def test_preview_refuses_to_write_into_the_shards_and_to_grow_without_bound(sample_shards, tmp_path):
    one_line(cli_run("vrestore", "preview", sample_shards, "--out", sample_shards / "shard-000000.png"))
    one_line(cli_run("vrestore", "preview", sample_shards, "--out", tmp_path / "p.png", "--num", 100000))
