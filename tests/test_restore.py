"""`vrestore restore` on small generated videos with a tiny real generator."""
import json
import os
import subprocess
import sys

import numpy as np
import torch
import pytest
from click.testing import CliRunner
from skimage.metrics import structural_similarity

from vrestore.models import DiscriminatorConfig, build_discriminator
from vrestore.pipeline.inference.restore import RestoreConfig, restore_videos
from vrestore.pipeline.inference.restorer import Restorer
from vrestore.models.weights import save_weights
from conftest import count_frames
from vrestore.cli import cli


def make_video(path, size="100x60", rate=15, seconds=2, audio=True, noise=0):
    """testsrc2 (+ a sine tone), FFV1 in AVI; `noise` adds ffmpeg's own noise filter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "pcm_s16le"]
    if noise:
        args += ["-vf", f"noise=alls={noise}:allf=t"]
    subprocess.run(args + ["-c:v", "ffv1", str(path)], check=True)
    return path


def decode(path) -> np.ndarray:
    """All frames as (N, H, W, 3) uint8, by ffmpeg directly (not through our reader)."""
    info = json.loads(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height:stream_side_data=rotation",
                                      "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout)["streams"][0]
    h, w = info["height"], info["width"]
    if any(abs(sd.get("rotation", 0)) % 180 == 90 for sd in info.get("side_data_list", [])):
        h, w = w, h  # ffmpeg turns the picture upright when it decodes
    # an exact YUV -> RGB conversion, as our reader asks for (ffmpeg's default is ~1 level dark)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", "scale=flags=accurate_rnd+full_chroma_int", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "pipe:"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def streams(path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,width,height,r_frame_rate", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A clean original and a noisy version of it, same size, fps and length."""
    d = tmp_path_factory.mktemp("pair")
    return make_video(d / "clean" / "clip.avi"), make_video(d / "noisy" / "clip.avi", noise=30)


def test_round_trip_keeps_frames_fps_size_and_audio(pair, weights, tmp_path):
    _, noisy = pair
    result = restore_videos(RestoreConfig(noisy, weights, tmp_path / "out", progress=False))
    out = tmp_path / "out" / "clip.avi"
    assert [r.video for r in result.videos] == ["clip.avi"] and not result.failed
    assert count_frames(out) == count_frames(noisy) == 30
    s, src = streams(out), streams(noisy)
    assert (s["video"]["width"], s["video"]["height"], s["video"]["r_frame_rate"]) == (100, 60, "15/1")
    assert s["audio"] and src["audio"]


def test_scores_match_an_independent_computation(pair, weights, tmp_path):
    clean, noisy = pair
    result = restore_videos(RestoreConfig(noisy, weights, tmp_path, codec="ffv1", originals=clean, progress=False))
    r = result.videos[0]
    o, x = decode(clean).astype(np.float64), decode(noisy).astype(np.float64)
    y = decode(tmp_path / "clip.avi").astype(np.float64)  # lossless: the very frames scored
    np_psnr = lambda a, b: np.mean([10 * np.log10(255**2 / np.mean((p - q) ** 2)) for p, q in zip(a, b)])
    sk_ssim = lambda a, b: np.mean([structural_similarity(p, q, data_range=255, channel_axis=-1, gaussian_weights=True,
                                                          sigma=1.5, use_sample_covariance=False) for p, q in zip(a, b)])
    assert r.score("psnr_input") == pytest.approx(np_psnr(x, o), abs=1e-6)
    assert r.score("psnr_restored") == pytest.approx(np_psnr(y, o), abs=1e-6)
    # ours sums in float32, skimage in float64: 1.2e-5 apart on these frames
    assert r.score("ssim_input") == pytest.approx(sk_ssim(x, o), abs=3e-5)
    assert r.score("ssim_restored") == pytest.approx(sk_ssim(y, o), abs=3e-5)
    assert r.score("psnr_input") < 30  # the noise is there, so the figures are not trivially equal


def test_mismatched_original_is_reported_not_paired(pair, weights, tmp_path):
    _, noisy = pair
    other = make_video(tmp_path / "orig" / "clip.avi", rate=10)
    result = restore_videos(RestoreConfig(noisy, weights, tmp_path / "out", originals=other, progress=False))
    r = result.videos[0]
    assert r.score("psnr_restored") is None and "15 fps but original 10 fps" in r.mismatch
    short = make_video(tmp_path / "short" / "clip.avi", seconds=1)
    r = restore_videos(RestoreConfig(noisy, weights, tmp_path / "out2", originals=short, progress=False)).videos[0]
    assert r.score("psnr_restored") is None and "differ in frame count (input 30)" in r.mismatch


def test_folder_with_corrupt_file_restores_the_rest_and_exits_1(weights, tmp_path):
    src = tmp_path / "in"
    make_video(src / "a" / "one.avi", audio=False)
    make_video(src / "b" / "two.avi", audio=False)
    (src / "b" / "broken.avi").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    r = CliRunner().invoke(cli, ["restore", str(src), "--weights", str(weights), "--output-dir", str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 1, r.output
    assert "failed: b/broken.avi" in r.output and "restored 2 videos" in r.output
    assert (tmp_path / "out" / "a" / "one.avi").is_file() and (tmp_path / "out" / "b" / "two.avi").is_file()
    assert not list((tmp_path / "out").rglob("*broken*"))  # nothing half-written under a real name
    # a second run skips what is there
    r = CliRunner().invoke(cli, ["restore", str(src / "a"), "--weights", str(weights), "--output-dir", str(tmp_path / "out" / "a"), "--quiet"])
    assert r.exit_code == 0 and "1 already there" in r.output


@pytest.mark.parametrize("make_bad, message", [
    (lambda p: p / "missing.pth", "no such file"),
    (lambda p: (p / "junk.pth").write_bytes(b"junk") and p / "junk.pth", "not a weights file"),
])
def test_bad_weights_exit_2_with_one_line(pair, tmp_path, make_bad, message):
    r = CliRunner().invoke(cli, ["restore", str(pair[1]), "--weights", str(make_bad(tmp_path)), "--output-dir", str(tmp_path / "o")])
    assert r.exit_code == 2 and message in r.output and r.output.count("\n") == 1


def test_discriminator_weights_are_refused(tmp_path, pair):
    save_weights(tmp_path / "d.pth", build_discriminator(DiscriminatorConfig(ndf=4)))
    r = CliRunner().invoke(cli, ["restore", str(pair[1]), "--weights", str(tmp_path / "d.pth"), "--output-dir", str(tmp_path / "o")])
    assert r.exit_code == 2 and "holds a discriminator, not a generator" in r.output


def test_side_by_side_writes_video_and_png(pair, weights, tmp_path):
    clean, noisy = pair
    restore_videos(RestoreConfig(noisy, weights, tmp_path, originals=clean, side_by_side=True, progress=False))
    png, video = tmp_path / "side_by_side" / "clip.png", tmp_path / "side_by_side" / "clip.avi"
    assert png.is_file() and count_frames(video) == 30
    s = streams(png)["video"]
    assert (s["width"], s["height"]) == (3 * 100 + 2 * 4, 60)


class WideLocalNet(torch.nn.Module):
    """Each output pixel from the pixels 15 away from it (a dilated 3x3 convolution) as much as
    from itself: it sees exactly 15 pixels around, and a tile that gives it less shows."""

    def __init__(self):
        super().__init__()
        self.near = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.far = torch.nn.Conv2d(8, 3, 3, padding=14, dilation=14)

    def forward(self, x):
        return torch.tanh(self.far(torch.tanh(self.near(x))))


def test_tiles_cover_the_frame(weights):
    """Tiles give the whole-frame result. A network that sees 2 pixels around each pixel (less
    than the tiles' overlap) must give exactly the same frame tiled or whole, so every tile's
    placement and crop is checked, edges and corners included; frames larger than the tile, and
    of no multiple of 32, so the whole frame is mirror-padded at its edges as edge tiles are."""
    frames = np.random.default_rng(0).integers(0, 256, (2, 100, 150, 3), dtype=np.uint8)
    torch.manual_seed(0)
    local = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(8, 3, 3, padding=1), torch.nn.Tanh())
    whole, tiled = Restorer(weights, "cpu"), Restorer(weights, "cpu", tile=96)
    for r in (whole, tiled):
        r.G = local.eval()
    full, pieces = whole(frames), tiled(frames)
    assert full.std() > 20  # a picture, not a constant
    assert np.abs(pieces.astype(int) - full).max() <= 1  # float order may differ by a rounding
    # a network that sees 15 pixels around each pixel, under the 32-pixel overlap of 96-pixel
    # tiles: the tiles' seams (every 32 pixels) must not show. The maximum difference next to each
    # seam, not a mean that would average a few bad columns away.
    torch.manual_seed(0)
    wide = WideLocalNet()
    for r in (whole, tiled):
        r.G = wide.eval()
    # (15 pixels from the frame's edges the whole frame's and an edge tile's mirror padding
    # differ in width; the local network above checks the edges)
    diff = np.abs(tiled(frames).astype(int) - whole(frames))[:, 15:-15, 15:-15]
    assert whole(frames).std() > 5
    step = 96 - 2 * 32
    assert tiled.overlap(96) == 32
    for seam in range(step, 150, step):
        for axis, size in ((1, 100), (2, 150)):
            if 15 + 3 <= seam <= size - 15 - 3:
                band = np.take(diff, range(seam - 15 - 3, seam - 15 + 3), axis=axis)
                assert band.max() <= 1, (axis, seam, band.max())
    assert diff.max() <= 1
    with pytest.raises(ValueError, match="multiple of 32"):
        Restorer(weights, "cpu", tile=48)


def far_reaching_unet(path):
    """A U-Net whose weights are drawn wide (N(0, 0.08)): its output depends on context far away,
    as a trained one's does (pix2pix's N(0, 0.02) start barely looks past its own pixel)."""
    from vrestore.models import GeneratorConfig, build_generator
    from vrestore.models.weights import save_weights

    torch.manual_seed(1)
    G = build_generator(GeneratorConfig(ngf=4, depth=5))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if p.ndim == 4:
                p.normal_(0, 0.08)
    save_weights(path, G)
    return path


def test_tiles_overlap_by_the_generators_reach_and_match_whole_frames(tmp_path):
    """The overlap follows how far the generator looks (measured once), so tiled frames match
    whole ones within a level; a tile too small for it, and a --max-memory no tile can meet,
    are said in the plan, which restore prints once per frame size and keeps in the report."""
    weights = far_reaching_unet(tmp_path / "g.pth")
    whole = Restorer(weights, "cpu")
    reach = whole.reach()
    assert 16 <= reach <= 160, reach  # a real distance, within the 5-level U-Net's receptive field
    tile = 128  # overlap: the reach rounded up to the generator's multiple (32)
    assert whole.overlap(tile) == 32 >= reach
    yy, xx = np.mgrid[0:200, 0:300]
    smooth = (127 + 80 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 13.0)[..., None] + 40 * np.sin(xx / 3.1 + yy / 5.3)[..., None])
    frames = np.clip(smooth + np.arange(3) * 10, 0, 255).astype(np.uint8)[None].repeat(2, 0)
    tiled = Restorer(weights, "cpu", tile=tile)
    full, pieces = whole(frames), tiled(frames)
    assert full.std() > 4  # a picture, not a constant
    assert np.abs(pieces.astype(int) - full).max() <= 1
    assert whole.notes[(200, 300)].startswith("300x200: whole frames, ")
    assert "tiles of 128 px overlapping by 32 px" in tiled.notes[(200, 300)] and "match whole ones" in tiled.notes[(200, 300)]
    small = Restorer(weights, "cpu", tile=64)
    small(frames)
    assert "seams may show" in small.notes[(200, 300)], small.notes
    assert np.abs(small(frames).astype(int) - full).max() > 1  # and they do: the check above can fail
    starved = Restorer(weights, "cpu", max_memory=1e-9)
    starved(frames[:1, :64, :64])
    assert "--max-memory cannot be met: even one 32-px window needs" in starved.notes[(64, 64)], starved.notes


@pytest.mark.slow
def test_max_memory_bounds_the_process_peak_memory(weights):
    """The cap measured by the operating system, not by the instrument the plan uses: while 32
    windows of 480x640 go through under --max-memory 64 MiB, the process's peak RSS grows by at
    most the budget, the output frames, and the convolution library's own scratch memory (which
    torch does not hand out as tensors; ~50 MB measured here); uncapped, by far more."""
    # the process's peak RSS over the call alone: VmHWM reset (clear_refs 5) after the set-up,
    # so the loading of torch and the input array's own peak do not hide it
    script = ("import sys, numpy as np; from vrestore.pipeline.inference.restorer import Restorer; "
              "kib = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]); "
              "cap = float(sys.argv[2]); r = Restorer(sys.argv[1], 'cpu', max_memory=cap / 1024); "
              "r(np.zeros((1, 64, 64, 3), np.uint8)); "
              "x = np.random.default_rng(0).integers(0, 256, (32, 480, 640, 3), dtype=np.uint8); out = np.ones_like(x); "
              "open('/proc/self/clear_refs', 'w').write('5'); base = kib('VmRSS:'); out[:] = r(x); "
              "print((kib('VmHWM:') - base) / 1024)")
    grown = {}
    for cap in (64, 64 * 1024):  # MiB
        r = subprocess.run([sys.executable, "-c", script, str(weights), str(cap)], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert r.returncode == 0, r.stderr[-2000:]
        grown[cap] = float(r.stdout.split()[-1])
    output_mib, scratch_mib = 32 * 480 * 640 * 3 / 2**20, 64
    assert grown[64] <= 64 + output_mib + scratch_mib, grown
    assert grown[64 * 1024] > grown[64] + 2 * 64, grown  # the check can fail: uncapped, the same work takes much more


def test_max_memory_bounds_the_generator_tensors_and_keeps_the_result(weights):
    """--max-memory: the peak of every tensor torch holds during a batch (followed storage by
    storage) stays under the budget, by smaller passes, then by tiles when one frame does not
    fit; the frames come out as the unbounded run makes them."""
    from vrestore.pipeline.inference.memory_cap import _PeakTensorBytes

    windows = np.random.default_rng(0).integers(0, 256, (8, 200, 300, 3), dtype=np.uint8)
    free = Restorer(weights, "cpu", max_memory=64)
    with _PeakTensorBytes() as seen:
        expected = free(windows)
    assert free.plan(200, 300)[0] >= 8 and free.plan(200, 300)[1] is None
    one_window = seen.peak / 8
    for budget, plan in ((3 * one_window, (3, None)), (one_window / 3, (1, 160))):
        r = Restorer(weights, "cpu", max_memory=budget / 2**30)
        with _PeakTensorBytes() as seen:
            out = r(windows)
        assert seen.peak <= budget * 1.05, (seen.peak / budget, r.plan(200, 300))
        passes, tile = r.plan(200, 300)
        assert (passes <= plan[0]) and (tile is None) == (plan[1] is None), r.plan(200, 300)
        assert out.shape == expected.shape and np.abs(out.astype(int) - expected).mean() < (0.01 if tile is None else 2)
    with pytest.raises(ValueError, match="--max-memory 0"):
        Restorer(weights, "cpu", max_memory=0)


@pytest.mark.slow
def test_memory_stays_flat_with_video_length(weights, tmp_path):
    """Peak RSS of a restore process for a 2 s and a 10 s video: all frames in memory would add
    ~46 MB for the longer one (50 vs 250 frames of 320x240 raw RGB, before any float copies)."""
    script = ("import resource, sys; from vrestore.pipeline.inference.restore import RestoreConfig, restore_videos; "
              "restore_videos(RestoreConfig(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)); "
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    peaks = []
    for seconds in (2, 10):
        video = make_video(tmp_path / f"{seconds}s" / "v.avi", size="320x240", rate=25, seconds=seconds, audio=False)
        out = subprocess.run([sys.executable, "-c", script, str(video), str(weights), str(tmp_path / f"out{seconds}")],
                             capture_output=True, text=True, check=True).stdout
        peaks.append(int(out.split()[-1]) / 1024)  # MB
        assert count_frames(tmp_path / f"out{seconds}" / "v.avi") == 25 * seconds
    print(f"peak RSS {peaks[0]:.0f} MB for 2 s, {peaks[1]:.0f} MB for 10 s")
    assert peaks[1] - peaks[0] < 20, peaks


def test_prefetched_keeps_order_raises_errors_and_closes_early():
    from vrestore.pipeline.media.video_io import prefetched

    assert list(prefetched(iter(range(50)))) == list(range(50))
    closed = []

    def source():
        try:
            yield from range(1000)
        finally:
            closed.append(True)
    it = prefetched(source())
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert closed == [True]

    def failing():
        yield 1
        raise OSError("pipe broke")
    with pytest.raises(OSError, match="pipe broke"):
        list(prefetched(failing()))
