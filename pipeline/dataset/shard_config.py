"""`ShardConfig`: every setting of make-shards, one field per command-line option, and the
settings a resume must find unchanged (`output_params`)."""
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from vrestore.pipeline.cluster.ray_engine import check_engine, engine_option, ray_address_option
from vrestore.pipeline.dataset.shard_set import LAYOUTS
from vrestore.pipeline.degrade.real_world import PRESETS, RealSpec
from vrestore.pipeline.host.limits import cpu_count
from vrestore.pipeline.options import option, width_by_height

IMAGE_FORMATS = ("jpg", "png")
# Settings that change what is written; a resume must find them unchanged.
OUTPUT_PARAMS = (
    "split_file", "limit", "use_first_100", "image_format", "quality", "frame_stride", "size",
    "short_side", "max_frames", "max_size_mb", "mix_window", "seed", "prefix", "num_nodes", "node_rank",
)


@dataclass
class ShardConfig:
    src: Path
    out: Path = Path("shards")
    split_file: Optional[Path] = option(None, "UCF-101 trainlist/testlist file (from the current folder, else from SRC); "
                                                   "the paths it lists are relative to SRC.")
    limit: Optional[int] = option(None, "Keep only the first N videos in sorted order.")
    use_first_100: bool = option(False, "Keep only the first 100 videos in sorted order (the original project's quick mode).")
    image_format: str = option("jpg", "Frame encoding; png is lossless and ~8x larger.", choices=IMAGE_FORMATS, flag="--format")
    quality: int = option(2, "JPEG quality as ffmpeg's -q:v: 2 (best) to 31 (worst).")
    frame_stride: int = option(1, "Keep every Nth frame.")
    clip_len: int = option(1, "For multi-frame training (odd T): training may then read windows of any odd length up to T. "
                              "1: one sample per frame.")
    clip_stride: int = option(1, "Kept frames between the centres of training windows; 1 makes every frame a window's centre "
                                 "once per epoch.")
    # How clips of T > 1 are stored (shard_set.LAYOUTS)
    layout: str = option("frames", "With --clip-len > 1: frames stores each frame once, in runs of a video's frames (windows "
                                   "mirrored at its ends, as restore does); clips stores each clip of T whole (every frame T "
                                   "times; the older layout, read only at T).", choices=LAYOUTS)
    size: Optional[Tuple[int, int]] = option(None, "Resize frames to WxH (even numbers). Default: as is.", parse=width_by_height,
                                             metavar="WxH")
    short_side: Optional[int] = option(None, "Resize so the short side is N pixels, keeping aspect.")
    max_frames: int = option(10_000, "Frames per shard at most.")
    max_size_mb: float = option(512.0, "Shard size cap in MB (WebDataset recommends 100 MB - 1 GB).")
    mix_window: int = option(32, "Videos whose frames are shuffled together into shards (memory grows with it).")
    seed: int = option(0, "Seed of the writer-side shuffle.")
    workers: int = option(help="Videos decoded in parallel.", factory=cpu_count, show_default="the job's CPUs: affinity and cgroup quota")
    prefix: str = option("shard", "Shard file name prefix.")
    overwrite: bool = option(False, "Delete this run's shards in OUT and start over (default: resume).")
    strict: bool = option(False, "Exit 1 if any video was skipped.")
    # not given: a Slurm array's task count and index (vrestore/cli.py says so), else 1 and 0
    num_nodes: Optional[int] = option(None, "Nodes sharding one collection into one OUT (then merge-manifests). Default: 1, "
                                      "or SLURM_ARRAY_TASK_COUNT inside a Slurm array.", show_default=False)
    node_rank: Optional[int] = option(None, "This node's rank; takes every num-nodes-th video. Default: 0, or the Slurm array "
                                      "task's index.", show_default=False)
    engine: str = engine_option("one Ray task per --mix-window videos, retried")
    ray_address: Optional[str] = ray_address_option("--workers cores")
    progress: bool = True
    # real: each video also gets a damaged copy (real_world.py, drawn from the video's seed, a
    # real encoder included), stored losslessly beside its clean frames as d.png / d0.png ..;
    # training reads both. seed: clean frames only (DALI and torch degrade them while training).
    preset: str = "seed"
    real: RealSpec = field(default_factory=RealSpec)
    # real: draws per video, so a few videos still teach many kinds of damage (1: `degrade`'s one draw)
    real_draws: int = option(1, "--preset real: damage draws per video; its frames are split into this many runs, each "
                                "damaged by its own draw (more kinds of damage from few videos; a damaged copy is made per draw).")

    def __post_init__(self):
        self.src, self.out = Path(self.src), Path(self.out)
        self.num_nodes = 1 if self.num_nodes is None else self.num_nodes
        self.node_rank = 0 if self.node_rank is None else self.node_rank
        if self.split_file is not None:
            self.split_file = Path(self.split_file)
        if self.use_first_100:
            self.limit = min(self.limit or 100, 100)
        checks = [
            (self.image_format in IMAGE_FORMATS, f"--format must be one of {', '.join(IMAGE_FORMATS)}"),
            (2 <= self.quality <= 31, f"--quality {self.quality}: ffmpeg's JPEG -q:v, from 2 (best) to 31"),
            (self.frame_stride >= 1, f"--frame-stride {self.frame_stride}: must be >= 1"),
            (self.clip_len >= 1 and self.clip_len % 2 == 1, f"--clip-len {self.clip_len}: must be odd and >= 1 (1, 3, 5): the restored frame is the centre"),
            (self.clip_stride >= 1, f"--clip-stride {self.clip_stride}: must be >= 1"),
            (self.layout in LAYOUTS, f"--layout {self.layout}: choose from {', '.join(LAYOUTS)}"),
            (not (self.size and self.short_side), "give --size or --short-side, not both"),
            (self.max_frames >= self.clip_len, f"--max-frames {self.max_frames}: must be >= --clip-len ({self.clip_len}): a window fits in one shard"),
            (self.max_size_mb > 0, f"--max-size-mb {self.max_size_mb}: must be > 0"),
            (self.mix_window >= 1, f"--mix-window {self.mix_window}: must be >= 1"),
            (self.workers >= 1, f"--workers {self.workers}: must be >= 1"),
            (self.limit is None or self.limit >= 1, f"--limit {self.limit}: must be >= 1"),
            (self.num_nodes >= 1, f"--num-nodes {self.num_nodes}: must be >= 1"),
            (0 <= self.node_rank < max(self.num_nodes, 1), f"--node-rank {self.node_rank}: must be in 0..{self.num_nodes - 1} (--num-nodes {self.num_nodes})"),
            ("." not in self.prefix and "/" not in self.prefix, "prefix may not contain '.' or '/'"),
            (self.preset in PRESETS, f"--preset {self.preset}: choose from {', '.join(PRESETS)}"),
            (self.real_draws >= 1, f"--real-draws {self.real_draws}: must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.size and any(s <= 0 or s % 2 for s in self.size):
            raise ValueError("--size needs positive, even width and height")
        if self.short_side is not None and (self.short_side <= 0 or self.short_side % 2):
            raise ValueError("--short-side needs a positive, even number (4:2:0 JPEG frames have even sides)")
        check_engine(self.engine, self.ray_address, None)

    def output_params(self) -> dict:
        d = asdict(self)
        params = {k: d[k] for k in OUTPUT_PARAMS}
        params["split_file"] = str(self.split_file) if self.split_file else None
        params["size"] = list(self.size) if self.size else None
        if self.clip_len > 1:  # absent for per-frame shards, so their manifests stay as they were
            params |= {"clip_len": self.clip_len, "clip_stride": self.clip_stride}
            if self.layout != "clips":  # absent for clips, so earlier manifests stay as they were
                params["layout"] = self.layout
        if self.preset != "seed":  # likewise absent for the seed preset
            params |= {"preset": self.preset, "real": self.real.to_json()}
            if self.real_draws > 1:  # absent at 1, so earlier real manifests stay as they were
                params["real_draws"] = self.real_draws
        return params

    @property
    def file_prefix(self) -> str:
        # Per-node names, so K nodes writing into one OUT never collide.
        return self.prefix if self.num_nodes == 1 else f"{self.prefix}-n{self.node_rank:03d}"
