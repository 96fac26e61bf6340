"""The samples make-shards writes for one video, in groups that stay whole inside one shard.

Two layouts (shard_set.LAYOUTS):
- clips (and every per-frame set, T = 1): one sample per clip, holding its T frames
  (`ID/FFFFFF.0.jpg` .. `.{T-1}.jpg` + `.json`); a frame is stored in up to T samples.
- frames: each frame once, as a per-frame sample (`RUN/FFFFFF.jpg` + `.json`), in runs of
  consecutive frames; training reads T-frame windows inside a run through an index
  (windows.py). A run is one group: it never straddles two shards. A video too long for one
  shard (--max-frames, --max-size-mb) is cut into runs that fit; each run also carries the
  T // 2 frames on either side of its cut, as context only (`RUN/cFFFFFF`: a neighbour, never a
  window's centre), so a frame at a cut still sees its real neighbours and every frame is
  still the centre of exactly one window.
"""
import json
from itertools import accumulate

TAR_HEADER = 512  # bytes before each tar member (shard_writer's estimate too)


def clip_samples(video_id: str, images: list, meta: dict, cfg, damaged: list = None) -> list:
    """Groups of one sample each. One frame: `ID/FFFFFF.jpg` + `.json` (frame = its index).
    A clip of T: `ID/FFFFFF.0.jpg` .. `.{T-1}.jpg` + `.json`, FFFFFF its first frame's index;
    clips start every `clip_stride` kept frames, so a video of n frames gives
    ceil((n - T + 1) / clip_stride) clips, each wholly inside the video. With `damaged` frames
    (the real preset: one list of frames per draw), also `.d.png` / `.d0.png` .. for the same
    frames, from the draw whose run of clips this one is in."""
    samples, t = [], cfg.clip_len
    starts = range(0, len(images) - t + 1, cfg.clip_stride)
    for n, start in enumerate(starts):
        first = start * cfg.frame_stride
        info = {**meta, "frame": first}
        if damaged:  # runs of consecutive clips, one per draw, as even as the count allows
            k = n * len(damaged) // len(starts)
            copy = damaged[k]
            if len(damaged) > 1:
                info["draw"] = k
        if t == 1:
            members = {cfg.image_format: images[start]}
            if damaged:
                members["d.png"] = copy[start]
        else:
            info |= {"clip_len": t, "frames": [first + i * cfg.frame_stride for i in range(t)]}
            members = {f"{i}.{cfg.image_format}": images[start + i] for i in range(t)}
            if damaged:
                members |= {f"d{i}.png": copy[start + i] for i in range(t)}
        samples.append([(f"{video_id}/{first:06d}", {**members, "json": json.dumps(info, sort_keys=True).encode()})])
    return samples


def run_bounds(n: int, draws: int) -> list:
    """(draw, first, end) kept-frame ranges of a video's runs, one per draw, splitting its n
    frames as evenly as the count allows (clip_samples splits its clips the same way). A window
    never crosses into another draw's run: at a run's ends it mirrors, as at a video's."""
    return [(k, k * n // draws, (k + 1) * n // draws) for k in range(draws) if (k + 1) * n // draws > k * n // draws]


def cut_run(first: int, end: int, sizes: list, max_frames: int, max_bytes: int, context: int, stride: int) -> list:
    """[(a, b)]: the frames [first, end) of one run cut into consecutive pieces whose centres
    [a, b) plus `context` frames either side (inside [first, end)) fit `max_frames` frames and
    `max_bytes` bytes (`sizes` per frame of the video). Cuts fall on multiples of `stride` from
    `first`, so every `stride`-th frame stays a window centre across a cut. A piece holds at
    least one block of `stride` frames, even when that block alone is over the caps."""
    total = [0, *accumulate(sizes)]
    pieces, a = [], first
    while a < end:
        b = min(end, a + stride)
        while b < end:
            nb = min(end, b + stride)
            lo, hi = max(first, a - context), min(end, nb + context)
            if hi - lo > max_frames or total[hi] - total[lo] > max_bytes:
                break
            b = nb
        pieces.append((a, b))
        a = b
    return pieces


def frame_run_samples(video_id: str, images: list, meta: dict, cfg, damaged: list = None) -> list:
    """The frames layout: one group per run, each frame of the run a sample `RUN/FFFFFF.jpg` +
    `.json` (and `.d.png`, the run's draw's damaged copy of the frame). RUN is the video's id,
    with `~dK` for draw K when a video has several draws (--real-draws), and `~pP` for piece P
    when the run was cut to fit a shard (its context frames named `RUN/cFFFFFF`)."""
    draws = run_bounds(len(images), len(damaged) if damaged else 1)
    members, sizes = [None] * len(images), [0] * len(images)
    for k, first, end in draws:
        for i in range(first, end):
            info = {**meta, "frame": i * cfg.frame_stride, **({"draw": k} if damaged and len(damaged) > 1 else {})}
            members[i] = {cfg.image_format: images[i], **({"d.png": damaged[k][i]} if damaged else {}),
                          "json": json.dumps(info, sort_keys=True).encode()}
            sizes[i] = sum(len(v) + TAR_HEADER for v in members[i].values())
    groups, context = [], cfg.clip_len // 2
    for k, first, end in draws:
        run = video_id if not damaged or len(damaged) == 1 else f"{video_id}~d{k}"
        pieces = cut_run(first, end, sizes, cfg.max_frames, int(cfg.max_size_mb * 2**20), context, cfg.clip_stride)
        for p, (a, b) in enumerate(pieces):
            name = run if len(pieces) == 1 else f"{run}~p{p}"
            mark = lambda i: "" if a <= i < b else "c"  # c: context only, a neighbour across the cut
            groups.append([(f"{name}/{mark(i)}{i * cfg.frame_stride:06d}", members[i])
                           for i in range(max(first, a - context), min(end, b + context))])
    return groups
