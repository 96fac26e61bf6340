"""Decode a video with ffmpeg and get its frames back as encoded JPEG or PNG files.

ffmpeg both decodes and encodes the images, so no frame passes through numpy on the way into a
shard; Python only cuts the pipe's byte stream at image boundaries.
"""
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Tuple

import ffmpeg

from vrestore.pipeline.media.ffmpeg_cmd import EXACT_SCALE_FLAGS, arg_path, ffmpeg_command, log_problems
from vrestore.pipeline.media.image_stream import make_splitter
from vrestore.pipeline.media.probe import UnreadableVideo

READ_CHUNK = 1 << 20
# "Stream #0:0: Video: mpeg4 (...), yuv420p, 320x240 [SAR 1:1 DAR 4:3], 25 fps, 25 tbr, 25 tbn"
INPUT_VIDEO_LINE = re.compile(r"Stream #(?P<input>\d+):\d+.*?: Video: .*?(?:, (?P<fps>[\d.]+k?) fps)?, (?P<tbr>[\d.]+k?) tbr")


@dataclass
class EncodedFrames:
    images: list  # encoded image bytes in decode order, or what `sink` made of each
    problems: list  # what ffmpeg logged at error level or worse (empty when clean)
    returncode: int
    truncated_bytes: int  # an image cut off at the end of the pipe
    fps: Optional[Fraction]  # the input's frame rate as ffmpeg reported it (None: not found)


def resize_filter_args(size: Optional[Tuple[int, int]], short_side: Optional[int]):
    """scale-filter arguments; ffmpeg works out the aspect (-2: keep it, rounded to even,
    as 4:2:0 JPEG and most codecs need)."""
    if size:
        return {"w": size[0], "h": size[1]}
    if short_side:
        return {"w": f"if(lte(iw,ih),{short_side},-2)", "h": f"if(lte(iw,ih),-2,{short_side})"}
    return None


def resized_copy(src, dst, size=None, short_side=None) -> None:
    """A lossless copy of `src` scaled as ffmpeg_image_pipe_args scales frames (the same filter and
    flags), every frame kept: make-shards --preset real damages this copy, so the damage lands on
    frames of the size training sees, as `vrestore degrade` lands it on the size it restores."""
    stream = ffmpeg.input(arg_path(src), threads=1)["v:0"].filter("scale", flags=f"area+{EXACT_SCALE_FLAGS}",
                                                                  **resize_filter_args(size, short_side))
    args = ffmpeg_command(stream.output(arg_path(dst), format="avi", vcodec="ffv1", pix_fmt="bgr0", vsync="passthrough"), "-y")
    r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True)
    if r.returncode:
        raise UnreadableVideo(f"ffmpeg could not resize {src}: {r.stderr.decode(errors='replace').strip().splitlines()[-1:]}")


def _image_output(path, target, image_format, quality, frame_stride, size, short_side):
    """One input's video as images written to `target` (a file, or "pipe:")."""
    stream = ffmpeg.input(arg_path(path), threads=1)["v:0"]
    if frame_stride > 1:
        stream = stream.filter("framestep", step=frame_stride)
    # always a scale filter: it also converts to the image's pixel format, exactly (ffmpeg_cmd)
    resize = resize_filter_args(size, short_side)
    stream = stream.filter("scale", flags=f"area+{EXACT_SCALE_FLAGS}" if resize else EXACT_SCALE_FLAGS, **(resize or {}))
    if image_format == "jpg":
        # yuvj420p: full-range YUV is what the JPEG standard (and every decoder) expects.
        codec = {"vcodec": "mjpeg", "pix_fmt": "yuvj420p", "q:v": quality}
    else:
        codec = {"vcodec": "png", "pix_fmt": "rgb24"}
    # One decode/encode thread per process: parallelism comes from running several videos.
    # passthrough: one image per decoded frame, never a duplicate to fill a timestamp gap.
    return stream.output(target, format="image2pipe", threads=1, vsync="passthrough", **codec)


def ffmpeg_image_pipe_args(path, image_format="jpg", quality=2, frame_stride=1, size=None, short_side=None) -> list:
    """The ffmpeg command line that writes every `frame_stride`-th frame as an image to stdout."""
    out = _image_output(path, "pipe:", image_format, quality, frame_stride, size, short_side)
    # level+info tags each log line with its level, so errors can be told from the stream
    # description that saves a separate ffprobe run (a process start costs ~150 ms).
    return ffmpeg_command(out, "-nostats", loglevel="level+info")


def parse_log(log: str, input_index: int = 0):
    """(problems, fps of input `input_index`) from a level-tagged ffmpeg log."""
    m = next((m for m in INPUT_VIDEO_LINE.finditer(log) if int(m["input"]) == input_index), None)
    return log_problems(log, level_tagged=True), rate_from_text(m["fps"] or m["tbr"]) if m else None


def rate_from_text(text: str) -> Optional[Fraction]:
    """ffmpeg prints rates rounded ("29.97", "1k"); NTSC rates are N*1000/1001 exactly."""
    value = float(text[:-1]) * 1000 if text.endswith("k") else float(text)
    if value <= 0:
        return None
    ntsc = round(value * 1.001)
    if abs(value - ntsc / 1.001) < 0.006 and abs(value - round(value)) > 0.006:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(value).limit_denominator(100)


def read_encoded_frames(path, image_format="jpg", quality=2, frame_stride=1, size=None, short_side=None, sink=None) -> EncodedFrames:
    """Every `frame_stride`-th frame of `path` as an encoded image. `sink(image_bytes)`, when
    given, takes each image as it comes and returns what the list holds instead (make-shards
    parks them on disk: dataset/spool.py), so memory need not grow with the video."""
    args = ffmpeg_image_pipe_args(path, image_format, quality, frame_stride, size, short_side)
    splitter = make_splitter(image_format)
    images = []
    # The log goes to a file, not a pipe: a corrupt video can print more than a pipe buffer
    # holds, and an undrained pipe would deadlock ffmpeg.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        try:
            while chunk := proc.stdout.read1(READ_CHUNK):
                images.extend(map(sink, splitter.feed(chunk)) if sink else splitter.feed(chunk))
        finally:
            proc.stdout.close()
            returncode = proc.wait()
        log.seek(0)
        problems, fps = parse_log(log.read().decode(errors="replace"))
    return EncodedFrames(images, problems, returncode, splitter.leftover(), fps)


def read_encoded_frames_together(paths, image_format="jpg", quality=2, frame_stride=1, size=None, short_side=None,
                                 sinks=None) -> Optional[list]:
    """`read_encoded_frames` for several videos in ONE ffmpeg process (an input and an output
    file each), or None when ffmpeg complained about any of them: the caller then reads each
    alone, so a problem is told apart per video. Debian's ffmpeg loads 215 shared libraries, and
    its start (about 150 ms here) cost a 25-frame clip more than its frames (bench/make_shards.py)."""
    splitters = [make_splitter(image_format) for _ in paths]
    with tempfile.TemporaryDirectory(prefix="vrestore-decode-") as tmp, tempfile.TemporaryFile() as log:
        targets = [os.path.join(tmp, f"{i}.images") for i in range(len(paths))]
        outs = [_image_output(p, t, image_format, quality, frame_stride, size, short_side) for p, t in zip(paths, targets)]
        args = ffmpeg_command(ffmpeg.merge_outputs(*outs), "-nostats", loglevel="level+info")
        returncode = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log).returncode
        log.seek(0)
        text = log.read().decode(errors="replace")
        problems = log_problems(text, level_tagged=True)
        if returncode or problems:
            return None
        results = []
        for i, (target, splitter) in enumerate(zip(targets, splitters)):
            images = []
            sink = sinks[i] if sinks else None
            with open(target, "rb") as f:
                while chunk := f.read(READ_CHUNK):
                    images.extend(map(sink, splitter.feed(chunk)) if sink else splitter.feed(chunk))
            results.append(EncodedFrames(images, [], 0, splitter.leftover(), parse_log(text, i)[1]))
        return results


def ffmpeg_version(ffmpeg_bin: str = "ffmpeg") -> str:
    out = subprocess.run([ffmpeg_bin, "-version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0] if out else "unknown"


def require_ffmpeg() -> None:
    """Fail early with a clear message rather than on the first video."""
    missing = [b for b in ("ffmpeg", "ffprobe") if shutil.which(b) is None]
    if missing:
        raise FileNotFoundError(
            f"{' and '.join(missing)} not found on PATH; install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg)"
        )
