"""Reading a make-shards folder back: the shards its manifest lists, checked to be there whole,
as the samples training reads (frames, or windows of T frames)."""
import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from vrestore.pipeline.dataset.manifest import ManifestError, read_manifest
from vrestore.pipeline.dataset.windows import write_window_index

# How a make-shards folder stores clips of T > 1 frames:
#   frames: each frame once, runs of consecutive frames; T-frame windows are index lines
#           (windows.py), so T is chosen at training time, up to the shards' clip_len;
#   clips:  each sample holds its T frames (0.jpg .. T-1.jpg), so a frame is stored T times
#           (manifests before the frames layout; make-shards --layout clips still writes it).
LAYOUTS = ("frames", "clips")


@dataclass(frozen=True)
class ShardSet:
    tars: list
    indexes: list
    num_samples: int
    image_ext: str
    min_side: int  # smallest frame side in the set, to check the crop against
    clip_len: int = 1  # frames per sample
    preset: str = "seed"  # real: each sample also holds its damaged frames (make-shards --preset real)
    real: dict = None  # the real preset's settings, as the manifest records them
    layout: str = "clips"  # see LAYOUTS; per-frame shards (clip_len 1) read the same either way
    max_clip_len: int = 1  # frames layout: the longest window the runs allow (make-shards --clip-len)
    frame_spacing: int = 1  # source frames between stored neighbours (make-shards --frame-stride)
    folder: Optional[str] = None

    @property
    def image_exts(self) -> list:
        """Sample member extensions of the frames, in order: jpg, or 0.jpg .. {T-1}.jpg."""
        if self.clip_len == 1:
            return [self.image_ext]
        return [f"{i}.{self.image_ext}" for i in range(self.clip_len)]

    @property
    def damaged_exts(self) -> list:
        """The real preset's damaged frames, in the same order: d.png, or d0.png .. d{T-1}.png."""
        if self.preset != "real":
            return []
        return ["d.png"] if self.clip_len == 1 else [f"d{i}.png" for i in range(self.clip_len)]


_window_dirs = []


@atexit.register
def _remove_window_dirs():
    for d in _window_dirs:
        shutil.rmtree(d, ignore_errors=True)


def with_windows(shards: ShardSet, clip_len: int, stride: int = 1, seed: int = 0, order: str = "sequential") -> ShardSet:
    """A frames-layout set read as windows of `clip_len` frames: the index of each shard's
    windows is written into a private temporary folder (never beside the shards, which other
    hosts may share or which may be read-only), removed when the process ends."""
    if clip_len > shards.max_clip_len or clip_len < 1 or clip_len % 2 == 0:
        raise ValueError(f"--frames {clip_len}: {shards.folder} allows odd window lengths up to {shards.max_clip_len} "
                         f"(make-shards --clip-len {clip_len} makes shards that allow {clip_len})")
    work = tempfile.mkdtemp(prefix="vrestore-windows-")
    _window_dirs.append(work)
    tars, indexes, total = [], [], 0
    for tar, idx in zip(shards.tars, shards.indexes):
        out = Path(work) / Path(idx).name
        n = write_window_index(idx, out, clip_len, stride, shards.image_ext, shards.preset == "real", seed, order)
        if n:
            tars.append(tar)
            indexes.append(str(out))
            total += n
    if not total:
        raise ValueError(f"{shards.folder}: no run of {clip_len} frames in these shards")
    return replace(shards, tars=tars, indexes=indexes, num_samples=total, clip_len=clip_len)


def spread(shards: ShardSet, n: int) -> ShardSet:
    """`n` samples of `shards` spread evenly over the whole set (every len/n-th line of the
    shards' indexes, in order), as a set of their own: the validation set. Shards read in the
    order their bytes lie start with one video's frames; their first n samples would be a
    single clip. The indexes go to the private temporary folder, as with_windows' do."""
    counts = []
    for idx in shards.indexes:  # "v1.2 N": each index says how many lines follow
        with open(idx) as f:
            counts.append(int(f.readline().split()[1]))
    total = sum(counts)
    wanted = sorted({i * total // n for i in range(min(n, total))})  # positions over the whole set
    work = tempfile.mkdtemp(prefix="vrestore-spread-")
    _window_dirs.append(work)
    tars, indexes, start, picked = [], [], 0, 0
    for tar, idx, count in zip(shards.tars, shards.indexes, counts):
        mine = {w - start for w in wanted if start <= w < start + count}
        start += count
        if not mine:
            continue
        with open(idx) as f:
            f.readline()
            lines = [line.rstrip("\n") for k, line in enumerate(f) if k in mine]
        out = Path(work) / f"{len(tars):06d}.idx"
        out.write_text(f"v1.2 {len(lines)}\n" + "\n".join(lines) + "\n")
        tars.append(tar)
        indexes.append(str(out))
        picked += len(lines)
    return replace(shards, tars=tars, indexes=indexes, num_samples=picked)


def check_index_matches_tar(tar: Path, idx: Path) -> None:
    """The first and last sample of a DALI index must be where the index says in its tar: a tar
    rewritten after its index was made (same size, other bytes) otherwise fails deep inside
    DALI's decoder with a traceback. Two 512-byte reads a shard."""
    with open(idx, "rb") as f:
        f.readline()  # "v1.2 N"
        first = f.readline()
        f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
        last = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    with open(tar, "rb") as t:
        for line in (first, last):
            if not line.strip():
                continue
            _, offset, size, name = os.fsdecode(line).split()[:4]
            t.seek(int(offset) - 512)
            header = t.read(512)
            stored = header[:100].split(b"\0", 1)[0]
            try:
                stored_size = int(header[124:136].split(b"\0", 1)[0].strip() or b"-1", 8)
            except ValueError:
                stored_size = -1
            if len(header) < 512 or not os.fsencode(name).startswith(stored) or not stored or stored_size != int(size):
                raise ManifestError(f"{idx} does not match {tar} (the tar was rewritten after its index was made); "
                                    f"remake the shards: make-shards ... {Path(tar).parent} --overwrite")


def check_manifest_entries(folder: Path, m: dict) -> None:
    """A manifest names only files in its own folder (a bare name: no path, no `..`; make-shards
    writes nothing else) and counts that are whole numbers adding up: an edited or foreign one
    is refused in one line before DALI opens anything."""
    where = folder / "manifest.json"
    shards = m.get("shards")
    if not isinstance(shards, list):
        raise ManifestError(f"{where}: no list of shards; run make-shards again with --overwrite")
    total = 0
    for s in shards:
        if not isinstance(s, dict):
            raise ManifestError(f"{where}: a shard entry is not a record; run make-shards again with --overwrite")
        for key in ("tar", "index"):
            name = s.get(key)
            if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
                raise ManifestError(f"{where}: shard {key} {name!r} is not a file of this folder (a manifest names its own "
                                    "shards only); run make-shards again with --overwrite")
        for key in ("samples", "bytes"):
            if not isinstance(s.get(key), int) or isinstance(s.get(key), bool) or s[key] < 0:
                raise ManifestError(f"{where}: shard {s['tar']}: {key} {s.get(key)!r} is not a count; run make-shards again with --overwrite")
        total += s["samples"]
    n = m.get("num_samples")
    if not isinstance(n, int) or isinstance(n, bool) or n != total:
        raise ManifestError(f"{where}: num_samples {n!r}, but its shards hold {total}; run make-shards again with --overwrite")


def load_shard_set(folder, clip_len: Optional[int] = None, order: str = "sequential") -> ShardSet:
    """The shards a manifest lists, each checked to be there whole (DALI would fail later with
    a traceback, or read a truncated tar as garbage), as samples of `clip_len` frames (None: the
    manifest's clip length). Frames-layout shards give windows of any odd length up to theirs;
    clips-layout shards only their own."""
    folder = Path(folder)
    m = read_manifest(folder)
    check_manifest_entries(folder, m)
    for s in m["shards"]:
        tar, idx = folder / s["tar"], folder / s["index"]
        for path in (tar, idx):
            if not path.is_file():
                raise ManifestError(f"{path}: listed in {folder / 'manifest.json'} but missing; run make-shards again")
        if tar.stat().st_size != s["bytes"]:
            raise ManifestError(f"{tar}: {tar.stat().st_size} bytes, the manifest says {s['bytes']} (truncated or replaced); "
                                "run make-shards again with --overwrite")
        check_index_matches_tar(tar, idx)
    params = m.get("params")
    if not isinstance(params, dict) or "image_format" not in params:
        raise ManifestError(f"{folder / 'manifest.json'}: no make-shards settings (params) in it; run make-shards again with --overwrite")
    if not m.get("videos") or not m.get("shards"):
        raise ManifestError(f"{folder / 'manifest.json'}: lists no videos or shards; nothing to read (run make-shards on a folder with videos)")
    stored = params.get("clip_len", 1)
    layout = params.get("layout", "clips")
    if layout not in LAYOUTS:
        raise ManifestError(f"{folder / 'manifest.json'}: unknown layout {layout!r}; run make-shards again with --overwrite")
    shards = ShardSet(
        tars=[str(folder / s["tar"]) for s in m["shards"]],
        indexes=[str(folder / s["index"]) for s in m["shards"]],
        num_samples=m["num_samples"],
        image_ext=params["image_format"],
        min_side=min(min(v["width"], v["height"]) for v in m["videos"]),
        clip_len=1 if layout == "frames" else stored,
        preset=params.get("preset", "seed"),
        real=params.get("real"),
        layout=layout,
        max_clip_len=stored if layout == "frames" else 1,
        frame_spacing=params.get("frame_stride", 1),
        folder=str(folder),
    )
    want = stored if clip_len is None else clip_len
    if layout == "frames":
        return with_windows(shards, want, params.get("clip_stride", 1), order=order)
    if want != stored:
        raise ValueError(f"--frames {want}, but {folder} holds samples of {stored} frame(s) (clips layout); "
                         f"make shards with make-shards --clip-len {want}")
    return shards
