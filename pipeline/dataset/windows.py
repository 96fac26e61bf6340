"""Windows of T neighbouring frames over shards that store each frame once.

make-shards --clip-len T (the "frames" layout) writes a video's frames once, in order, as plain
per-frame WebDataset samples (`RUN/FFFFFF.jpg` + `.json`, and `.d.png` for the real preset),
each run of consecutive frames whole inside one shard. A T-frame training sample is then not
stored at all: it is a line of a DALI index file whose components point at the T frames' bytes
in the tar (DALI's index gives every component its own offset and size). This is BasicSR's
"store each frame once and read neighbours by index", done in the index DALI already reads.

Every frame of a run is the centre of one window, its neighbours mirrored at the run's ends by
restore's own rule (pipeline/neighbours.py): for T = 5 the first frame sees [2, 1, 0, 1, 2]. The
per-frame `.idx` that make-shards writes beside each tar lists every frame's offset and size;
`write_window_index` turns it into the index of T-frame windows, for any odd T up to the
shards' clip length, in a seeded order that mixes the runs (a fixed order: every rank and a
resumed run read the same index).
"""
import os
import random
from dataclasses import dataclass
from pathlib import Path

from vrestore.pipeline.dataset.manifest import ManifestError
from vrestore.pipeline.neighbours import window_indices


@dataclass(frozen=True)
class Component:
    ext: str
    offset: int
    size: int
    name: str

    def line(self, ext: str) -> str:
        return f"{ext} {self.offset} {self.size} {self.name}"


def read_frame_index(idx_path) -> list:
    """[(run, frame, {ext: Component})] per sample of a per-frame DALI index (v1.2), in tar
    order. A sample named `RUN/FFFFFF` is frame FFFFFF of run RUN."""
    lines = Path(idx_path).read_text().splitlines()
    if not lines or not lines[0].startswith("v1.2 "):
        raise ManifestError(f"{idx_path}: not a DALI webdataset index (v1.2); run make-shards again with --overwrite")
    samples = []
    for line in lines[1:]:
        fields = line.split()
        comps = {}
        for i in range(0, len(fields), 4):
            ext, offset, size, name = fields[i : i + 4]
            comps[ext] = Component(ext, int(offset), int(size), name)
        name = next(iter(comps.values())).name
        stem = name[: name.index(".", name.rfind("/") + 1)]
        run, _, frame = stem.rpartition("/")
        samples.append((run, int(frame), comps))
    return samples


def frame_runs(samples: list) -> list:
    """The samples grouped by run, each run's frames in order (make-shards writes them so)."""
    runs, by_name = [], {}
    for run, frame, comps in samples:
        if run not in by_name:
            by_name[run] = []
            runs.append(by_name[run])
        by_name[run].append((frame, comps))
    return [sorted(r, key=lambda fc: fc[0]) for r in runs]


def window_lines(runs: list, clip_len: int, stride: int, image_ext: str, damaged: bool) -> list:
    """One index line per window of `clip_len` frames centred on every `stride`-th frame of a
    run (mirrored at the run's ends): components `0.jpg` .. `{T-1}.jpg` (and `d0.png` ..) and the
    centre frame's `json`. With T = 1 the per-frame names stay (`jpg`, `d.png`)."""
    lines = []
    for frames in runs:
        comps = [c for _, c in frames]
        for centre in range(0, len(comps), stride):
            window = [comps[i] for i in window_indices(centre, len(comps), clip_len)]
            if clip_len == 1:
                parts = [window[0][image_ext].line(image_ext)]
                parts += [window[0]["d.png"].line("d.png")] if damaged else []
            else:
                parts = [w[image_ext].line(f"{i}.{image_ext}") for i, w in enumerate(window)]
                parts += [w["d.png"].line(f"d{i}.png") for i, w in enumerate(window)] if damaged else []
            parts.append(comps[centre]["json"].line("json"))
            lines.append(" ".join(parts))
    return lines


def write_window_index(idx_path, out_path, clip_len: int, stride: int, image_ext: str, damaged: bool, seed: int) -> int:
    """Write the index of `clip_len`-frame windows over the shard whose per-frame index is
    `idx_path` to `out_path`; returns the window count (0: an empty shard, no file)."""
    lines = window_lines(frame_runs(read_frame_index(idx_path)), clip_len, stride, image_ext, damaged)
    # Mixed once, with a seed of its own per shard: the first samples (validation's) and the
    # first epoch's shuffle buffer see many videos, as make-shards' interleaving did.
    random.Random(f"windows/{seed}/{Path(idx_path).name}/{clip_len}").shuffle(lines)
    if not lines:
        return 0
    tmp = Path(f"{out_path}.part")
    tmp.write_text(f"v1.2 {len(lines)}\n" + "\n".join(lines) + "\n")
    os.replace(tmp, out_path)
    return len(lines)
