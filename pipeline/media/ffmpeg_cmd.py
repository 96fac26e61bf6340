"""ffmpeg as a subprocess: the argument list in (never a shell string), and one line of its log
out; plus the one rule for a decode that ffmpeg complained about."""
import os
import re
from typing import Optional

from vrestore.pipeline.host.limits import thread_share

# "[mpeg4 @ 0x55d0] [error] ac-tex damaged at 0 9": a context, a level tag (with -loglevel
# level+...), the message; the first two are optional.
LOG_LINE = re.compile(r"^(?:\[(?P<ctx>\w+) @ 0x[0-9a-f]+\] )?(?:\[(?P<level>\w+)\] )?(?P<msg>.*)$")
PROBLEM_LEVELS = ("error", "fatal", "panic")
# swscale flags for every YUV -> RGB conversion we ask of ffmpeg. Its default fast path turns the
# sample videos' yuv420p into RGB about 1.2 levels darker than an exact conversion (measured:
# -1.0/-1.5/-1.1 per channel on an XviD clip); a frame decoded twice that way (read, damaged,
# encoded, read again: make-shards --preset real) comes out darker than its clean twin, and a
# model trained on such pairs learns to brighten everything it restores. accurate_rnd alone
# does not fix it; with full_chroma_int the conversion is exact to within rounding.
EXACT_SCALE_FLAGS = "accurate_rnd+full_chroma_int"


_placeholders = {}  # token -> a path ffmpeg-python cannot hold (see arg_path)


def arg_path(path) -> str:
    """A file name as ffmpeg and ffprobe must get it: absolute, so a name like `-y.mp4` is never
    read as an option; and, when it is not valid UTF-8 (bytes a file system allows, kept by
    Python as surrogates), a placeholder, since ffmpeg-python hashes its graph as UTF-8:
    ffmpeg_command swaps the name back, and subprocess passes its original bytes."""
    name = os.path.abspath(os.fspath(path))
    try:
        name.encode()
        return name
    except UnicodeEncodeError:
        token = f"/vrestore-path-{len(_placeholders)}-{os.getpid()}"
        _placeholders[token] = name
        return token


def ffmpeg_command(output_stream, *global_opts: str, loglevel: str = "error", ffmpeg_bin: str = "ffmpeg") -> list:
    # ffmpeg-python appends global args after the output file, where ffmpeg ignores
    # per-file options as "trailing"; put them right after the binary instead.
    args = [_placeholders.get(a, a) for a in output_stream.compile(cmd=ffmpeg_bin)]
    n = thread_share()
    if n is None:  # ffmpeg's own choice: a thread per CPU of this process's affinity
        return [args[0], "-nostdin", "-hide_banner", "-loglevel", loglevel, *global_opts, *args[1:]]
    # a worker's share (a Ray actor): filter threads are global; -threads before the output file
    # bounds its encoder (an explicit per-stream threads=1, as the frame reader sets, still wins)
    return [args[0], "-nostdin", "-hide_banner", "-loglevel", loglevel, "-filter_threads", str(n), *global_opts, *args[1:-1],
            "-threads", str(n), args[-1]]


def clean_log_line(line: str) -> str:
    """"[mpeg4 @ 0x55d0] [error] ac-tex damaged at 0 9" -> "mpeg4: ac-tex damaged at 0 9"."""
    m = LOG_LINE.match(line.strip())
    return f"{m['ctx']}: {m['msg'].strip()}" if m["ctx"] else m["msg"].strip()


def log_problems(log: str, level_tagged: bool) -> list:
    """The log's lines worth reporting, cleaned: with level tags, those at error level or worse;
    without (-loglevel error), every real line."""
    lines = [ln for ln in log.splitlines() if ln.strip() and not ln.strip().startswith("Last message repeated")]
    if level_tagged:
        lines = [ln for ln in lines if (LOG_LINE.match(ln.strip())["level"] or "") in PROBLEM_LEVELS]
    return [clean_log_line(ln) for ln in lines]


def decode_problem(problems: list, returncode: int, truncated: bool = False) -> str:
    """What to say of a decode: '' when clean, else its last complaint (or the exit code, or a
    cut-off last frame)."""
    if problems:
        return problems[-1]
    if returncode:
        return f"exit code {returncode}"
    return "stream ended mid-frame" if truncated else ""


def partial_decode(problem: str, decoded: int, keep_partial: bool) -> Optional[str]:
    """The one rule for a decode ffmpeg complained about, used by every command: a video that
    gave no frames fails (returns the reason); one that gave some keeps them, when the caller
    keeps partial videos, and its complaint becomes a warning (returns None). '' problem: clean."""
    if not problem:
        return None if decoded else "no frames decoded"
    if not decoded or not keep_partial:
        return problem
    return None
