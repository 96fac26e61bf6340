"""The training crop decoded as a region (trainer/dali_region.py) gives exactly the pixels of the
whole-frame definition (each frame decoded and blurred whole, then cropped) on the same draws,
crops on every edge of the frame included, for the seed and the real preset (issue 33)."""
import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def

from test_real_preset import only, photo_video, run
from vrestore.pipeline.dataset.make_shards import make_shards
from vrestore.pipeline.dataset.shard_config import ShardConfig
from vrestore.pipeline.dataset.shard_set import load_shard_set
from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.trainer.dali_input import read_samples, region_crops, train_batches, whole_frame_crops
from vrestore.trainer.dali_region import crop_window

CROP = 64
SIZES = [(96, 72), (80, 66)]  # (W, H): few crop positions, so every edge is drawn often


def small_videos(src):
    src.mkdir()
    for i, size in enumerate(SIZES):
        photo_video(src / f"v{i}.avi", frames=7, size=size)
    return src


@pytest.fixture(scope="module")
def seed_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("region")
    out = root / "shards"
    make_shards(ShardConfig(small_videos(root / "src"), out, clip_len=5, progress=False, workers=1))
    return load_shard_set(out)


@pipeline_def
def both_paths(shards, spec, positions):
    """Both paths on the very same draws, plus the crop's corner and the frame's shape."""
    encoded, _ = read_samples(shards, 0, 1, True, 0, 16, False)
    pick = (lambda: fn.random.uniform(values=positions)) if positions else (lambda: fn.random.uniform(range=[0.0, 1.0]))
    pos_x, pos_y, mirror = pick(), pick(), fn.random.coin_flip()
    t = shards.clip_len
    clean, degraded, shape = region_crops(encoded, t, spec, CROP, "cpu", pos_x, pos_y, mirror)
    clean_w, degraded_w, shape_w = whole_frame_crops(encoded, t, spec, CROP, "cpu", pos_x, pos_y, mirror)
    x0, y0, _ = crop_window(encoded[t // 2], CROP, pos_x, pos_y)
    return (clean, degraded, shape, clean_w, degraded_w, shape_w, x0, y0, mirror)


def compare(shards, spec, positions, batches=6) -> set:
    """Run both paths; assert every output equal; return the (W, H, x0, y0, mirror) drawn."""
    pipe = both_paths(shards, spec, positions, batch_size=8, num_threads=1, device_id=None, seed=3)
    pipe.build()
    drawn = set()
    half = 3  # clean, degraded (T, H, W, 3), frame shape
    for _ in range(batches):
        out = [np.stack([np.asarray(o.at(i)) for i in range(len(o))]) for o in pipe.run()]
        region, whole, (x0, y0, mirror) = out[:half], out[half : 2 * half], out[2 * half :]
        for r, w in zip(region, whole):
            assert r.shape == w.shape and np.array_equal(r, w)
        shape = region[half - 1]
        drawn |= {(int(s[1]), int(s[0]), int(x), int(y), int(m)) for s, x, y, m in zip(shape, x0, y0, mirror)}
    return drawn


def assert_every_edge(drawn):
    for w, h in SIZES:  # both frame sizes, with crops on the left, right, top and bottom edges
        xs = {x for W, H, x, _, _ in drawn if (W, H) == (w, h)}
        ys = {y for W, H, _, y, _ in drawn if (W, H) == (w, h)}
        assert {0, w - CROP} <= xs and {0, h - CROP} <= ys, (w, h, xs, ys)
    assert {m for *_, m in drawn} == {0, 1}  # flipped and not


def test_region_crops_are_the_whole_frame_definition_on_every_edge(seed_shards):
    assert_every_edge(compare(seed_shards, DegradationSpec(), [0.0, 0.4, 1.0]))
    # and anywhere in between, with a wider blur than the default (a larger margin)
    compare(seed_shards, DegradationSpec(blur_window=11, blur_sigma=3.0), None, batches=3)


def test_training_batches_are_the_same_with_and_without_region_decoding(seed_shards):
    """End to end (torch noise and boxes too): `train_batches` gives identical batches either way."""
    cpu = torch.device("cpu")
    region = iter(train_batches(seed_shards, DegradationSpec(), 4, CROP, cpu, seed=5, num_threads=1))
    whole = iter(train_batches(seed_shards, DegradationSpec(), 4, CROP, cpu, seed=5, num_threads=1, region=False))
    for _ in range(3):
        a, b = next(region), next(whole)
        for k in ("clean", "degraded", "mask"):
            assert torch.equal(a[k], b[k]), k
        assert a["degraded"].shape == (4, 15, CROP, CROP)


def test_real_preset_region_crops_match_whole_frames(tmp_path):
    src = small_videos(tmp_path / "src")
    opts = only("noise", noise_std=(4, 12))
    args = [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    r = run("make-shards", src, tmp_path / "shards", "--preset", "real", "--clip-len", "3", "--quiet", "--workers", "1", *args)
    assert r.returncode == 0, r.stderr
    shards = load_shard_set(tmp_path / "shards")
    assert shards.damaged_exts == ["d0.png", "d1.png", "d2.png"]
    assert_every_edge(compare(shards, DegradationSpec(), [0.0, 0.4, 1.0], batches=4))


def test_ranks_read_disjoint_parts_of_the_window_index_that_cover_it(seed_shards):
    """DDP sharding over the window index: in an epoch, rank 0 and rank 1 of 2 draw disjoint
    sets of windows (named by their centre frame) whose union is every window."""
    cpu = torch.device("cpu")
    seen = []
    for rank in range(2):
        batches = train_batches(seed_shards, DegradationSpec(), 2, CROP, cpu, rank=rank, world_size=2, num_threads=1, with_meta=True)
        centres = set()
        for _, batch in zip(range(len(batches)), batches):
            centres |= {(m["video"], m["frame"]) for m in batch["meta"]}
        seen.append(centres)
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == seed_shards.num_samples == sum(7 for _ in SIZES)  # every frame of both videos a centre
