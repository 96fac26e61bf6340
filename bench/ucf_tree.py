"""A UCF-101-shaped tree of synthetic clips, for figures at the collection's size:

    python bench/ucf_tree.py /data/ucf-like --clips 13320 --frames 25

OUT/UCF-101/CLASS/v_CLASS_gGG_cCC.avi (101 classes, groups 01-25, 5 or 6 clips a group, as
UCF-101 spreads its 13,320), XviD in AVI at 320x240 and 25 fps like UCF-101's files, and
OUT/ucfTrainTestlist/trainlist01.txt and testlist01.txt (groups 8-25 train, 1-7 test: UCF's
split 1 keeps whole groups apart the same way). The pictures are ffmpeg's testsrc2 (moving
patterns, a clock, noise), written by one ffmpeg process that cuts its output into clips
(`-f segment`), so 13,320 clips take minutes rather than an hour of process starts. They are
for measuring throughput and memory, not for training.
"""
import argparse
import subprocess
import tempfile
from pathlib import Path

CLASSES = 101
GROUPS = 25
TEST_GROUPS = range(1, 8)


def layout(clips: int) -> list:
    """[(class, group, clip)] for `clips` clips spread over the classes' groups, 5 or 6 a group
    for UCF-101's 13,320 (more or fewer groups' worth for other counts)."""
    per_group, extra = divmod(clips, CLASSES * GROUPS)
    names = []
    for i in range(CLASSES * GROUPS):
        c, g = divmod(i, GROUPS)
        names += [(f"Class{c:03d}", g + 1, k + 1) for k in range(per_group + (i < extra))]
    return names


def make_tree(out: Path, clips: int, frames: int, fps: int = 25) -> Path:
    root = out / "UCF-101"
    out.mkdir(parents=True, exist_ok=True)
    names = layout(clips)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={fps}",
                        "-frames:v", str(len(names) * frames), "-c:v", "mpeg4", "-vtag", "xvid", "-q:v", "5", "-g", str(frames),
                        "-f", "segment", "-segment_frames", ",".join(str(frames * (i + 1)) for i in range(len(names) - 1)),
                        "-reset_timestamps", "1", f"{tmp}/%06d.avi"], check=True)
        for i, (cls, group, clip) in enumerate(names):
            dst = root / cls / f"v_{cls}_g{group:02d}_c{clip:02d}.avi"
            dst.parent.mkdir(parents=True, exist_ok=True)
            Path(tmp, f"{i:06d}.avi").rename(dst)
    lists = out / "ucfTrainTestlist"
    lists.mkdir(exist_ok=True)
    rel = lambda n: f"{n[0]}/v_{n[0]}_g{n[1]:02d}_c{n[2]:02d}.avi"
    (lists / "trainlist01.txt").write_text("".join(f"{rel(n)} {int(n[0][5:]) + 1}\n" for n in names if n[1] not in TEST_GROUPS))
    (lists / "testlist01.txt").write_text("".join(f"{rel(n)}\n" for n in names if n[1] in TEST_GROUPS))
    return root


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--clips", type=int, default=13320)
    p.add_argument("--frames", type=int, default=25, help="frames per clip (UCF-101 averages ~186)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = make_tree(args.out, args.clips, args.frames)
    print(f"{args.clips} clips of {args.frames} frames in {root}; split files in {args.out / 'ucfTrainTestlist'}")


if __name__ == "__main__":
    main()
