import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import count_frames, trimmed
from vrestore.pipeline.degrade.degradations import DegradationSpec, blur
from vrestore.pipeline.degrade.degrade_videos import DegradeConfig, degrade_videos, mask_path
from vrestore.pipeline.media.probe import probe_video
from vrestore.pipeline.media.video_io import read_frames


def frames_of(path):
    return np.concatenate(list(read_frames(path)))


def test_degrade_keeps_fps_size_and_frame_count_and_applies_the_spec(sample_tree, tmp_path):
    src = sample_tree / "Cat/v_Cat_g01_c01.avi"
    out = tmp_path / "deg.avi"
    result = degrade_videos(DegradeConfig(src, out, save_masks=True, progress=False))
    assert result.done == [("v_Cat_g01_c01.avi", count_frames(src))]
    a, b = probe_video(src), probe_video(out)
    assert (b.width, b.height, b.fps) == (a.width, a.height, a.fps)
    assert count_frames(out) == count_frames(src)
    clean, degraded = frames_of(src).astype(np.float32), frames_of(out).astype(np.float32)
    masks = frames_of(mask_path(out))[..., 0] > 127
    assert masks.any(axis=(1, 2)).all()  # boxes on every frame
    assert (degraded[masks] == 128).all()
    # outside the boxes: the spec's blur plus noise of the spec's std
    blurred = blur(torch.from_numpy(clean).permute(0, 3, 1, 2), DegradationSpec()).permute(0, 2, 3, 1).numpy()
    residual = (degraded - blurred)[~masks]
    assert abs(residual.mean()) < 0.5 and 14.0 < residual.std() < 15.5


@pytest.mark.slow
def test_degrade_is_reproducible_with_a_seed(sample_tree, tmp_path):
    src = tmp_path / "src"  # two real clips, their first 10 frames
    for name in ("v_Astronaut_g01_c01.avi", "v_Astronaut_g01_c02.avi"):
        trimmed(sample_tree / "Astronaut" / name, src / name, 10)
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        degrade_videos(DegradeConfig(src, tmp_path / name, seed=seed, progress=False))
        runs[name] = frames_of(tmp_path / name / "v_Astronaut_g01_c01.avi")
    assert np.array_equal(runs["a"], runs["b"]) and not np.array_equal(runs["a"], runs["c"])
    other = frames_of(tmp_path / "a" / "v_Astronaut_g01_c02.avi")
    assert not np.array_equal(runs["a"][0], other[0])  # each video its own seed


def test_a_corrupt_video_fails_alone_and_the_command_exits_1(tree_copy, tmp_path):
    (tree_copy / "Cat" / "broken.avi").write_bytes(b"RIFF" + bytes(5000))
    out = tmp_path / "deg"
    r = subprocess.run([str(Path(sys.executable).with_name("vrestore")), "degrade", str(tree_copy / "Cat"), str(out), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "broken.avi" in r.stdout and "1 failed" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == [f"v_Cat_g0{g}_c0{c}.avi" for g in (1, 2) for c in (1, 2)]


def test_preview_writes_a_grid_image(sample_shards, tmp_path):
    r = subprocess.run([str(Path(sys.executable).with_name("vrestore")), "preview", str(sample_shards),
                        "--out", str(tmp_path / "p.png"), "-n", "3", "--crop", "64", "--device", "cpu"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = probe_video(tmp_path / "p.png")
    assert (info.width, info.height) == (2 * 64 + 4, 3 * 64 + 2 * 4)
