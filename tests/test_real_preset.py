"""The real degradation preset (pipeline/degrade/real_world.py): each operation does what its
name says within its range, the codec stage is a real encoder's damage, make-shards stores
exactly what `degrade` writes (the frames DALI then reads), and a model trained on it says so."""
import json
from pathlib import Path
import tarfile

import numpy as np
import pytest
import skimage.data
import torch

from cli_helpers import clip, run
from vrestore.pipeline.degrade import real_world as rw
from vrestore.pipeline.degrade.real_world import RealDraw, RealSpec, draw, frame_damage
from vrestore.pipeline.media.video_io import VideoWriter, read_frames

ALL_OFF = {name: 0.0 for name in rw.PROBABILITIES}


def photo_video(path, frames=12, size=(160, 128)):
    """A slow pan over a photograph (natural texture, which codecs and blur act on as on film)."""
    img = skimage.data.astronaut()
    w, h = size
    with VideoWriter(path, w, h, 25, "ffv1") as out:
        for i in range(frames):
            out.write(img[100 + i : 100 + i + h, 120 + 2 * i : 120 + 2 * i + w][None])
    return path


def psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


def frames(path):
    return np.concatenate(list(read_frames(path)))


def as_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.copy()).permute(0, 3, 1, 2).float()


def blockiness(x: np.ndarray) -> float:
    """Mean luma jump across 8-pixel block borders over the mean jump inside blocks (1: none)."""
    y = x.astype(float).mean(-1)
    d = np.abs(np.diff(y, axis=2))  # (N, H, W-1): between columns c and c+1
    border = d[:, :, 7::8].mean()
    inside = np.delete(d, np.s_[7::8], axis=2).mean()
    return border / inside


def degrade_real(src, dst, **options):
    args = []
    for k, v in options.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    r = run("vrestore", "degrade", src, dst, "--preset", "real", "--quiet", *args)
    assert r.returncode == 0, r.stderr
    return dst


def only(*names, **ranges):
    """degrade options turning on just `names` (probability 1), with `ranges` as LOW,HIGH."""
    opts = {f"real_p_{n}": 0.0 for n in rw.PROBABILITIES}
    opts |= {f"real_p_{n}": 1.0 for n in names}
    opts |= {f"real_{k}": f"{v[0]},{v[1]}" for k, v in ranges.items()}
    return opts


def test_draws_are_per_video_reproducible_and_inside_their_ranges():
    spec = RealSpec()
    draws = [draw(spec, seed) for seed in range(300)]
    assert draw(spec, 7) == draws[7]
    on = lambda f: np.mean([f(d) is not None for d in draws])
    assert abs(on(lambda d: d.blur) - spec.probabilities["blur"]) < 0.1
    assert abs(on(lambda d: d.codec) - spec.probabilities["codec"]) < 0.08
    for d in draws:
        if d.blur:
            assert all(spec.ranges["blur_sigma"][0] <= s <= spec.ranges["blur_sigma"][1] for s in d.blur[:2])
        if d.codec and d.codec[0] == "libx264":
            assert spec.ranges["x264_crf"][0] <= d.codec[1] <= spec.ranges["x264_crf"][1]
        if d.jpeg_quality:
            assert spec.ranges["jpeg_quality"][0] <= d.jpeg_quality <= spec.ranges["jpeg_quality"][1]
    assert all(draw(RealSpec(probabilities=ALL_OFF), s) == RealDraw() for s in range(20))
    with pytest.raises(ValueError, match="--real-x264-crf"):
        RealSpec(ranges=rw.RANGES | {"x264_crf": (30, 60)})
    with pytest.raises(ValueError, match="--real-p-blur"):
        RealSpec(probabilities=rw.PROBABILITIES | {"blur": 1.5})


def test_codec_only_draws_are_the_encoder_alone():
    """--real-p-codec-only: that share of draws is the encoder and nothing else; at 0 every
    draw is what it was before the option existed (it is drawn last)."""
    always = RealSpec(probabilities=rw.PROBABILITIES | {"codec": 0.0, "codec_only": 1.0})
    never = RealSpec(probabilities=rw.PROBABILITIES | {"codec_only": 0.0})
    for seed in range(50):
        d = draw(always, seed)
        assert d.codec is not None and d.describe().keys() == {"codec"}, d
    old = RealSpec(probabilities={k: v for k, v in rw.PROBABILITIES.items() if k != "codec_only"})  # an old manifest's spec
    assert [draw(never, s) for s in range(50)] == [draw(old, s) for s in range(50)]
    # two seeds' draws as the code before the option made them (ddee4ee), so existing shards and
    # degrade outputs are reproduced
    assert draw(never, 0) == RealDraw(noise_std=3.8480842532225967, codec=("libx264", 38))
    assert draw(never, 1) == RealDraw(blur=(1.725380726487019, 1.725380726487019, 0.0), resize=0.7477175435459704,
                                      noise_std=8.167522699950393, gray_noise=True, jpeg_quality=93, codec=("mpeg4", 16))
    quarter = RealSpec(probabilities=rw.PROBABILITIES | {"codec_only": 0.25})
    share = np.mean([draw(quarter, s).describe().keys() == {"codec"} for s in range(2000)])
    assert 0.25 < share < 0.35, share  # 0.25 on top of the ~1 in 20 the other chances leave codec-only


def test_frame_operations_do_what_their_names_say():
    x = as_nchw(skimage.data.astronaut()[None, 100:228, 100:260])
    g = lambda: torch.Generator().manual_seed(0)
    detail = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().mean() + (t[..., :, 1:] - t[..., :, :-1]).abs().mean()
    # blur and resize remove detail, more for larger sigma / smaller scale
    soft, softer = (frame_damage(x, RealDraw(blur=(s, s, 0.0)), g()) for s in (0.8, 2.0))
    assert detail(softer) < detail(soft) < 0.9 * detail(x)
    assert detail(frame_damage(x, RealDraw(resize=0.5), g())) < 0.85 * detail(x)
    # anisotropic: sigma 3 along x and 0.3 along y (angle 0) smooths stripes that change along
    # x, leaves stripes that change along y; turned by 90 degrees, the other way round
    stripes = (torch.arange(64) // 3 % 2 * 200.0 + 20).expand(1, 3, 64, 64)  # changes along x
    contrast = lambda t: t[..., 8:-8, 8:-8].std()
    for angle, along_x, along_y in ((0.0, "smoothed", "kept"), (np.pi / 2, "kept", "smoothed")):
        d = RealDraw(blur=(0.3, 3.0, angle))
        for img, expect in ((stripes, along_x), (stripes.transpose(-1, -2), along_y)):
            ratio = contrast(frame_damage(img, d, g())) / contrast(img)
            assert (ratio < 0.5) if expect == "smoothed" else (ratio > 0.95), (angle, expect, ratio)
    # Gaussian noise of the drawn std (away from clipping); gray noise is the same in R, G, B
    mid = torch.full((2, 3, 64, 64), 128.0)
    n = frame_damage(mid, RealDraw(noise_std=10.0), g()) - mid
    assert 9.0 < n.std() < 11.0
    gray = frame_damage(mid, RealDraw(noise_std=10.0, gray_noise=True), g()) - mid
    assert torch.equal(gray[:, 0], gray[:, 1]) and not torch.equal(n[:, 0], n[:, 1])
    # shot noise grows with the level
    dark, bright = torch.full((1, 3, 64, 64), 20.0), torch.full((1, 3, 64, 64), 200.0)
    shot = lambda t: (frame_damage(t, RealDraw(shot_noise=2.0), g()) - t).std()
    assert shot(bright) > 2.5 * shot(dark)
    # JPEG: lower quality, lower PSNR
    q = lambda quality: psnr(frame_damage(x, RealDraw(jpeg_quality=quality), g()).numpy(), x.numpy())
    assert q(20) < q(50) < q(90)
    # grain: new in every frame, about the drawn strength
    two = x.repeat(2, 1, 1, 1)
    grained = frame_damage(two, RealDraw(grain_std=6.0), g()) - two
    assert 2.0 < grained.std() < 7.0 and not torch.equal(grained[0], grained[1])
    # fade: a warm (sepia) cast and less contrast
    faded = frame_damage(x, RealDraw(fade=0.3), g())
    luma = lambda t: (t * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    warmth = lambda t: (t[:, 0] - t[:, 2]).mean()
    gray = torch.linspace(30, 220, 64).expand(1, 3, 64, 64)
    assert luma(faded).std() < 0.97 * luma(x).std() and warmth(gray) == 0 and warmth(frame_damage(gray, RealDraw(fade=0.3), g())) > 5


@pytest.mark.slow
def test_the_codec_stage_is_a_real_encoders_damage(tmp_path):
    """libx264 at a high CRF: PSNR against the clean frames in a plausible band, lower than at a
    low CRF, and 8x8 blocking across macroblock borders appears (not in the clean video)."""
    src = tmp_path / "in"
    src.mkdir()
    photo_video(src / "pan.avi")
    clean = frames(src / "pan.avi")
    low = frames(degrade_real(src, tmp_path / "crf20", **only("codec", x264_crf=(20, 20)), real_codecs="libx264") / "pan.avi")
    high = frames(degrade_real(src, tmp_path / "crf45", **only("codec", x264_crf=(45, 45)), real_codecs="libx264") / "pan.avi")
    mp4v = frames(degrade_real(src, tmp_path / "q24", **only("codec", mpeg4_qscale=(24, 24)), real_codecs="mpeg4") / "pan.avi")
    assert clean.shape == low.shape == high.shape == mp4v.shape
    assert 22 < psnr(high, clean) < psnr(low, clean) and psnr(low, clean) > 34
    assert 20 < psnr(mp4v, clean) < 33
    # the encoder's damage, not a level shift: YUV -> RGB decoded exactly (ffmpeg_cmd.EXACT_SCALE_FLAGS;
    # swscale's default darkened every decoded frame by ~1.2 levels and a real model learned to brighten)
    # (measured at CRF 20: +0.22/-0.04/+0.34 per channel, 4:2:0 chroma on a saturated photograph; -1.2 before)
    shift = (low.astype(float) - clean).mean((0, 1, 2))
    assert np.abs(shift).max() < 0.5 and abs(shift.mean()) < 0.3, shift
    # (x264's in-loop deblocking filter softens its block borders; mpeg4 has none)
    assert blockiness(clean) < 1.0 and blockiness(low) < 1.05 < 1.08 < blockiness(high) and blockiness(mp4v) > 1.15, \
        (blockiness(clean), blockiness(low), blockiness(high), blockiness(mp4v))
    # nothing left beside the output: the encoded copy went through a temporary name
    assert sorted(p.name for p in (tmp_path / "crf45").iterdir()) == ["pan.avi"]


def png(data: bytes) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(data)))


def index_windows(shard_set) -> list:
    """[(centre json's sample name, [component sample names])] per line of the window index, in order."""
    out = []
    for line in Path(shard_set.indexes[0]).read_text().splitlines()[1:]:
        f = line.split()
        comps = {f[i]: f[i + 3].rsplit(".", 2)[0] if f[i].startswith("d") else f[i + 3].split(".")[0] for i in range(0, len(f), 4)}
        out.append((comps["json"], [comps[e] for e in shard_set.image_exts + shard_set.damaged_exts]))
    return out


@pytest.mark.slow
def test_make_shards_stores_what_degrade_writes_and_dali_reads_it(tmp_path):
    """make-shards --preset real keeps, beside each clean frame, the very frame `vrestore degrade
    --preset real` writes for that video (one function, one seed rule), each frame once; DALI's
    reader then decodes the same pixels for every window (the validation set's source)."""
    from vrestore.pipeline.dataset.shard_set import load_shard_set
    from vrestore.pipeline.media.neighbours import window_indices
    from vrestore.trainer.dali_input import spread_samples

    src = tmp_path / "in"
    src.mkdir()
    photo_video(src / "a.avi", frames=9)
    shards = tmp_path / "shards"
    r = run("make-shards", src, shards, "--preset", "real", "--clip-len", "3", "--quiet", "--workers", "1", "--format", "png")
    assert r.returncode == 0, r.stderr
    clean, degraded = frames(src / "a.avi"), frames(degrade_real(src, tmp_path / "d") / "a.avi")
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["params"]["preset"] == "real" and manifest["videos"][0]["real"]  # the draw is recorded
    with tarfile.open(next(shards.glob("*.tar"))) as tar:
        assert sorted(tar.getnames()) == sorted(f"a/{f:06d}.{m}" for f in range(9) for m in ("png", "d.png", "json"))
        for f in range(9):
            np.testing.assert_array_equal(png(tar.extractfile(f"a/{f:06d}.d.png").read()), degraded[f])  # the damaged copy, exactly
    shard_set = load_shard_set(shards)
    assert shard_set.preset == "real" and shard_set.damaged_exts == ["d0.png", "d1.png", "d2.png"]
    samples, windows = spread_samples(shard_set, 9), index_windows(shard_set)
    assert sorted(int(c.split("/")[1]) for c, _ in windows) == list(range(9))  # every frame a centre once
    for sample, (centre, _) in zip(samples, windows):
        idx = window_indices(int(centre.split("/")[1]), 9, 3)  # mirrored at the ends, as restore does
        assert sample.shape[0] == 6
        np.testing.assert_array_equal(sample[:3], clean[idx])
        np.testing.assert_array_equal(sample[3:], degraded[idx])


def find_window(frame: np.ndarray, crop: np.ndarray) -> tuple:
    """(y, x, flipped) of the one place in `frame` (H, W, 3) whose window is `crop`, as is or mirrored."""
    from numpy.lib.stride_tricks import sliding_window_view

    windows = sliding_window_view(frame, crop.shape, axis=(0, 1, 2))[:, :, 0]  # (H-h+1, W-w+1, h, w, 3)
    hits = [(int(y), int(x), flipped) for flipped in (False, True)
            for y, x in zip(*np.nonzero((windows == (crop[:, ::-1] if flipped else crop)).all(axis=(2, 3, 4))))]
    assert len(hits) == 1, hits
    return hits[0]


@pytest.mark.slow
def test_real_training_batches_pair_the_clean_centre_with_its_damaged_clip(tmp_path):
    """A training batch from real shards: the target is the window's clean centre frame, the
    input its damaged frames (the copy `degrade --preset real` writes), all under one crop window
    and one flip, each frame decoded only over the crop."""
    from vrestore.pipeline.dataset.shard_set import load_shard_set
    from vrestore.pipeline.degrade.degradations import DegradationSpec
    from vrestore.pipeline.media.neighbours import window_indices
    from vrestore.trainer.dali_input import train_batches

    src = tmp_path / "in"
    src.mkdir()
    photo_video(src / "a.avi", frames=9)
    r = run("make-shards", src, tmp_path / "shards", "--preset", "real", "--clip-len", "3", "--quiet", "--workers", "1", "--format", "png")
    assert r.returncode == 0, r.stderr
    clean, damaged = frames(src / "a.avi"), frames(degrade_real(src, tmp_path / "d") / "a.avi")
    batch = next(iter(train_batches(load_shard_set(tmp_path / "shards"), DegradationSpec(), 9, 64, torch.device("cpu"), with_meta=True)))
    to_uint8 = lambda x: np.rint((x.permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
    flips = set()
    for target, stack, meta in zip(batch["clean"], batch["degraded"], batch["meta"]):
        f = meta["frame"]  # the centre
        y, x, flipped = find_window(clean[f], to_uint8(target))
        flips.add(flipped)
        for i, window in zip(window_indices(f, 9, 3), stack.split(3)):  # frame-major: f - 1, f, f + 1
            expected = damaged[i, y : y + 64, x : x + 64]
            np.testing.assert_array_equal(to_uint8(window), expected[:, ::-1] if flipped else expected)
    assert flips == {False, True}  # both flips drawn across 9 samples (fixed seed)


def test_real_draws_damage_runs_of_frames_each_with_its_own_draw(tmp_path):
    """--real-draws 2: the first run of a video's frames holds `degrade`'s copy of the video, the
    second another draw's, and each window's frames come from one run (one damage per window)."""
    from vrestore.pipeline.dataset.shard_set import load_shard_set

    src = tmp_path / "in"
    src.mkdir()
    photo_video(src / "a.avi", frames=9)
    opts = only("noise", noise_std=(4, 12))
    args = [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    r = run("make-shards", src, tmp_path / "shards", "--preset", "real", "--clip-len", "3", "--quiet", "--workers", "1",
            "--real-draws", "2", *args)
    assert r.returncode == 0, r.stderr
    degraded = frames(degrade_real(src, tmp_path / "d", **opts) / "a.avi")
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["params"]["real_draws"] == 2 and len(manifest["videos"][0]["real"]) == 2
    stored = {}  # frame -> (draw, run, damaged frame)
    with tarfile.open(next((tmp_path / "shards").glob("*.tar"))) as tar:
        for m in tar.getmembers():
            if m.name.endswith(".json"):
                info, key = json.loads(tar.extractfile(m).read()), m.name.removesuffix(".json")
                stored[info["frame"]] = (info["draw"], key.split("/")[0], png(tar.extractfile(f"{key}.d.png").read()))
    assert sorted(stored) == list(range(9))  # each frame once
    assert [stored[f][:2] for f in range(9)] == [(0, "a~d0")] * 4 + [(1, "a~d1")] * 5  # 2 runs, as even as 9 allows
    for f, (k, _, d) in stored.items():
        assert np.array_equal(d, degraded[f]) == (k == 0), (f, k)  # run 0: degrade's copy, run 1 not
    assert 20 < psnr(np.stack([stored[f][2] for f in range(4, 9)]), degraded[4:9]) < 40  # another noise, of the same kind
    windows = index_windows(load_shard_set(tmp_path / "shards"))
    assert len(windows) == 9
    for centre, names in windows:
        assert {n.split("/")[0] for n in names} == {centre.split("/")[0]}  # one run, one damage


@pytest.mark.slow
def test_a_real_model_says_so_in_its_weights_and_restore_report(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    photo_video(src / "a.avi", frames=10)
    shards = tmp_path / "shards"
    assert run("make-shards", src, shards, "--preset", "real", "--quiet", "--workers", "1").returncode == 0
    r = run("vrestore", "train", "--shards", shards, "--preset", "seed", "--out", tmp_path / "bad", "--max-steps", "1")
    assert r.returncode == 2 and "made with --preset real" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("vrestore", "train", "--shards", shards, "--out", tmp_path / "run", "--max-steps", "2", "--batch-size", "2", "--crop", "64",
            "--ngf", "8", "--ndf", "8", "--device", "cpu", "--quiet")
    assert r.returncode == 0, r.stderr
    r = run("vrestore", "restore", src, "--weights", tmp_path / "run" / "generator.pth", "--output-dir", tmp_path / "out",
            "--report", tmp_path / "report.json", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "trained for the real degradation preset" in r.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["model"]["trained_for_preset"] == "real"
    assert report["videos"][0]["niqe_input"] is not None and report["videos"][0]["niqe_restored"] is not None


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
