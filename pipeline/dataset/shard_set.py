"""Reading a make-shards folder back: the shards its manifest lists, checked to be there whole."""
from dataclasses import dataclass
from pathlib import Path

from vrestore.pipeline.dataset.manifest import ManifestError, read_manifest


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

    @property
    def image_exts(self) -> list:
        """Tar member extensions of a sample's frames, in order: jpg, or 0.jpg .. {T-1}.jpg."""
        if self.clip_len == 1:
            return [self.image_ext]
        return [f"{i}.{self.image_ext}" for i in range(self.clip_len)]

    @property
    def damaged_exts(self) -> list:
        """The real preset's damaged frames, in the same order: d.png, or d0.png .. d{T-1}.png."""
        if self.preset != "real":
            return []
        return ["d.png"] if self.clip_len == 1 else [f"d{i}.png" for i in range(self.clip_len)]


def load_shard_set(folder) -> ShardSet:
    """The shards a manifest lists, each checked to be there whole (DALI would fail later with
    a traceback, or read a truncated tar as garbage)."""
    folder = Path(folder)
    m = read_manifest(folder)
    for s in m["shards"]:
        tar, idx = folder / s["tar"], folder / s["index"]
        for path in (tar, idx):
            if not path.is_file():
                raise ManifestError(f"{path}: listed in {folder / 'manifest.json'} but missing; run make-shards again")
        if tar.stat().st_size != s["bytes"]:
            raise ManifestError(f"{tar}: {tar.stat().st_size} bytes, the manifest says {s['bytes']} (truncated or replaced); "
                                "run make-shards again with --overwrite")
    return ShardSet(
        tars=[str(folder / s["tar"]) for s in m["shards"]],
        indexes=[str(folder / s["index"]) for s in m["shards"]],
        num_samples=m["num_samples"],
        image_ext=m["params"]["image_format"],
        min_side=min(min(v["width"], v["height"]) for v in m["videos"]),
        clip_len=m["params"].get("clip_len", 1),
        preset=m["params"].get("preset", "seed"),
        real=m["params"].get("real"),
    )
