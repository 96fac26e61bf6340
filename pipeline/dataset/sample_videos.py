"""Embedded sample data: a tiny UCF-101-shaped tree made from photographs shipped in a package.

UCF-101 cannot be fetched everywhere, and a new user should see the tool work before getting
it. scikit-image ships natural photographs; ffmpeg animates each with a slow pan and zoom so
frames move like handheld footage, and encodes them as UCF-101 does: 320x240, 25 fps,
MPEG-4 Part 2 (XviD tag) in AVI, named v_<Class>_gGG_cCC.avi, split by group.
"""
import importlib.resources
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from vrestore.pipeline.atomic import atomic_path
from vrestore.pipeline.media.ffmpeg_cmd import ffmpeg_command

# Class name -> photograph in skimage.data (all colour, all at least 450 px wide).
CLASSES = {
    "Astronaut": "astronaut.png",
    "Cat": "chelsea.png",
    "Coffee": "coffee.png",
    "Rocket": "rocket.jpg",
    "Motorcycle": "motorcycle_left.png",
}
WIDTH, HEIGHT, FPS = 320, 240, 25
TEST_GROUP = 1  # UCF-101 splits by group so the same scene never lands in both splits


@dataclass
class SampleConfig:
    out: Path
    classes: int = 5
    groups: int = 4
    clips: int = 2
    seed: int = 0
    workers: int = 2

    def __post_init__(self):
        self.out = Path(self.out)
        if not 1 <= self.classes <= len(CLASSES):
            raise ValueError(f"classes must be 1..{len(CLASSES)}")
        if self.groups < 2 or self.clips < 1:
            raise ValueError("need at least 2 groups (group 1 is the test split) and 1 clip")
        if self.workers < 1:
            raise ValueError("--workers must be >= 1")


def photo_path(name: str) -> Path:
    return Path(str(importlib.resources.files("skimage.data") / name))


def clip_motion(seed: int, cls: str, group: int, clip: int) -> dict:
    """Pan/zoom path of one clip: a group picks a region of the photo, a clip a motion in it."""
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


def render_clip_args(photo: Path, out: Path, m: dict) -> list:
    t = m["seconds"]
    lerp = lambda a, b: f"({m[a]:.4f}+({m[b]:.4f}-{m[a]:.4f})*t/{t})"
    # Scale so the photo covers the frame `zoom` times over, then crop a moving window.
    cover = f"max({WIDTH}/iw,{HEIGHT}/ih)"
    stream = (
        ffmpeg.input(str(photo), framerate=FPS, threads=1)
        # Decode the photo once and repeat the frame (an input -loop would re-decode it per frame).
        .filter("loop", loop=-1, size=1, start=0)
        .filter("setpts", f"N/{FPS}/TB")
        .filter("scale", w=f"2*trunc(iw*{cover}*{lerp('z0', 'z1')}/2)", h=f"2*trunc(ih*{cover}*{lerp('z0', 'z1')}/2)", eval="frame", flags="bilinear")
        .crop(x=f"(iw-{WIDTH})*{lerp('px0', 'px1')}", y=f"(ih-{HEIGHT})*{lerp('py0', 'py1')}", width=WIDTH, height=HEIGHT)
    )
    out_stream = stream.output(
        str(out), format="avi", vcodec="mpeg4", vtag="XVID", pix_fmt="yuv420p", t=t,
        threads=1, **{"q:v": 3, "g": 50, "fflags": "+bitexact", "flags:v": "+bitexact"},
    )
    return ffmpeg_command(out_stream)


def ucf_name(cls: str, group: int, clip: int) -> str:
    return f"{cls}/v_{cls}_g{group:02d}_c{clip:02d}.avi"


def make_sample_videos(cfg: SampleConfig) -> dict:
    """Write the tree and its split files; returns {"train": [...], "test": [...]} paths."""
    classes = list(CLASSES)[: cfg.classes]
    jobs = [(cls, g, c) for cls in classes for g in range(1, cfg.groups + 1) for c in range(1, cfg.clips + 1)]

    def render(job):
        cls, g, c = job
        out = cfg.out / ucf_name(cls, g, c)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            args = render_clip_args(photo_path(CLASSES[cls]), tmp, clip_motion(cfg.seed, cls, g, c))
            subprocess.run(args, check=True, stdin=subprocess.DEVNULL, capture_output=True)

    with ThreadPoolExecutor(cfg.workers) as pool:
        list(pool.map(render, jobs))
    split_dir = cfg.out / "ucfTrainTestlist"
    split_dir.mkdir(parents=True, exist_ok=True)
    label = {cls: i + 1 for i, cls in enumerate(classes)}
    train = [ucf_name(*j) for j in jobs if j[1] != TEST_GROUP]
    test = [ucf_name(*j) for j in jobs if j[1] == TEST_GROUP]
    # UCF-101's formats: trainlist lines carry the 1-based class label, testlist lines do not.
    (split_dir / "classInd.txt").write_text("".join(f"{i} {cls}\n" for cls, i in label.items()))
    (split_dir / "trainlist01.txt").write_text("".join(f"{p} {label[p.split('/')[0]]}\n" for p in train))
    (split_dir / "testlist01.txt").write_text("".join(f"{p}\n" for p in test))
    return {"train": train, "test": test}
