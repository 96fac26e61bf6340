"""Which original (and which occlusion mask) belongs to an input video, and whether the two can be
compared frame for frame."""
import unicodedata
from pathlib import Path
from typing import Optional

from vrestore.pipeline.atomic import fit_name
from vrestore.pipeline.media.discover import VIDEO_EXTENSIONS


def original_names(rel: str) -> list:
    """The relative names (without extension) an input's original may have: its own, dots
    included (`scene.v2.avi` -> `scene.v2`, never `scene`), then the name `vrestore degrade` gave
    to one of several same-stem inputs (`a_mp4.avi` -> `a.mp4`, see discover.output_names)."""
    stem = rel[: -len(Path(rel).suffix)] if Path(rel).suffix else rel
    names = [(stem, VIDEO_EXTENSIONS)]
    base, _, ext = stem.rpartition("_")
    if base and f".{ext}" in VIDEO_EXTENSIONS:
        names.append((base, (f".{ext}",)))
    return names


def nfc(name: str) -> str:
    """A name in Unicode's composed form: macOS writes `é` decomposed (NFD), Linux and Windows
    keep what they are given, so one name may reach us spelled either way."""
    return unicodedata.normalize("NFC", name)


class Originals:
    """The originals' folder (or one file), walked once: find(rel) is an input's original. A
    file is the original of a single input; in a folder, the same relative name (any video
    extension) wins, then a unique file of that name anywhere below; names compare in NFC
    (`é` composed or not). Nothing under a folder in `skip` (restore's output folder, when it
    lies inside the originals') is taken."""

    def __init__(self, root: Path, skip: tuple = ()):
        self.root, self.skip = root, skip
        self.by_name = {}  # file name (NFC) -> the files below root that have it
        self.by_rel = {}  # relative path (NFC) -> the file
        if root.is_dir():
            for p in root.rglob("*"):
                if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file() and self.outside(p):
                    self.by_name.setdefault(nfc(p.name), []).append(p)
                    self.by_rel.setdefault(nfc(p.relative_to(root).as_posix()), p)

    def outside(self, p: Path) -> bool:
        return not any(p.resolve().is_relative_to(s) for s in self.skip)

    def find(self, rel: str) -> Optional[Path]:
        if self.root.is_file():
            return self.root
        for stem, exts in original_names(rel):
            for ext in exts:
                if (p := self.root / f"{stem}{ext}").is_file() and self.outside(p):
                    return p
                if (p := self.by_rel.get(nfc(f"{stem}{ext}"))) is not None:
                    return p
        for stem, exts in original_names(rel):
            name = Path(stem).name
            matches = [p for e in exts for p in self.by_name.get(nfc(f"{name}{e}"), [])]
            if len(matches) == 1:
                return matches[0]
        return None


def masks_among(videos: list) -> set:
    """The masks `degrade --save-masks` wrote beside other videos of the list (mask_beside):
    not videos to restore. Found from each video's own mask name, so a mask whose name had to
    be shortened (a long input name) is known too."""
    return {m for v in videos if (m := mask_beside(v)) is not None}


def mask_beside(src: Path) -> Optional[Path]:
    """`vrestore degrade --save-masks` writes NAME_mask.EXT beside NAME.EXT (the name shortened,
    as degrade shortens it, when too long): 255 inside the boxes."""
    for ext in VIDEO_EXTENSIONS:
        if (p := src.with_name(fit_name(f"{src.stem}_mask{ext}"))).is_file():
            return p
    return None


def pair_check(info, original_info) -> Optional[str]:
    if (info.width, info.height) != (original_info.width, original_info.height):
        return f"size {info.width}x{info.height} but original {original_info.width}x{original_info.height}"
    if info.fps != original_info.fps:
        return f"{float(info.fps):g} fps but original {float(original_info.fps):g} fps"
    return None
