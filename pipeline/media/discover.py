"""Find the videos to work on: a UCF-101 tree or any folder, optionally through a split file.

One input policy for every command: any file name the file system allows is accepted; the
shard key (`video_id`) and output names derived from it are unique per input path; an output
folder inside the input folder is never searched.
"""
import hashlib
import os
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from vrestore.pipeline.atomic import fit_name, marker_path, write_json_atomic

# what a folder's videos may be named (any case): the containers players open, animated GIFs too
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".m2ts", ".wmv", ".flv", ".3gp",
                    ".ogv", ".gif")
UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$")
# What a shard key may hold: DALI's index file is space-separated and GNU tar (which writes
# it) escapes non-ASCII bytes, so anything else would give a key that no longer matches.
UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_/-]")


@dataclass(frozen=True)
class VideoEntry:
    path: Path  # absolute
    rel: str  # relative to the source root, with '/' separators; how manifests name it
    video_id: str  # the shard key's folder: ASCII letters, digits, '_', '-', '/' only (no dots:
    # WebDataset and DALI split keys at the first dot); unique among the videos listed together
    cls: str
    group: Optional[int]
    clip: Optional[int]


class SourceError(Exception):
    """The source as a whole cannot be used (missing, empty, bad split file)."""


def make_entry(root: Path, path: Path) -> VideoEntry:
    rel = path.relative_to(root).as_posix()
    stem = rel.rsplit(".", 1)[0]
    m = UCF_NAME.match(path.stem)
    cls = m["cls"] if m else (path.parent.name if path.parent != root else "")
    return VideoEntry(
        path=path,
        rel=rel,
        video_id=UNSAFE_KEY_CHARS.sub("_", stem),
        cls=cls,
        group=int(m["group"]) if m else None,
        clip=int(m["clip"]) if m else None,
    )


def path_tag(rel: str) -> str:
    return hashlib.sha1(os.fsencode(rel)).hexdigest()[:8]


def with_unique_ids(entries: list) -> list:
    """Videos whose keys clash (`a.avi` and `a.mp4`; `a.b.avi` and `a_b.avi`; `my clip` and
    `my_clip`) each get a tag of their own path appended, so the result depends only on the
    paths listed, not on their order."""
    groups = defaultdict(list)
    for e in entries:
        groups[e.video_id].append(e)
    return [replace(e, video_id=f"{e.video_id}-{path_tag(e.rel)}") if len(groups[e.video_id]) > 1 else e for e in entries]


def output_names(rels: list, suffix: str) -> dict:
    """Output file name (relative) per input: the input's with `suffix`; inputs that would share
    one (`a.avi` and `a.mp4`) keep their own extension in the name: `a_avi.avi`, `a_mp4.avi`."""
    plain = defaultdict(list)
    for rel in rels:
        plain[Path(rel).with_suffix(suffix)].append(rel)
    names = {}
    for out, group in plain.items():
        for rel in group:
            p = Path(rel)
            name = out.name if len(group) == 1 else f"{p.stem}_{p.suffix[1:]}{suffix}"
            names[rel] = p.with_name(fit_name(name))  # a 255-byte input name must still give an output name
    clashes = defaultdict(list)
    for rel, out in names.items():
        clashes[out].append(rel)
    for out, group in clashes.items():
        if len(group) > 1:
            raise SourceError(f"{' and '.join(group)} would both be written as {out}; rename one of them")
    return names


def find_videos(root: Path, exclude: tuple = ()) -> list:
    """Videos below `root`, skipping the folders in `exclude` (an output folder inside the input).
    Symlinked folders are followed (a collection assembled from links is common), each real
    folder once, so a link loop ends instead of recursing."""
    skip = [Path(x).resolve() for x in exclude]
    paths, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen or any(Path(real).is_relative_to(s) for s in skip):
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in files:
            p = Path(folder) / name
            if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file() and not any(p.resolve().is_relative_to(s) for s in skip):
                paths.append(p)
    return [make_entry(root, p) for p in sorted(paths)]


def read_split_file(split_file: Path) -> list:
    """Paths of a UCF-101 trainlist/testlist: `Class/v_Class_g08_c01.avi [label]` per line."""
    if not split_file.is_file():
        raise SourceError(f"split file not found: {split_file}")
    rels = []
    # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first path;
    # splitlines takes CRLF and LF alike
    try:
        text = split_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SourceError(f"split file {split_file}: not UTF-8 text (UTF-16? save it as UTF-8)") from None
    for line in text.splitlines():
        parts = line.strip().split()
        if parts:
            rels.append(parts[0].replace("\\", "/"))
    if not rels:
        raise SourceError(f"split file lists no videos: {split_file}")
    return rels


def select_by_split(root: Path, rels: list):
    """Entries for the split's paths, and the paths that match no file.

    UCF-101's own lists spell one class differently from its folder (HandStandPushups vs
    HandstandPushups), so a path that does not match exactly is matched ignoring case.
    """
    by_lower = {}
    for p in root.rglob("*"):
        if p.is_file():
            by_lower.setdefault(p.relative_to(root).as_posix().lower(), p)
    found, missing = [], []
    for rel in rels:
        exact = root / rel
        path = exact if exact.is_file() else by_lower.get(rel.lower())
        if path:
            found.append(make_entry(root, path))
        else:
            missing.append((rel, "a symbolic link to a file that does not exist" if exact.is_symlink()
                            else "listed in the split file but not found"))
    return sorted(set(found), key=lambda e: e.rel), missing


def dangling_links(root: Path, exclude: tuple = ()) -> list:
    """(relative path, reason) of video-named symbolic links below `root` whose target is gone:
    reported as skipped or failed, never silently left out."""
    skip = [Path(x).resolve() for x in exclude]
    return [(p.relative_to(root).as_posix(), "a symbolic link to a file that does not exist")
            for p in sorted(root.rglob("*")) if p.is_symlink() and not p.exists() and p.suffix.lower() in VIDEO_EXTENSIONS
            and not any(p.parent.resolve().is_relative_to(s) for s in skip)]


def list_source_videos(src: Path, split_file: Optional[Path] = None, exclude: tuple = ()):
    """All videos to consider, sorted, with unique ids, plus (path, reason) for what was asked
    for or lies there but cannot be read: split-file paths that exist nowhere, dangling links.
    `exclude`: folders not to search (outputs written inside the input)."""
    if not src.exists():
        raise SourceError(f"source not found: {src}")
    if src.is_file():
        return [make_entry(src.parent, src)], []
    if split_file is not None:
        if not split_file.is_absolute() and not split_file.exists() and (src / split_file).is_file():
            split_file = src / split_file  # a list kept inside SRC (as sample-videos writes it), named from SRC
        entries, missing = select_by_split(src, read_split_file(split_file))
    else:
        entries, missing = find_videos(src, exclude), dangling_links(src, exclude)
    entries = with_unique_ids(entries)
    if not entries:
        what = f"none of the videos in {split_file}" if split_file else f"no video files ({', '.join(VIDEO_EXTENSIONS)})"
        raise SourceError(f"{src}: {what} found")
    return entries, missing


# restore and degrade: one run at a time writes videos into a folder (pipeline/host/lease.py)
VIDEOS_LOCK = ".vrestore-videos.lock"
PARTIAL = "vrestore-partial"  # the marker beside an output made from a partly decoded input


def note_partial(dst: Path, warning) -> None:
    """Mark `dst` as made from a partly decoded input (a file still being written, a damaged
    one), so a later run does it again instead of taking it for done; clear the mark when a
    whole decode replaced it."""
    marker = marker_path(dst, PARTIAL)
    if warning:
        write_json_atomic(marker, {"warning": warning})
    else:
        marker.unlink(missing_ok=True)


def refuse_replacing_inputs(inputs: list, outputs: list) -> None:
    """No planned output may be one of the input files (checked before anything is written)."""
    sources = {Path(p).resolve() for p in inputs}
    for out in outputs:
        if Path(out).resolve() in sources:
            raise SourceError(f"{out} is one of the inputs: writing it would replace an original; choose another output")


def check_output_folder(src: Path, out: Path, option: str) -> tuple:
    """Refuse an output folder that is the input folder (results would replace the originals);
    return the folders to leave out of the search (the output, when it lies inside the input)."""
    src_dir = (src.parent if src.is_file() else src).resolve()
    out = out.resolve()
    if out == src_dir:
        raise SourceError(f"{option} {out} is the input folder: outputs would replace the originals; choose another folder")
    return (out,) if out.is_relative_to(src_dir) else ()
