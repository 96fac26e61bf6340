"""PNG pictures come from Pillow: exact pixels, and no ffmpeg binary needed to train or preview."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vrestore.pipeline.evaluation.pictures import image_grid, write_png


def test_png_bytes_decode_to_the_same_pixels(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    write_png(tmp_path / "sub" / "a.png", image)
    with Image.open(tmp_path / "sub" / "a.png") as png:
        assert png.format == "PNG" and np.array_equal(np.asarray(png.convert("RGB")), image)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.png"]  # no temporary file left


def test_grid_places_columns_with_white_gaps():
    a, b = np.zeros((2, 4, 5, 3), np.uint8), np.full((2, 4, 5, 3), 7, np.uint8)
    grid = image_grid([a, b], gap=2)
    assert grid.shape == (2 * 4 + 2, 2 * 5 + 2, 3)
    assert (grid[:4, 5:7] == 255).all() and (grid[:4, 7:] == 7).all() and (grid[4:6] == 255).all()


@pytest.mark.slow
def test_preview_and_training_run_without_an_ffmpeg_binary(sample_shards, tmp_path):
    bin_dir = Path(sys.executable).parent  # the venv's scripts, and no ffmpeg on the PATH
    env = dict(os.environ, PATH=str(bin_dir))
    r = subprocess.run([str(bin_dir / "vrestore"), "preview", str(sample_shards), "--crop", "32", "-n", "2",
                        "--out", str(tmp_path / "p.png")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "vrestore", "train", "--shards", str(sample_shards), "--out", str(tmp_path / "run"),
                        "--crop", "32", "--depth", "5", "--ngf", "4", "--ndf", "4", "--batch-size", "4", "--max-steps", "2", "--val-frames", "2",
                        "--num-threads", "1", "--quiet"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "run" / "samples").glob("step_*.png"))
