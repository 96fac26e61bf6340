"""Raw RGB frames in and out of ffmpeg through pipes: memory stays flat however long a video is."""
import queue
import subprocess
import threading
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from vrestore.pipeline.atomic import publish, temp_path_for
from vrestore.pipeline.media.ffmpeg_cmd import EXACT_SCALE_FLAGS, arg_path, decode_problem, ffmpeg_command, log_problems, partial_decode
from vrestore.pipeline.media.probe import ColorTags, UnreadableVideo, VideoInfo, probe_video

@dataclass(frozen=True)
class Codec:
    container: str
    vcodec: str
    pix_fmt: str  # for RGB frames; gray frames (masks) are written as "gray"
    options: tuple = ()  # extra ffmpeg output options as (name, value) pairs


# ffv1 and png are lossless; each codec needs its own pixel format to stay so for RGB.
CODECS = {
    "ffv1": Codec("avi", "ffv1", "bgr0"),
    "png": Codec("avi", "png", "rgb24"),
    "mjpeg": Codec("avi", "mjpeg", "yuvj444p", (("q:v", 2),)),
    "h264": Codec("mp4", "libx264", "yuv444p", (("crf", 0),)),
}


# Audio codecs each container holds as they are; anything else is re-encoded to the fallback
# (Opus or Vorbis into .avi would make ffmpeg fail). A lossy encoder's first samples (its delay:
# AAC's priming, MP3's 1105 samples) are trimmed on playback by what an MP4 or Matroska file
# records (an edit list, a codec delay); AVI cannot record it, so a copy from such a file plays
# about 25 ms late. Into .avi a compressed track is copied only from another .avi; from anything
# else it is decoded to PCM, which starts where the video does.
AUDIO_COPYABLE = {
    "avi": {"mp3", "mp2", "ac3", "pcm_s16le", "pcm_u8"},
    "mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus"},
}
AUDIO_FALLBACK = {"avi": "pcm_s16le", "mp4": "aac"}


def audio_plan(container: str, audio_codec, source_container: str = "") -> tuple:
    """(ffmpeg audio codec, what to tell the user or None) for copying a source's audio;
    `source_container` is ffprobe's format name of the file it comes from."""
    if audio_codec is None:
        return "copy", None
    fallback = AUDIO_FALLBACK[container]
    if audio_codec not in AUDIO_COPYABLE[container]:
        return fallback, f"audio re-encoded from {audio_codec} to {fallback} (not copied into .{container})"
    if container == "avi" and not audio_codec.startswith("pcm_") and "avi" not in source_container.split(","):
        return fallback, f"audio decoded from {audio_codec} to {fallback} (.avi cannot hold its start trim; a copy would play late)"
    return "copy", None


# ffprobe's name of a YUV matrix -> the scale filter's (out_color_matrix); a matrix it cannot
# convert to is written as BT.601 and left untagged, which is how the reader took it too.
SCALE_MATRIX = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470", "fcc": "fcc", "smpte240m": "smpte240m",
                "bt2020nc": "bt2020", "bt2020c": "bt2020"}


def color_plan(pix_fmt: str, color: ColorTags) -> tuple:
    """(scale filter options, output options) that write RGB frames in the source's colours:
    a YUV output converted with the source's matrix and range and tagged so, every output tagged
    with its primaries and transfer (the reader decoded with the source's tags, so the round trip
    is exact up to rounding). MJPEG's yuvj formats are BT.601 full range by definition (JFIF)."""
    scale, opts = [], {}
    if color.primaries:
        opts["color_primaries"] = color.primaries
    if color.transfer:
        opts["color_trc"] = color.transfer
    if pix_fmt.startswith("yuv") and not pix_fmt.startswith("yuvj"):
        if color.matrix in SCALE_MATRIX:
            scale.append(f"out_color_matrix={SCALE_MATRIX[color.matrix]}")
            opts["colorspace"] = color.matrix
        if color.range in ("tv", "pc"):
            scale.append(f"out_range={color.range}")
            opts["color_range"] = color.range
    return scale, opts


def not_carried(info: VideoInfo) -> list:
    """What an output made from `info`'s video leaves out, one line each (said per video)."""
    notes = []
    if info.subtitles:
        notes.append(f"{info.subtitles} subtitle stream{'s' * (info.subtitles > 1)} not carried into the output")
    if info.bit_depth > 8:
        notes.append(f"{info.bit_depth}-bit source written as 8-bit (frames are processed as 8-bit RGB)")
    if info.alpha:
        notes.append("transparency (alpha) not carried: frames are processed as opaque RGB")
    if info.video_streams > 1:
        extra = info.video_streams - 1
        notes.append(f"{extra} more video stream{'s' * (extra > 1)} not carried (only the first is restored)")
    if info.interlaced:
        notes.append("interlaced source processed as stored (fields woven into frames, not deinterlaced)")
    return notes


class VideoReadError(Exception):
    pass


class VideoWriteError(RuntimeError):
    """ffmpeg could not write an output video (its own complaint in the message): that video
    fails, the others go on."""


# What one video of a folder may fail of, alone (restore, degrade; they add running out of
# memory): its file unreadable or damaged, a write that failed, a full disk, an output that
# appeared meanwhile. Any other error is a bug of ours: it stops the run with its traceback
# rather than reading as one failed video.
VIDEO_FAILURES = (UnreadableVideo, VideoReadError, VideoWriteError, OSError)


BATCH_BYTES = 256 * 2**20  # read_frames hands out batches of at most this many bytes (one frame at least)


def read_frames(path, batch: int = 16, info: VideoInfo = None, vf: str = None, warnings: list = None):
    """Yield (n, H, W, 3) uint8 arrays of consecutive frames, upright (ffmpeg applies a rotation
    tag). Never drops a frame silently: if ffmpeg complains, VideoReadError is raised, except
    that with a `warnings` list, a video that gave frames keeps them and the complaint is
    appended there (ffmpeg_cmd.partial_decode, the rule make-shards uses too). `vf`: a filter
    chain that keeps the size."""
    info = info or probe_video(path)
    frame_bytes = info.width * info.height * 3
    to_rgb = f"scale=flags={EXACT_SCALE_FLAGS}"  # the conversion to rgb24, exact (see ffmpeg_cmd)
    args = ffmpeg_command(
        ffmpeg.input(arg_path(path))["v:0"].output("pipe:", format="rawvideo", pix_fmt="rgb24", vsync="passthrough", vf=f"{vf},{to_rgb}" if vf else to_rgb)
    )
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        decoded = 0
        try:
            while True:
                # A batch's buffer is made only once its first bytes arrived (a header may declare
                # 16000x16000 frames that never come), and holds at most BATCH_BYTES of frames.
                # A fresh buffer per batch: the arrays handed out are writable and never reused.
                first = proc.stdout.read(min(frame_bytes, 1 << 20))
                if not first:
                    break
                data = bytearray(frame_bytes * max(1, min(batch, BATCH_BYTES // frame_bytes)))
                data[: len(first)] = first
                n = len(first) + proc.stdout.readinto(memoryview(data)[len(first) :])
                if n % frame_bytes:
                    raise VideoReadError(f"{path}: stream ended mid-frame")
                if not n:
                    break
                decoded += n // frame_bytes
                yield np.frombuffer(data, np.uint8, count=n).reshape(-1, info.height, info.width, 3)
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            code = proc.wait()
            log.seek(0)
            errors = log.read().decode(errors="replace").strip()
        problem = decode_problem(log_problems(errors, level_tagged=False), code)
        if problem:
            if partial_decode(problem, decoded, keep_partial=warnings is not None):
                raise VideoReadError(f"{path}: ffmpeg: {problem}")
            warnings.append(f"ffmpeg: {problem}")


def prefetched(batches, depth: int = 2):
    """Iterate `batches` (e.g. `read_frames`) from a thread, up to `depth` items ahead: pipe reads
    release the GIL, so ffmpeg's decoding overlaps the consumer's work. Stopping early closes
    the source in its own thread (which stops its ffmpeg)."""
    q, stop = queue.Queue(depth), threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce():
        try:
            for item in batches:
                if not put(("item", item)):
                    break
            put(("done", None))
        except BaseException as e:  # handed to the consumer, raised there
            put(("error", e))
        finally:
            if hasattr(batches, "close"):
                batches.close()

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


class VideoWriter:
    """Encode raw frames fed to `write`; the file appears under its name only when complete."""

    def __init__(self, path, width: int, height: int, fps, codec: str = "ffv1", gray: bool = False, audio_from=None, audio_codec=None,
                 start_time: float = 0.0, sample_aspect: str = None, audio_container: str = "", replace: bool = True,
                 color: ColorTags = ColorTags()):
        """audio_from: copy that file's audio streams, if it has any; `audio_codec` and
        `audio_container` (the source's, from probe_video) decide whether the output container
        can take it as it is.
        `start_time`: the source video's first timestamp; its audio is shifted by as much, so the
        frames written (which start at 0, evenly spaced) stay in step with it. `sample_aspect`
        ("W:H", from probe_video): non-square pixels, kept so players show the source's shape.
        `replace`: False never replaces a file that took `path` while this one was written
        (atomic.publish): restore and degrade without --overwrite. `color` (probe_video's): the
        source's matrix, range, primaries and transfer, which the output keeps (color_plan)."""
        if not isinstance(codec, Codec) and codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
        self.path, self.channels = Path(path), 1 if gray else 3
        self.shape = (height, width, self.channels)
        c = codec if isinstance(codec, Codec) else CODECS[codec]  # a Codec: a lossy one of the real preset
        self._tmp, self.replace = temp_path_for(self.path), replace
        stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="gray" if gray else "rgb24", s=f"{width}x{height}", framerate=str(fps))
        acodec, self.audio_note = audio_plan(c.container, audio_codec, audio_container) if audio_from else (None, None)
        offset = {"itsoffset": f"{-start_time:.6f}"} if audio_from and start_time else {}
        streams = [stream] + ([ffmpeg.input(arg_path(audio_from), **offset)["a?"]] if audio_from else [])
        # avoid_negative_ts disabled: the video's timestamps stay 0, 1/fps, 2/fps ... whatever the
        # audio's first timestamp (the muxer would otherwise shift every stream to make it 0)
        scale, tags = color_plan(c.pix_fmt, color) if not gray else ([], {})
        vf = ([f"scale={':'.join(scale)}"] if scale else []) + ([f"setsar={sample_aspect.replace(':', '/')}"] if sample_aspect else [])
        out = ffmpeg.output(*streams, arg_path(self._tmp), format=c.container, vcodec=c.vcodec, pix_fmt="gray" if gray else c.pix_fmt,
                            avoid_negative_ts="disabled", **dict(c.options), **tags, **({"acodec": acodec} if audio_from else {}),
                            **({"vf": ",".join(vf)} if vf else {}))
        args = ffmpeg_command(out, "-y")
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        self.frames = 0

    def write(self, frames: np.ndarray):
        frames = np.ascontiguousarray(frames, dtype=np.uint8).reshape(-1, *self.shape)
        try:
            self._proc.stdin.write(frames.tobytes())
        except BrokenPipeError:  # ffmpeg gave up: its own log says why, "Broken pipe" would not
            self._fail(self._finish())
        self.frames += len(frames)

    def _finish(self) -> str:
        """Close ffmpeg's input, wait for it; its complaint, or '' if it succeeded."""
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        code = self._proc.wait()
        self._log.seek(0)
        errors = self._log.read().decode(errors="replace").strip()
        self._log.close()
        return "" if code == 0 else decode_problem(log_problems(errors, level_tagged=False), code)

    def _short_of_frames(self) -> str:
        """'' when the finished file holds every frame written, else what is missing: an encoder
        can exit 0 after a write failed (a full disk), and a short file must not take the name."""
        args = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets",
                "-of", "csv=p=0", f"file:{self._tmp.absolute()}"]  # file: so no name is read as an option
        r = subprocess.run(args, capture_output=True, text=True)
        held = r.stdout.strip().split(",")[0]
        if r.returncode or not held.isdigit():
            return f"the finished file cannot be read back ({r.stderr.strip() or 'no video stream'})"
        return "" if int(held) == self.frames else f"the finished file holds {held} of the {self.frames} frames written (a full disk?)"

    def _fail(self, problem: str):
        self._tmp.unlink(missing_ok=True)
        raise VideoWriteError(f"ffmpeg could not write {self.path}: {problem or 'it stopped reading frames'}")

    def close(self, ok: bool = True):
        if self._log.closed:  # already finished (or failed)
            return
        problem = self._finish()
        if ok and not problem:
            problem = self._short_of_frames()
        if ok and not problem:
            publish(self._tmp, self.path, self.replace)
        elif ok:
            self._fail(problem)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(ok=exc_type is None)
