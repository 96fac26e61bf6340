import io
import random
import subprocess

import numpy as np
import pytest
from PIL import Image

from vrestore.pipeline.media.frame_reader import ffmpeg_image_pipe_args
from vrestore.pipeline.media.image_stream import JpegSplitter, PngSplitter, make_splitter


def raw_pipe(video, image_format):
    args = ffmpeg_image_pipe_args(video, image_format=image_format)
    return subprocess.run(args, capture_output=True, check=True).stdout


@pytest.mark.parametrize("image_format", ["jpg", "png"])
def test_any_chunking_gives_the_same_whole_images(sample_tree, image_format):
    video = sample_tree / "Cat/v_Cat_g01_c01.avi"
    stream = raw_pipe(video, image_format)
    whole = make_splitter(image_format).feed(stream)
    rng = random.Random(0)
    splitter, pieces, i = make_splitter(image_format), [], 0
    while i < len(stream):
        n = rng.choice([1, 2, 3, 7, 100, 4096, 65536])
        pieces += splitter.feed(stream[i : i + n])
        i += n
    assert pieces == whole
    assert b"".join(whole) == stream  # nothing lost or duplicated between images
    assert splitter.leftover() == 0
    for img in whole[:: max(1, len(whole) // 5)]:
        assert Image.open(io.BytesIO(img)).size == (320, 240)


def test_jpeg_end_marker_bytes_inside_a_table_do_not_cut_the_image():
    # A quantisation table holding the bytes FF D9 next to each other: a naive search for
    # the end-of-image marker would cut the image there.
    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    qtable = [255, 217] + [1] * 62
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", qtables=[qtable, qtable])
    jpeg = buf.getvalue()
    assert b"\xff\xd9" in jpeg[:-2]
    images = JpegSplitter().feed(jpeg + jpeg)
    assert images == [jpeg, jpeg]


def test_truncated_stream_reports_leftover():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    png = buf.getvalue()
    s = PngSplitter()
    assert s.feed(png + png[:20]) == [png]
    assert s.leftover() == 20


def test_log_parsing_finds_rate_and_errors():
    from fractions import Fraction

    from vrestore.pipeline.media.frame_reader import parse_log

    log = (
        "[info]   Stream #0:0(und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), "
        "300x180 [SAR 1:1 DAR 5:3], 97 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)\n"
        "[mpeg4 @ 0x558e1bb25f40] [error] ac-tex damaged at 0 9\n"
        "[swscaler @ 0x557c] [warning] deprecated pixel format used\n"
    )
    problems, fps = parse_log(log)
    assert fps == Fraction(30000, 1001)
    assert problems == ["mpeg4: ac-tex damaged at 0 9"]
    assert parse_log("[info]   Stream #0:0: Video: cinepak, rgb24, 320x240, 1k tbr, 1k tbn\n")[1] == 1000
    assert parse_log("[error] Invalid data found when processing input\n") == (["Invalid data found when processing input"], None)


def test_image_size_reads_headers():
    from vrestore.pipeline.media.image_stream import image_size

    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        Image.new("RGB", (37, 21)).save(buf, fmt)
        assert image_size(buf.getvalue()) == (37, 21)
