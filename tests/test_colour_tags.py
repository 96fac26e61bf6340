"""Outputs keep their source's colours: a YUV output is converted with the source's matrix and
range and tagged with them (and with its primaries and transfer), so a player shows what the
source showed; an untagged source stays untagged and is written as the reader took it."""
import subprocess

import numpy as np
import pytest

from vrestore.pipeline.media.probe import ColorTags, probe_video
from vrestore.pipeline.media.video_io import VideoWriter, read_frames

W, H = 64, 48
# saturated colours: where BT.601 and BT.709 differ most (a wrong matrix moves them 5-20 levels)
COLOURS = [(230, 30, 30), (30, 230, 30), (30, 30, 230), (200, 200, 40)]
HD = ColorTags("bt709", "tv", "bt709", "bt709")


def frames(n=3):
    img = np.zeros((H, W, 3), np.uint8)
    for i, c in enumerate(COLOURS):
        img[:, i * 16:(i + 1) * 16] = c
    return np.stack([img] * n)


def tagged_source(path, tags: ColorTags):
    """An H.264 4:2:0 clip coded with `tags`' matrix and range and tagged so, as a camera writes it."""
    scale = f"scale=out_color_matrix=bt709:out_range={tags.range}" if tags.matrix else "null"
    meta = ["-colorspace", tags.matrix, "-color_range", tags.range, "-color_primaries", tags.primaries, "-color_trc", tags.transfer] \
        if tags.matrix else []
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", "25", "-i", "-",
                    "-vf", scale, "-c:v", "libx264", "-crf", "0", "-pix_fmt", "yuv420p", *meta, str(path)],
                   input=frames(8).tobytes(), check=True)
    return path


@pytest.mark.parametrize("tags", [HD, ColorTags("bt709", "pc", "bt709", "bt709"), ColorTags("bt2020nc", "tv", "bt2020", "smpte2084"),
                                  ColorTags()], ids=["bt709", "bt709-full", "bt2020", "untagged"])
def test_h264_output_is_converted_with_the_sources_matrix_and_tagged(tmp_path, tags):
    with VideoWriter(tmp_path / "out.mp4", W, H, 25, "h264", color=tags) as out:
        out.write(frames())
    assert probe_video(tmp_path / "out.mp4").color == tags
    back = np.concatenate(list(read_frames(tmp_path / "out.mp4")))  # ffmpeg decodes by the file's tags
    # 4:4:4 at crf 0: only 8-bit YUV rounding each way (within 2 levels); a matrix the tags do
    # not name moves these colours by 5 or more
    assert np.abs(back.astype(int) - frames().astype(int)).max() <= 2


def test_lossless_rgb_and_mjpeg_outputs_keep_the_pixels(tmp_path):
    for codec in ("ffv1", "png", "mjpeg"):
        with VideoWriter(tmp_path / f"{codec}.avi", W, H, 25, codec, color=HD) as out:
            out.write(frames())
        back = np.concatenate(list(read_frames(tmp_path / f"{codec}.avi")))
        tolerance = 0 if codec != "mjpeg" else 4  # JPEG at quality 2: a few levels at the colour edges' blocks
        assert np.abs(back[:, 4:-4, 4:12].astype(int) - frames()[:, 4:-4, 4:12].astype(int)).max() <= tolerance, codec


def test_restore_and_degrade_keep_a_bt709_sources_colours(tmp_path, weights):
    from vrestore.pipeline.degrade.degrade_videos import DegradeConfig, degrade_videos
    from vrestore.pipeline.inference.restore import RestoreConfig, restore_videos

    src = tmp_path / "in"
    src.mkdir()
    tagged_source(src / "hd.mp4", HD)
    assert probe_video(src / "hd.mp4").color == HD
    degrade_videos(DegradeConfig(src, tmp_path / "degraded", codec="h264", progress=False))
    restore_videos(RestoreConfig(src, weights, tmp_path / "restored", codec="h264", side_by_side=True, progress=False))
    written = [p for p in (tmp_path / "degraded").rglob("*.mp4")] + [p for p in (tmp_path / "restored").rglob("*.mp4")]
    assert len(written) == 3, written  # degraded, restored, and the side-by-side comparison
    for path in written:
        assert probe_video(path).color == HD, path
