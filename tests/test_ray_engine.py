"""--engine ray on a real local Ray instance (ray.init(num_cpus=2), one for the whole run):
the same samples, frames and reports as the local engines; retries; failures that stay alone."""
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import clip, one_line, run
from conftest import trimmed
from vrestore.pipeline.dataset.make_shards import make_shards
from vrestore.pipeline.dataset.shard_config import ShardConfig
from vrestore.pipeline.dataset.make_shards_ray import make_shards_ray
from vrestore.pipeline.degrade.degrade_videos import DegradeConfig, degrade_videos
from vrestore.pipeline.inference.restore import RestoreConfig, restore_videos
from vrestore.pipeline.media.video_io import read_frames
from vrestore.pipeline.cluster.slurm import slurm_array_part

# every test of the local Ray instance on one pytest worker: it starts once (about 10 s)
pytestmark = pytest.mark.xdist_group("ray")


def samples_in(folder):
    """{tar member name: bytes} over every shard: the samples, whatever shard holds them."""
    out = {}
    for tar in sorted(folder.glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                assert m.name not in out, m.name
                out[m.name] = t.extractfile(m).read()
    return out


def dies_once_in_window_1(marker: Path):
    """make-shards' Ray task, whose worker process dies the first time it takes window 1 (a
    nested function: Ray ships it by value, so workers need not import this test module)."""
    from vrestore.pipeline.dataset.make_shards_ray import shard_window

    def task(cfg, w, *args):
        if w == 1 and not marker.exists():
            marker.touch()
            os._exit(1)
        return shard_window(cfg, w, *args)

    return task


@pytest.mark.slow
def test_make_shards_on_ray_writes_the_local_runs_samples_and_survives_a_dead_worker(sample_tree, tmp_path, ray_local):
    settings = dict(mix_window=2, max_frames=60, progress=False, workers=2, clip_len=3)
    local = make_shards(ShardConfig(sample_tree, tmp_path / "local", **settings))
    marker = tmp_path / "crashed-once"
    result = make_shards_ray(ShardConfig(sample_tree, tmp_path / "ray", **settings), task=dies_once_in_window_1(marker))
    assert marker.exists()  # window 1's first worker died mid-job; the retry finished it
    a, b = samples_in(tmp_path / "local"), samples_in(tmp_path / "ray")
    assert len(a) > 100 and a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    m = result.manifest
    assert m["num_samples"] == local.manifest["num_samples"] and m["params"]["engine"] == "ray"
    assert [v["path"] for v in m["videos"]] == [v["path"] for v in local.manifest["videos"]]
    assert sum(s["samples"] for s in m["shards"]) == m["num_samples"] and not list((tmp_path / "ray").glob(".*done.json"))
    # the training side reads it as any shard folder
    from vrestore.pipeline.dataset.shard_set import load_shard_set
    # (windows: each frame once as a centre; num_samples counts the stored frames, context copies at cuts included)
    assert load_shard_set(tmp_path / "ray").num_samples == sum(v["clips"] for v in m["videos"]) <= m["num_samples"]
    # a second run with the same settings has nothing to do
    again = make_shards_ray(ShardConfig(sample_tree, tmp_path / "ray", **settings))
    assert again.already_complete


def raises_in_window_1(attempts: Path):
    """make-shards' Ray task that raises (an error of the work, not a lost worker) in window 1."""
    from vrestore.pipeline.dataset.make_shards_ray import shard_window

    def task(cfg, w, *args):
        if w == 1:
            with open(attempts, "a") as f:
                f.write("x")
            raise RuntimeError("an error of the work itself")
        return shard_window(cfg, w, *args)

    return task


def test_ray_does_not_retry_an_error_the_work_raised(sample_tree, tmp_path, ray_local):
    attempts = tmp_path / "attempts"
    with pytest.raises(Exception, match="an error of the work itself"):
        make_shards_ray(ShardConfig(sample_tree, tmp_path / "ray", mix_window=2, max_frames=60, progress=False, workers=2),
                        task=raises_in_window_1(attempts))
    assert attempts.read_text() == "x"  # tried once: only lost workers and nodes are retried


def test_make_shards_on_ray_resumes_from_finished_windows(sample_tree, tmp_path, ray_local):
    settings = dict(mix_window=2, max_frames=60, progress=False, workers=2)
    out = tmp_path / "ray"
    full = make_shards_ray(ShardConfig(sample_tree, out, **settings))
    # as if interrupted after window 0: its done file back, the manifest and later shards gone
    keep = {s["tar"] for s in full.manifest["shards"] if "-w000000-" in s["tar"]}
    done0 = {"params": full.manifest["params"], "videos_fingerprint": full.manifest["videos_fingerprint"], "window": 0,
             "shards": [s for s in full.manifest["shards"] if s["tar"] in keep],
             "samples": sum(s["samples"] for s in full.manifest["shards"] if s["tar"] in keep),
             "records": [v | {"skipped": False} for v in full.manifest["videos"][:2]]}
    (out / ".shard-w000000.done.json").write_text(json.dumps(done0))
    (out / "manifest.json").unlink()
    mtimes = {t: (out / t).stat().st_mtime_ns for t in keep}
    for s in full.manifest["shards"]:
        if s["tar"] not in keep:
            (out / s["tar"]).unlink()
    resumed = make_shards_ray(ShardConfig(sample_tree, out, **settings))
    assert resumed.resumed_shards == len(keep) and all((out / t).stat().st_mtime_ns == m for t, m in mtimes.items())
    assert resumed.manifest["num_samples"] == full.manifest["num_samples"]


@pytest.fixture
def degraded_folder(sample_tree, tmp_path):
    """Two sample videos (their first 10 frames) degraded (with masks), plus a corrupt one."""
    src = tmp_path / "clean"
    for rel in ("Astronaut/v_Astronaut_g01_c01.avi", "Cat/v_Cat_g01_c01.avi"):
        trimmed(sample_tree / rel, src / rel, 10)
    degrade_videos(DegradeConfig(src, tmp_path / "degraded", save_masks=True, progress=False))
    (tmp_path / "degraded" / "broken.avi").write_bytes(b"RIFF" + b"\0" * 200)
    return src, tmp_path / "degraded"


@pytest.mark.slow
def test_restore_on_ray_gives_the_local_frames_and_report(degraded_folder, weights, tmp_path, ray_local):
    clean, degraded = degraded_folder
    runs = {}
    for engine in ("local", "ray"):
        cfg = RestoreConfig(degraded, weights, tmp_path / engine, codec="ffv1", originals=clean, engine=engine,
                            report=tmp_path / f"{engine}.json", niqe_frames=4, progress=False)
        runs[engine] = restore_videos(cfg)
    local, ray = runs["local"], runs["ray"]
    # the corrupt video failed alone, in both
    assert [v for v, _ in ray.failed] == [v for v, _ in local.failed] == ["broken.avi"]
    assert [r.video for r in ray.videos] == [r.video for r in local.videos] == ["Astronaut/v_Astronaut_g01_c01.avi", "Cat/v_Cat_g01_c01.avi"]
    for a, b in zip(local.videos, ray.videos):
        fa = np.concatenate(list(read_frames(a.output))); fb = np.concatenate(list(read_frames(b.output)))
        assert fa.shape[0] == a.frames and np.array_equal(fa, fb)
        assert a.score("psnr_restored") == pytest.approx(b.score("psnr_restored")) and a.score("psnr_boxes_restored") == pytest.approx(b.score("psnr_boxes_restored"))
    # (the plan's windows per pass follow each process's memory share: a Ray worker's is its own)
    rows = lambda e: [{k: v for k, v in r.items() if k not in ("seconds", "output", "plan")}
                      for r in json.loads((tmp_path / f"{e}.json").read_text())["videos"]]
    assert rows("local") == rows("ray")
    # outputs already there are skipped on a second run
    again = restore_videos(RestoreConfig(degraded, weights, tmp_path / "ray", codec="ffv1", engine="ray", progress=False))
    assert len(again.skipped) == 2 and not again.videos


@pytest.mark.slow
def test_degrade_on_ray_writes_the_local_outputs(sample_tree, tmp_path, ray_local):
    src = tmp_path / "src"  # 2 of the validation list's videos, their first 10 frames, and the list
    lines = (sample_tree / "ucfTrainTestlist/vallist01.txt").read_text().splitlines()[:2]
    for rel in lines:
        trimmed(sample_tree / rel, src / rel, 10)
    (src / "vallist01.txt").write_text("\n".join(lines) + "\n")
    for engine in ("local", "ray"):
        r = degrade_videos(DegradeConfig(src, tmp_path / engine, split_file=src / "vallist01.txt", save_masks=True, engine=engine,
                                         progress=False))
        assert len(r.done) == 2 and not r.failed
    for video in sorted((tmp_path / "local").rglob("*.avi")):
        other = tmp_path / "ray" / video.relative_to(tmp_path / "local")
        assert np.array_equal(np.concatenate(list(read_frames(video))), np.concatenate(list(read_frames(other))))


def test_slurm_array_task_takes_its_part(sample_tree, tmp_path):
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "4"}
    assert slurm_array_part(env)[:2] == (4, 1)
    assert slurm_array_part({}) is None
    with pytest.raises(ValueError, match="outside the array"):
        slurm_array_part({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"})
    import os
    r = subprocess.run([sys.executable, "-m", "vrestore", "make-shards", str(sample_tree), str(tmp_path / "out"), "--quiet", "--workers", "1"],
                       capture_output=True, text=True, env=dict(os.environ, **env))
    assert r.returncode == 0, r.stderr
    assert "Slurm array task 5" in r.stderr and "--num-nodes 4 --node-rank 1" in r.stderr
    m = json.loads((tmp_path / "out" / "manifest-node001.json").read_text())
    assert m["params"]["num_nodes"] == 4 and m["params"]["node_rank"] == 1 and len(m["videos"]) == 2  # every 4th of 8


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
