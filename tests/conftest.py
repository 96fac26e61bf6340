import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # N pytest workers on N cores (scripts/test.sh): one compute thread each, for torch here and
    # for every process a test starts. Two OpenMP threads per worker would spin-wait against
    # the other worker's, burning the cores the run is short of.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

from vrestore.pipeline.dataset.sample_videos import SampleConfig, make_sample_videos


@pytest.fixture(scope="session")
def sample_tree(tmp_path_factory) -> Path:
    """A small UCF-101-shaped tree: 2 sources (Astronaut: train, Cat: val) x 2 groups x 2 clips
    of 2-4 s at 320x240."""
    root = tmp_path_factory.mktemp("ucf")
    make_sample_videos(SampleConfig(root, sources=("Astronaut", "Cat"), groups=2, clips=2, seed=0))
    return root


@pytest.fixture
def tree_copy(sample_tree, tmp_path) -> Path:
    """A private copy of the sample tree that a test may add bad files to."""
    dst = tmp_path / "src"
    shutil.copytree(sample_tree, dst)
    return dst


def count_frames(path) -> int:
    """Frames in a video as ffprobe counts them by decoding (independent of our code)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    return int(json.loads(out)["streams"][0]["nb_read_frames"])


def trimmed(src: Path, dst: Path, frames: int) -> Path:
    """The first `frames` frames of a real clip, re-encoded losslessly (ffv1): the same pictures
    with less to decode, for tests whose point does not need a clip's full length."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-frames:v", str(frames), "-c:v", "ffv1", str(dst)], check=True)
    return dst


def videos_in(root: Path) -> list:
    return sorted(p for p in root.rglob("*.avi"))


@pytest.fixture(scope="session")
def sample_shards(sample_tree, tmp_path_factory) -> Path:
    """Shards of the sample tree (several shards, every frame of 8 clips)."""
    from vrestore.pipeline.dataset.make_shards import make_shards
    from vrestore.pipeline.dataset.shard_config import ShardConfig

    out = tmp_path_factory.mktemp("shards")
    make_shards(ShardConfig(sample_tree, out, max_frames=150, progress=False, workers=2))
    return out


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """A tiny single-frame generator.pth with fixed random weights (restore tests)."""
    import torch

    from vrestore.models import GeneratorConfig, build_generator
    from vrestore.models.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "generator.pth"
    save_weights(path, build_generator(GeneratorConfig(ngf=4, depth=5)))
    return path


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray instance for the whole test run (2 CPUs, no dashboard); the engines
    find it initialised and use it instead of starting their own."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_shards(sample_tree, tmp_path_factory):
    """One clip, every 4th frame, 10 frames per shard: an epoch is a handful of steps."""
    from vrestore.pipeline.dataset.make_shards import make_shards
    from vrestore.pipeline.dataset.shard_config import ShardConfig

    out = tmp_path_factory.mktemp("tiny_shards")
    make_shards(ShardConfig(sample_tree, out, limit=1, frame_stride=4, max_frames=10, progress=False, workers=1))
    return out


@pytest.fixture(scope="session")
def tiny_frame_shards(sample_tree, tmp_path_factory):
    """The same clip as tiny_shards in the frames layout, for windows of 3 (each frame stored once)."""
    from vrestore.pipeline.dataset.make_shards import make_shards
    from vrestore.pipeline.dataset.shard_config import ShardConfig

    out = tmp_path_factory.mktemp("tiny_frame_shards")
    make_shards(ShardConfig(sample_tree, out, limit=1, frame_stride=4, clip_len=3, progress=False, workers=1))
    return out


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real one-node Slurm cluster (munged, slurmctld, slurmd on localhost) for the test run;
    tests using it carry @pytest.mark.xdist_group("slurm"), so one pytest worker starts it."""
    from slurm_cluster import SlurmCluster, unavailable

    why = unavailable()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


def pytest_collection_modifyitems(config, items):
    """--dist loadgroup: give each test of an xdist_group the `@group` suffix by which xdist's
    scheduler sends a group to one worker. xdist 3.8 sets `item._nodeid`, which pytest 9 no
    longer reads (it keeps a NodeId in `item._id`), so every group was spread over the workers
    (the Ray instance started on each, shared fixtures made twice); done here for both."""
    if not getattr(config.option, "loadgroup", False):  # set in xdist workers under --dist loadgroup
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix):
            if hasattr(item, "_id"):  # pytest 9 keeps the id as a NodeId
                from _pytest.nodeid import coerce_node_id

                item._id = coerce_node_id(item.nodeid + suffix)
            else:
                item._nodeid = item.nodeid + suffix


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Videos as users have them, made with ffmpeg: rotated phone-style clips, names with spaces,
    non-ASCII and shell characters, same-stem pairs, variable frame rate, a clip ffmpeg warns
    about but decodes, Opus audio, an audio-only file, an empty file and a text file."""
    from cli_helpers import ODD_NAMES, PAIRS, clip, ffmpeg

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
