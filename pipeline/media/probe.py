"""Video metadata from ffprobe's JSON (never by parsing text or eval'ing a frame rate)."""
import functools
import json
import os
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional

import ffmpeg


class UnreadableVideo(Exception):
    """The file cannot be opened as a video; the message is the reason to report."""


@dataclass(frozen=True)
class ColorTags:
    """How a video's pixels are to be read, as ffprobe names it; None where the file does not
    say (players then guess, and our reader's conversion to RGB takes BT.601, limited range)."""
    matrix: Optional[str] = None  # YUV <-> RGB matrix ("bt709", "smpte170m", "bt470bg", "bt2020nc" ...)
    range: Optional[str] = None  # "tv" (limited, 16-235) or "pc" (full)
    primaries: Optional[str] = None
    transfer: Optional[str] = None


def color_tags(stream: dict) -> ColorTags:
    def known(key):
        value = stream.get(key)
        return value if value and value not in ("unknown", "reserved", "unspecified") else None

    return ColorTags(known("color_space"), known("color_range"), known("color_primaries"), known("color_transfer"))


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as shown: ffmpeg applies a rotation tag when decoding, so 90/270 swap the sides
    height: int
    fps: Fraction
    nb_frames: Optional[int]  # from the container header; absent for some formats (mkv, webm)
    duration: Optional[float]
    codec: str
    rotation: int = 0  # degrees the player turns the stored picture (phone videos); decoders apply it
    audio_codec: Optional[str] = None  # the first audio stream's codec, if any
    start_time: float = 0.0  # the video stream's first timestamp, seconds (MPEG-TS and edited files start later)
    sample_aspect: Optional[str] = None  # "W:H" of a pixel when not square (anamorphic video), else None
    container: str = ""  # ffprobe's format name ("avi", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm" ...)
    bit_depth: int = 8  # bits per colour component of the stored frames (10 for yuv420p10le)
    subtitles: int = 0  # subtitle streams in the file (not carried into outputs)
    color: ColorTags = ColorTags()  # its matrix, range, primaries and transfer, kept in outputs
    video_streams: int = 1  # video streams in the file (the first is read; others are not carried)
    alpha: bool = False  # the frames carry transparency (an alpha pixel format, or VP9/WebM's alpha_mode)
    interlaced: bool = False  # stored as fields (field_order tt/bb/tb/bt): frames are read as stored, not deinterlaced

    @property
    def frame_count(self) -> Optional[int]:
        """The header's frame count, or duration x rate where the container keeps none (mkv,
        webm): what picks NIQE's frames and the middle frame, the same for a clip in any container."""
        if self.nb_frames:
            return self.nb_frames
        if self.duration and self.fps:
            return max(1, round(self.duration * float(self.fps)))
        return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


def probe_video(path) -> VideoInfo:
    path = Path(path)
    if path.stat().st_size == 0:
        raise UnreadableVideo("empty file (0 bytes)")
    try:
        meta = ffmpeg.probe(os.path.abspath(path), v="error")  # absolute: `-y.mp4` is no option; raw bytes kept
    except ffmpeg.Error as e:
        raise UnreadableVideo(f"ffprobe: {_last_line(e.stderr.decode(errors='replace'))}") from None
    video = [s for s in meta.get("streams", []) if s.get("codec_type") == "video"]
    if not video:
        raise UnreadableVideo("no video stream")
    s = video[0]
    width, height = int(s.get("width") or 0), int(s.get("height") or 0)
    if width <= 0 or height <= 0:
        raise UnreadableVideo("video stream has no frame size")
    rotation = stream_rotation(s)
    if rotation in (90, 270):
        width, height = height, width
    fps = Fraction(0)
    for key in ("avg_frame_rate", "r_frame_rate"):
        rate = s.get(key, "0/0")
        num, _, den = rate.partition("/")
        if den and int(den) != 0 and int(num) != 0:
            fps = Fraction(int(num), int(den))
            break
    nb = s.get("nb_frames")
    duration = s.get("duration") or meta.get("format", {}).get("duration")
    return VideoInfo(
        width=width,
        height=height,
        fps=fps,
        nb_frames=int(nb) if nb and str(nb).isdigit() else None,
        duration=float(duration) if duration else None,
        codec=s.get("codec_name", "?"),
        rotation=rotation,
        audio_codec=next((a.get("codec_name") for a in meta.get("streams", []) if a.get("codec_type") == "audio"), None),
        start_time=float(s.get("start_time") or 0.0),
        sample_aspect=sample_aspect(s, rotation),
        container=meta.get("format", {}).get("format_name", ""),
        bit_depth=pixel_bit_depth(s.get("pix_fmt")),
        subtitles=sum(1 for t in meta.get("streams", []) if t.get("codec_type") == "subtitle"),
        color=color_tags(s),
        video_streams=len(video),
        alpha=pixel_has_alpha(s.get("pix_fmt")) or str(s.get("tags", {}).get("alpha_mode", s.get("tags", {}).get("ALPHA_MODE", "0"))) == "1",
        interlaced=s.get("field_order") in ("tt", "bb", "tb", "bt"),
    )


@functools.lru_cache(maxsize=1)
def _pixel_formats() -> dict:
    """{pixel format: ffprobe's entry (components with their bits, flags)}, from ffprobe's own
    table (no name parsing)."""
    try:
        table = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_pixel_formats", "-of", "json"],
                                          capture_output=True, text=True, check=True).stdout)["pixel_formats"]
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        return {}
    return {f["name"]: f for f in table}


def pixel_bit_depth(pix_fmt: Optional[str]) -> int:
    entry = _pixel_formats().get(pix_fmt) if pix_fmt else None
    return max((c.get("bit_depth", 8) for c in entry.get("components", [])), default=8) if entry else 8


def pixel_has_alpha(pix_fmt: Optional[str]) -> bool:
    entry = _pixel_formats().get(pix_fmt) if pix_fmt else None
    return bool(entry and entry.get("flags", {}).get("alpha"))


def sample_aspect(stream: dict, rotation: int) -> Optional[str]:
    """The pixel's shape as "W:H" when it is not square (the display aspect differs from the
    stored size's); turned with the picture for 90/270-degree rotations."""
    sar = stream.get("sample_aspect_ratio") or "1:1"
    num, _, den = sar.partition(":")
    if not (num.isdigit() and den.isdigit()) or int(num) == 0 or int(den) == 0 or num == den:
        return None
    return f"{den}:{num}" if rotation in (90, 270) else f"{num}:{den}"


def stream_rotation(stream: dict) -> int:
    """Rotation in [0, 360) from the display matrix (ffmpeg >= 5) or the older `rotate` tag."""
    angle = next((sd["rotation"] for sd in stream.get("side_data_list", []) if "rotation" in sd), None)
    if angle is None:
        angle = stream.get("tags", {}).get("rotate", 0)
    try:
        return int(round(float(angle))) % 360
    except (TypeError, ValueError):
        return 0
