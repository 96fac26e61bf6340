"""Windows of T neighbouring frames over shards that store each frame once.

make-shards --clip-len T (the "frames" layout) writes a video's frames once, in order, as plain
per-frame WebDataset samples (`RUN/FFFFFF.jpg` + `.json`, and `.d.png` for the real preset),
each run of consecutive frames whole inside one shard. A T-frame training sample is then not
stored at all: it is a line of a DALI index file whose components point at the T frames' bytes
in the tar (DALI's index gives every component its own offset and size). This is BasicSR's
"store each frame once and read neighbours by index", done in the index DALI already reads.

Every frame of a run is the centre of one window, its neighbours mirrored at the run's ends by
restore's own rule (pipeline/media/neighbours.py): for T = 5 the first frame sees [2, 1, 0, 1, 2]. The
per-frame `.idx` that make-shards writes beside each tar lists every frame's offset and size;
`write_window_index` turns it into the index of T-frame windows, for any odd T up to the
shards' clip length, in a seeded order that mixes the runs (a fixed order: every rank and a
resumed run read the same index).
"""
import os
import random
from pathlib import Path

from vrestore.pipeline.dataset.manifest import ManifestError
from vrestore.pipeline.media.neighbours import window_indices


def read_frame_index(idx_path) -> list:
    """[(run, frame, context, {ext: "OFFSET SIZE NAME"})] per sample of a per-frame DALI index
    (v1.2), in tar order (a window's line repeats a frame's "OFFSET SIZE NAME" under its own ext). A sample named `RUN/FFFFFF` is frame FFFFFF of run RUN; `RUN/cFFFFFF` the same
    frame kept as context only (a neighbour across a cut, make-shards' samples.py)."""
    lines = Path(idx_path).read_text().splitlines()
    if not lines or not lines[0].startswith("v1.2 "):
        raise ManifestError(f"{idx_path}: not a DALI webdataset index (v1.2); run make-shards again with --overwrite")
    samples = []
    for line in lines[1:]:
        fields = line.split()
        comps = {fields[i]: f"{fields[i + 1]} {fields[i + 2]} {fields[i + 3]}" for i in range(0, len(fields), 4)}
        name = fields[3]
        stem = name[: name.index(".", name.rfind("/") + 1)]
        run, _, frame = stem.rpartition("/")
        samples.append((run, int(frame.removeprefix("c")), frame.startswith("c"), comps))
    return samples


def frame_runs(samples: list) -> list:
    """The samples grouped by run, each run's frames in order (make-shards writes them so), as
    (frame, context, components)."""
    runs, by_name = [], {}
    for run, frame, context, comps in samples:
        if run not in by_name:
            by_name[run] = []
            runs.append(by_name[run])
        by_name[run].append((frame, context, comps))
    return [sorted(r, key=lambda f: f[0]) for r in runs]


def window_lines(runs: list, clip_len: int, stride: int, image_ext: str, damaged: bool) -> list:
    """One index line per window of `clip_len` frames centred on every `stride`-th frame of a
    run that is not context (mirrored at the run's ends): components `0.jpg` .. `{T-1}.jpg` (and
    `d0.png` ..) and the centre frame's `json`. With T = 1 the per-frame names stay (`jpg`,
    `d.png`)."""
    lines = []
    image_names = [image_ext] if clip_len == 1 else [f"{i}.{image_ext}" for i in range(clip_len)]
    damaged_names = (["d.png"] if clip_len == 1 else [f"d{i}.png" for i in range(clip_len)]) if damaged else []
    for frames in runs:
        images = [c[image_ext] for _, _, c in frames]  # each frame's "offset size name"
        copies = [c["d.png"] for _, _, c in frames] if damaged else []
        centres = [i for i, (_, context, _) in enumerate(frames) if not context]
        for centre in centres[::stride]:
            window = window_indices(centre, len(frames), clip_len)
            parts = [f"{n} {images[i]}" for n, i in zip(image_names, window)]
            parts += [f"{n} {copies[i]}" for n, i in zip(damaged_names, window)]
            parts.append(f"json {frames[centre][2]['json']}")
            lines.append(" ".join(parts))
    return lines


ORDERS = ("sequential", "random")


def write_window_index(idx_path, out_path, clip_len: int, stride: int, image_ext: str, damaged: bool, seed: int,
                       order: str = "sequential") -> int:
    """Write the index of `clip_len`-frame windows over the shard whose per-frame index is
    `idx_path` to `out_path`; returns the window count (0: an empty shard, no file). `order`:
    sequential lists the windows in the order their bytes lie in the tar (runs in tar order,
    frames in order), so reading a shard is one forward pass over it; random mixes them with a
    seed of their own per shard (bench/read_order.py measures both)."""
    lines = window_lines(frame_runs(read_frame_index(idx_path)), clip_len, stride, image_ext, damaged)
    if order == "random":
        random.Random(f"windows/{seed}/{Path(idx_path).name}/{clip_len}").shuffle(lines)
    elif order != "sequential":
        raise ValueError(f"window order {order!r}: choose from {', '.join(ORDERS)}")
    if not lines:
        return 0
    tmp = Path(f"{out_path}.part")
    tmp.write_text(f"v1.2 {len(lines)}\n" + "\n".join(lines) + "\n")
    os.replace(tmp, out_path)
    return len(lines)
