"""Restoring each frame from its neighbours (issue 13): shards for T-frame windows, one crop per window in DALI,
the T-frame generator, sliding-window restore with mirrored ends, and the temporal score."""
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import count_frames, trimmed
from vrestore.models import GeneratorConfig, build_generator, centre_frame, pad_to_multiple
from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.inference.frame_windows import sliding_windows
from vrestore.pipeline.media.neighbours import window_indices
from vrestore.pipeline.dataset.make_shards import make_shards
from vrestore.pipeline.dataset.shard_config import ShardConfig
from vrestore.pipeline.evaluation.metrics import temporal_squared_error
from vrestore.pipeline.inference.restore import RestoreConfig, restore_videos
from vrestore.pipeline.inference.restorer import Restorer
from vrestore.pipeline.media.video_io import VideoWriter
from vrestore.models.weights import load_network, save_weights, weights_payload
from test_restore import decode, make_video
from vrestore.pipeline.dataset.shard_set import load_shard_set
from vrestore.trainer.dali_input import train_batches

CPU = torch.device("cpu")


def tar_members(out) -> dict:
    """{sample key: {ext: bytes}} over every shard of a make-shards folder, and each key's shard."""
    members, shard_of = {}, {}
    for tar in sorted(out.glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                key, ext = m.name.split(".", 1)
                members.setdefault(key, {})[ext] = t.extractfile(m).read()
                shard_of[key] = tar.name
    return members, shard_of


@pytest.mark.parametrize("clip_len,stride", [(3, 1), (5, 2)])
def test_clips_layout_stores_each_clip_whole(sample_tree, tmp_path, clip_len, stride):
    """The layout before the frames layout, still written on request and still read."""
    out = tmp_path / "clips"
    make_shards(ShardConfig(sample_tree, out, clip_len=clip_len, clip_stride=stride, layout="clips", progress=False, workers=2))
    m = json.loads((out / "manifest.json").read_text())
    assert m["params"]["clip_len"] == clip_len and m["params"]["clip_stride"] == stride and "layout" not in m["params"]
    members, _ = tar_members(out)
    for key, sample in members.items():
        meta = json.loads(sample["json"])
        assert meta["clip_len"] == clip_len and meta["frames"] == list(range(meta["frame"], meta["frame"] + clip_len))
        assert key.endswith(f"/{meta['frame']:06d}")
    assert all(set(s) == {"json", *[f"{i}.jpg" for i in range(clip_len)]} for s in members.values())
    for v in m["videos"]:
        n = count_frames(sample_tree / v["path"])
        expected = math.ceil((n - clip_len + 1) / stride)
        assert v["frames"] == n and v["clips"] == expected
        assert sum(1 for k in members if k.startswith(v["id"] + "/")) == expected
    assert m["num_samples"] == sum(v["clips"] for v in m["videos"])
    assert load_shard_set(out).num_samples == m["num_samples"]
    with pytest.raises(ValueError, match=f"holds samples of {clip_len} frame"):
        load_shard_set(out, 1)  # a clips folder gives its own T only


def window_frames(shards) -> list:
    """Per window of a frames-layout set: (video, [frame numbers of its T components], centre
    frame's json), read from the window index DALI reads, against the tar's own members."""
    import tarfile as tf

    out = []
    for tar, idx in zip(shards.tars, shards.indexes):
        by_offset = {}
        with tf.open(tar) as t:
            for m in t.getmembers():
                by_offset[m.offset_data] = m.name
        for line in Path(idx).read_text().splitlines()[1:]:
            f = line.split()
            comps = {f[i]: (int(f[i + 1]), f[i + 3]) for i in range(0, len(f), 4)}
            names = [comps[e][1] for e in shards.image_exts]
            assert all(by_offset[comps[e][0]] == comps[e][1] for e in comps)  # offsets point at the named members
            run = {n.rsplit("/", 1)[0] for n in names}
            assert len(run) == 1
            out.append((run.pop(), [int(n.rsplit("/", 1)[1].split(".")[0]) for n in names], comps["json"][1]))
    return out


@pytest.mark.parametrize("clip_len,stride", [(3, 1), (5, 2)])
def test_frames_layout_stores_each_frame_once_and_centres_a_window_on_every_frame(sample_tree, tmp_path, clip_len, stride):
    out = tmp_path / "frames"
    make_shards(ShardConfig(sample_tree, out, clip_len=clip_len, clip_stride=stride, max_frames=120, progress=False, workers=2))
    m = json.loads((out / "manifest.json").read_text())
    assert m["params"]["layout"] == "frames" and m["params"]["clip_len"] == clip_len
    members, shard_of = tar_members(out)
    assert all(set(s) == {"json", "jpg"} for s in members.values())
    for v in m["videos"]:
        n = count_frames(sample_tree / v["path"])
        keys = sorted(k for k in members if k.rsplit("/", 1)[0] == v["id"])
        assert keys == [f"{v['id']}/{i:06d}" for i in range(n)]  # every frame, once
        assert len({shard_of[k] for k in keys}) == 1  # a run never straddles two shards
        assert v["clips"] == math.ceil(n / stride)
    assert m["num_samples"] == sum(v["frames"] for v in m["videos"])
    assert len({s for s in shard_of.values()}) > 1
    # T is chosen at training time: any odd T up to the shards' clip length
    lengths = {v["id"]: v["frames"] for v in m["videos"]}
    for t in sorted({1, 3, clip_len}):
        shards = load_shard_set(out, t)
        windows = window_frames(shards)
        assert shards.num_samples == len(windows) == sum(math.ceil(n / stride) for n in lengths.values())
        centres = sorted((video, frames[t // 2]) for video, frames, _ in windows)
        assert centres == sorted((video, c) for video, n in lengths.items() for c in range(0, n, stride))
        for video, frames, json_name in windows:
            assert frames == window_indices(frames[t // 2], lengths[video], t)  # restore's mirrored neighbours
            assert json_name == f"{video}/{frames[t // 2]:06d}.json"
    with pytest.raises(ValueError, match=f"odd window lengths up to {clip_len}"):
        load_shard_set(out, clip_len + 2)


def test_a_video_shorter_than_the_clip_is_skipped_with_its_reason(tmp_path):
    src = tmp_path / "src"
    make_video(src / "short.avi", rate=2, seconds=1, audio=False)  # 2 frames
    make_video(src / "long.avi", rate=10, seconds=1, audio=False)
    m = make_shards(ShardConfig(src, tmp_path / "out", clip_len=3, progress=False, workers=1)).manifest
    assert [v["path"] for v in m["videos"]] == ["long.avi"]
    assert m["skipped"] == [{"path": "short.avi", "id": "short", "reason": "shorter than --clip-len 3 (2 frames)"}]


def shifted_clip_video(path, frames=12, shift=3, size=(96, 80)):
    """Frame i is one random picture moved i*shift pixels to the left: known motion."""
    rng = np.random.default_rng(0)
    w, h = size
    big = rng.integers(0, 256, (h, w + frames * shift, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(big[::4, ::4], 4, 0), 4, 1)[:h, : w + frames * shift]  # 4x4 blocks: survives a mild blur
    with VideoWriter(path, w, h, 10, "ffv1") as out:
        for i in range(frames):
            out.write(big[None, :, i * shift : i * shift + w])
    return path


def test_one_crop_and_one_flip_serve_every_frame_of_a_clip(tmp_path):
    shift = 3
    src = tmp_path / "src"
    src.mkdir()
    shifted_clip_video(src / "moving.avi", shift=shift)
    out = tmp_path / "shards"
    make_shards(ShardConfig(src, out, clip_len=3, image_format="png", progress=False, workers=1))
    spec = DegradationSpec(blur_sigma=0.3, blur_window=1, noise_std=0, boxes_min=0, boxes_max=0)
    batch = next(iter(train_batches(load_shard_set(out), spec, 8, 32, CPU, num_threads=1)))
    stack = batch["degraded"]  # (8, 9, 32, 32): frames t-1, t, t+1 of each clip
    assert stack.shape == (8, 9, 32, 32)
    assert torch.equal(centre_frame(stack), batch["clean"])  # no degradation asked for: the centre is the clean crop
    flips = set()
    for a, b, c in (stack[i].view(3, 3, 32, 32) for i in range(len(stack))):
        # frame t+1 is frame t moved `shift` px left (or right, if the clip was flipped): the
        # same crop window on every frame keeps exactly that shift
        left = (b[..., shift:] - c[..., :-shift]).abs().max().item()
        right = (b[..., :-shift] - c[..., shift:]).abs().max().item()
        assert min(left, right) == 0 and max(left, right) > 0.1
        prev_ok = (a[..., shift:] - b[..., :-shift]).abs().max().item() == 0 if left == 0 else (a[..., :-shift] - b[..., shift:]).abs().max().item() == 0
        assert prev_ok or torch.equal(a, c)  # a video's first or last frame: its window mirrors, [1, 0, 1]
        flips.add(left == 0)
    assert flips == {True, False}, "both flipped and unflipped clips should occur in 8 samples"
    # the preview shows the clean centre and every degraded frame of the clip
    from PIL import Image

    from vrestore.trainer.config import PreviewConfig
    from vrestore.trainer.preview import make_preview

    make_preview(PreviewConfig(out, tmp_path / "p.png", num=2, crop=32, spec=spec), torch.device("cpu"))
    with Image.open(tmp_path / "p.png") as picture:
        assert picture.size == (4 * 32 + 3 * 4, 2 * 32 + 4)


def test_window_indices_mirror_at_the_ends():
    assert window_indices(0, 10, 5) == [2, 1, 0, 1, 2]
    assert window_indices(9, 10, 5) == [7, 8, 9, 8, 7]
    assert window_indices(4, 10, 3) == [3, 4, 5]
    assert window_indices(0, 1, 3) == [0, 0, 0]


def test_sliding_windows_stream_every_frame_once_in_order():
    frames = np.arange(11, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    batches = [frames[:4], frames[4:8], frames[8:]]
    out = list(sliding_windows(iter(batches), 5))
    centres = np.concatenate([c for c, _ in out])[:, 0, 0, 0].tolist()
    windows = np.concatenate([w for _, w in out])[:, :, 0, 0, 0].tolist()
    assert centres == list(range(11))
    assert windows == [window_indices(t, 11, 5) for t in range(11)]


def test_restore_uses_mirrored_neighbours_and_keeps_the_frame_count(tmp_path):
    torch.manual_seed(0)
    G = build_generator(GeneratorConfig(ngf=4, depth=5, frames=3)).eval()
    save_weights(tmp_path / "g3.pth", G)
    video = make_video(tmp_path / "in" / "clip.avi", size="64x48", rate=10, seconds=1, noise=20)
    cfg = RestoreConfig(video, weights=tmp_path / "g3.pth", output_dir=tmp_path / "out", codec="ffv1", batch_size=4, progress=False)
    result = restore_videos(cfg)
    assert not result.failed
    restored = decode(tmp_path / "out" / "clip.avi")
    frames = decode(video)
    assert len(restored) == len(frames) == count_frames(video) == 10
    to = lambda idx: torch.from_numpy(np.concatenate([frames[i] for i in idx], axis=-1)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        for t, idx in ((0, [1, 0, 1]), (5, [4, 5, 6]), (9, [8, 9, 8])):
            padded, crop_back = pad_to_multiple(to(idx), G.cfg.multiple)  # 48 rows: padded to 64 and cropped back, as restore does
            expected = ((crop_back(G(padded)).clamp(-1, 1) + 1) * 127.5).round()[0].permute(1, 2, 0).numpy()
            assert np.abs(restored[t].astype(float) - expected).max() <= 1, t


def test_single_frame_weights_from_before_restore_bit_identically(tmp_path):
    """A generator.pth written before `frames` existed has no such key: it loads as T = 1 and
    restores exactly what a direct forward pass gives."""
    torch.manual_seed(1)
    G = build_generator(GeneratorConfig(ngf=4, depth=5)).eval()
    payload = weights_payload(G)
    del payload["config"]["frames"]
    torch.save(payload, tmp_path / "old.pth")
    assert load_network(tmp_path / "old.pth").cfg.frames == 1
    video = make_video(tmp_path / "in" / "clip.avi", size="64x48", rate=10, seconds=1)
    restore_videos(RestoreConfig(video, weights=tmp_path / "old.pth", output_dir=tmp_path / "out", codec="ffv1", progress=False))
    restored = decode(tmp_path / "out" / "clip.avi")
    x = torch.from_numpy(decode(video).copy()).permute(0, 3, 1, 2).float() / 127.5 - 1
    padded, crop_back = pad_to_multiple(x, G.cfg.multiple)
    with torch.no_grad():
        expected = ((crop_back(G(padded)).clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy().astype(np.uint8)
    assert np.array_equal(restored, expected)
    assert np.array_equal(Restorer(tmp_path / "old.pth", "cpu")(decode(video)), expected)


def test_temporal_score_punishes_flicker_that_per_frame_scores_miss():
    ref = torch.full((6, 3, 8, 8), 100.0)
    steady = ref + 4  # every frame 4 levels off, always the same way
    flicker = ref + torch.tensor([4.0, -4.0] * 3)[:, None, None, None]  # as far off, alternating
    assert (steady - ref).pow(2).mean() == (flicker - ref).pow(2).mean()
    sq_s, n_s = temporal_squared_error(steady, ref).tolist()
    sq_f, n_f = temporal_squared_error(flicker, ref).tolist()
    assert sq_s == 0 and n_s == n_f == 5 * 3 * 8 * 8 and sq_f == n_f * 64
    # across a batch boundary, the previous batch's last frame continues the sequence
    split = temporal_squared_error(flicker[3:], ref[3:], flicker[2:3], ref[2:3])
    assert torch.equal(split + temporal_squared_error(flicker[:3], ref[:3]), temporal_squared_error(flicker, ref))


def degrade_and_restore(clean, tmp_path):
    """`clean`'s videos degraded with masks, then restored by a tiny 3-frame generator (tmp_path/g.pth)
    against them."""
    from vrestore.pipeline.degrade.degrade_videos import DegradeConfig, degrade_videos

    degrade_videos(DegradeConfig(clean, tmp_path / "deg", save_masks=True, progress=False))
    torch.manual_seed(0)
    save_weights(tmp_path / "g.pth", build_generator(GeneratorConfig(ngf=4, depth=5, frames=3)))
    return restore_videos(RestoreConfig(tmp_path / "deg", weights=tmp_path / "g.pth", output_dir=tmp_path / "out",
                                        originals=clean, progress=False, codec="ffv1", niqe_frames=4))


@pytest.fixture(scope="session")  # not module: xdist interleaves other modules' tests, which would tear it down
def restored_cat(sample_tree, tmp_path_factory):
    """The Cat clips (their first 15 frames) degraded with masks and restored against their
    originals, once for the tests below: (clean folder, work folder, RestoreResult)."""
    work = tmp_path_factory.mktemp("restored_cat")
    for video in sorted((sample_tree / "Cat").glob("*.avi")):
        trimmed(video, work / "clean" / video.name, 15)
    return work / "clean", work, degrade_and_restore(work / "clean", work)


@pytest.mark.slow
@pytest.mark.xdist_group("restored_cat")  # one worker restores the clips for both tests
def test_restore_reports_in_box_and_temporal_scores_with_masks(restored_cat):
    clean, _, result = restored_cat
    assert len(result.videos) == len(list(clean.glob("*.avi")))  # the masks are not restored
    for r in result.videos:
        assert r.mask and r.mask.endswith("_mask.avi")
        assert r.score("psnr_boxes_input") < r.score("psnr_outside_input")  # gray boxes are far from the picture
        assert r.score("temporal_psnr_input") is not None and r.score("temporal_psnr_restored") is not None


@pytest.mark.slow
@pytest.mark.xdist_group("restored_cat")
def test_restores_all_row_is_bench_qualitys_figure(restored_cat):
    """One definition of every score: restore's "all" row (per-video sums pooled) equals what
    bench/quality.py computes over the same videos in one pass, and its PSNR is the mean over
    all frames (not of per-video means), its box and temporal PSNR pooled over all videos."""
    import importlib.util
    from pathlib import Path

    from vrestore.pipeline.degrade.degrade_videos import mask_path
    from vrestore.pipeline.inference.report import overall
    from vrestore.pipeline.media.video_io import read_frames

    spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).parents[1] / "bench" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)

    clean, tmp_path, result = restored_cat
    row = overall(result.videos)
    videos = [(clean / r.video, tmp_path / "deg" / r.video, mask_path(tmp_path / "deg" / r.video)) for r in result.videos]
    bench = quality.evaluate(("generator", Restorer(tmp_path / "g.pth", "cpu")), videos)
    assert row["frames"] == bench["frames"] == sum(r.frames for r in result.videos)
    for ours, theirs in (("psnr_restored", "psnr"), ("ssim_restored", "ssim"), ("psnr_boxes_restored", "psnr_boxes"),
                         ("psnr_outside_restored", "psnr_outside"), ("temporal_psnr_restored", "temporal_psnr")):
        # SSIM runs in float32 over other batch sizes: a frame's mean of ~77,000 values summed in
        # another order may move by log2(n) x float32's eps ~ 1e-6; a wrong definition moves it 1e-3
        assert row[ours] == pytest.approx(bench[theirs], abs=1e-5), ours
    # whole-frame PSNR: the mean over all frames, from the outputs on disk, computed here with numpy
    per_frame = []
    for r in result.videos:
        out = np.concatenate(list(read_frames(r.output))).astype(np.float64)
        ref = np.concatenate(list(read_frames(clean / r.video))).astype(np.float64)
        mse = ((out - ref) ** 2).reshape(len(out), -1).mean(1)
        per_frame += list(10 * np.log10(255**2 / mse))
    assert row["psnr_restored"] == pytest.approx(np.mean(per_frame), abs=1e-6)
    # the box PSNR pools pixels: not the frame-weighted mean of per-video figures (that differs)
    weighted = sum(r.score("psnr_boxes_restored") * r.frames for r in result.videos) / row["frames"]
    assert abs(weighted - row["psnr_boxes_restored"]) > 1e-6


def test_weights_carry_the_spacing_of_their_windows_and_restore_feeds_it(tmp_path):
    """Shards of every 2nd frame (--frame-stride 2) give training windows whose neighbours are
    2 source frames apart: the weights record it, restore feeds windows with that spacing (and
    says so, in its report too); consecutive-frame weights keep spacing 1."""
    from cli_helpers import cli_run, clip
    from vrestore.models.weights import load_network
    from vrestore.pipeline.inference.frame_windows import sliding_windows

    src = tmp_path / "videos"
    src.mkdir()
    clip(src / "a.avi", seconds=3, rate=10, size="64x48")
    r = cli_run("make-shards", src, tmp_path / "shards", "--frame-stride", "2", "--clip-len", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli_run("vrestore", "train", "--shards", tmp_path / "shards", "--out", tmp_path / "run", "--crop", "32", "--depth", "5", "--ngf", "4",
                "--ndf", "4", "--batch-size", "2", "--val-frames", "1", "--max-steps", "1", "--quiet")
    assert r.returncode == 0 and "2 source frames apart" in r.stderr, r.stderr
    assert load_network(tmp_path / "run" / "generator.pth").cfg.frame_spacing == 2
    report = tmp_path / "out" / "report.json"
    r = cli_run("vrestore", "restore", src, "--weights", tmp_path / "run" / "generator.pth", "--output-dir", tmp_path / "out",
                "--report", report, "--niqe-frames", "0", "--quiet")
    assert r.returncode == 0 and "3 frame(s), neighbours 2 frames apart" in r.stdout, r.stdout + r.stderr
    assert json.loads(report.read_text())["model"]["frame_spacing"] == 2
    # the windows restore makes: frame t with t-2 and t+2, mirrored at the ends
    frames = np.arange(8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    got = [w[:, :, 0, 0, 0].tolist() for _, w in sliding_windows(iter([frames[:3], frames[3:]]), 3, 2)]
    assert sum(got, []) == [[2, 0, 2], [1, 1, 3], [0, 2, 4], [1, 3, 5], [2, 4, 6], [3, 5, 7], [4, 6, 6], [5, 7, 5]]


def test_validation_logs_every_score_of_the_one_record_temporal_included(tiny_frame_shards):
    """Validation reports what restore reports, by metrics.Scores' names: the temporal score too,
    from each sample's centre and the frame after it, each restored from its own window."""
    from contextlib import nullcontext

    from vrestore.pipeline.evaluation.metrics import Scores, pooled_psnr, to_255
    from vrestore.trainer.validate import format_metrics, validate, validation_set

    def run(x):
        padded, crop_back = pad_to_multiple(x, G.cfg.multiple)
        return to_255(crop_back(G(padded)))

    torch.manual_seed(0)
    G = build_generator(GeneratorConfig(ngf=4, depth=5, frames=3)).eval()
    vset = validation_set(load_shard_set(tiny_frame_shards, 3), DegradationSpec(), 3, torch.device("cpu"))
    m, _ = validate(G, vset, nullcontext)
    for name in Scores.names():
        assert m[name] is not None and m[f"{name}_input"] is not None, name
        assert Scores.about(name)["short"] in format_metrics(m)
    # the temporal figure by hand: squared errors of (next - centre), restored against clean, pooled
    with torch.no_grad():
        # whole levels, so float64 sums of their squares are exact: equal to the last bit
        err = [(((run(xn) - run(x)) - (cn - c)).double() ** 2) for x, xn, c, cn in zip(vset.degraded, vset.degraded_next, vset.clean, vset.clean_next)]
    assert m["temporal_psnr"] == pytest.approx(pooled_psnr(sum(e.sum().item() for e in err), sum(e.numel() for e in err)), abs=1e-9)
    # the next frame's window is the sample's frames mirrored at its end (T = 3: frames 1, 2, 1)
    x, xn = vset.degraded[0].view(3, 3, *vset.degraded[0].shape[-2:]), vset.degraded_next[0].view(3, 3, *vset.degraded[0].shape[-2:])
    assert torch.equal(xn[0], x[1]) and torch.equal(xn[1], x[2]) and torch.equal(xn[2], x[1])
    assert torch.equal(to_255(centre_frame(vset.degraded_next[0])), to_255(x[2][None]))
