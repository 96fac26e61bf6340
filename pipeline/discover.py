"""Find the videos to shard: a UCF-101 tree or any folder, optionally through a split file."""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm")
UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$")


@dataclass(frozen=True)
class VideoEntry:
    path: Path  # absolute
    rel: str  # relative to the source root, with '/' separators; how manifests name it
    video_id: str  # the shard key's folder: no dots, since WebDataset and DALI split keys at the first dot
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
        video_id=stem.replace(".", "_"),
        cls=cls,
        group=int(m["group"]) if m else None,
        clip=int(m["clip"]) if m else None,
    )


def find_videos(root: Path) -> list:
    paths = sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
    )
    return [make_entry(root, p) for p in paths]


def read_split_file(split_file: Path) -> list:
    """Paths of a UCF-101 trainlist/testlist: `Class/v_Class_g08_c01.avi [label]` per line."""
    if not split_file.is_file():
        raise SourceError(f"split file not found: {split_file}")
    rels = []
    for line in split_file.read_text().splitlines():
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
        (found.append(make_entry(root, path)) if path else missing.append(rel))
    return sorted(set(found), key=lambda e: e.rel), missing


def list_source_videos(src: Path, split_file: Optional[Path] = None):
    """All videos to consider, sorted, plus split-file paths that exist nowhere."""
    if not src.exists():
        raise SourceError(f"source not found: {src}")
    if src.is_file():
        return [make_entry(src.parent, src)], []
    if split_file is not None:
        entries, missing = select_by_split(src, read_split_file(split_file))
    else:
        entries, missing = find_videos(src), []
    if not entries:
        what = f"none of the videos in {split_file}" if split_file else f"no video files ({', '.join(VIDEO_EXTENSIONS)})"
        raise SourceError(f"{src}: {what} found")
    return entries, missing
