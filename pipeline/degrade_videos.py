"""`vrestore degrade`: apply the degradation spec to videos, to make test inputs.

Same code path as training's reference ops (pipeline.degradations), seeded per video, encoded
losslessly so compression adds no error of its own.
"""
import hashlib
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from pipeline.degradations import DegradationSpec, degrade
from pipeline.atomic import remove_dead_temp_files
from pipeline.discover import check_output_folder, list_source_videos, output_names, refuse_replacing_inputs
from pipeline.probe import UnreadableVideo, probe_video
from pipeline.video_io import CODECS, VideoReadError, VideoWriter, read_frames


@dataclass
class DegradeConfig:
    src: Path
    dst: Path
    spec: DegradationSpec = field(default_factory=DegradationSpec)
    split_file: Optional[Path] = None  # UCF-101 list selecting videos under src
    seed: int = 0
    codec: str = "ffv1"  # lossless by default
    save_masks: bool = False  # also write <name>_mask.avi: 255 inside the boxes
    batch_size: int = 16
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self):
        self.src, self.dst = Path(self.src), Path(self.dst)
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}; choose from {', '.join(CODECS)}")
        if self.batch_size < 1:
            raise ValueError("--batch-size must be >= 1")


@dataclass
class DegradeResult:
    done: list = field(default_factory=list)  # (relative path, frames)
    skipped: list = field(default_factory=list)  # outputs that already existed
    failed: list = field(default_factory=list)  # (relative path, reason)
    partial: list = field(default_factory=list)  # (relative path, ffmpeg's complaint): degraded what decoded


def video_seed(seed: int, rel: str) -> int:
    """A stable per-video seed: the same video gets the same boxes whatever else is in the folder."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{rel}".encode()).digest()[:8], "little") & (2**63 - 1)


def output_path(dst_root: Path, rel: str, codec: str) -> Path:
    """Where one video's output goes when its name clashes with no other input's."""
    return dst_root / Path(rel).with_suffix("." + CODECS[codec].container)


def mask_path(video_out: Path) -> Path:
    return video_out.with_name(f"{video_out.stem}_mask{video_out.suffix}")


def degrade_video(src: Path, dst: Path, spec: DegradationSpec, seed: int, codec="ffv1", save_masks=False, batch_size=16,
                  on_frames=None, warnings: list = None) -> int:
    """Degrade `src` into `dst` (and its mask); returns the frame count. With a `warnings` list,
    a video ffmpeg complains about but decodes is degraded as far as it decodes (see read_frames)."""
    info = probe_video(src)
    generator = torch.Generator().manual_seed(seed)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        out = stack.enter_context(VideoWriter(dst, info.width, info.height, info.fps, codec))
        masks = stack.enter_context(VideoWriter(mask_path(dst), info.width, info.height, info.fps, codec, gray=True)) if save_masks else None
        for frames in read_frames(src, batch_size, info, warnings=warnings):
            x = torch.from_numpy(frames.copy()).permute(0, 3, 1, 2).float()
            degraded, mask = degrade(x, spec, generator)
            out.write(degraded.permute(0, 2, 3, 1).to(torch.uint8).numpy())
            if masks:
                masks.write(mask[:, 0].numpy().astype(np.uint8) * 255)
            if on_frames:
                on_frames(len(frames))
    return out.frames


def degrade_videos(cfg: DegradeConfig) -> DegradeResult:
    single_out = cfg.dst if cfg.src.is_file() and cfg.dst.suffix else None
    exclude = () if single_out else check_output_folder(cfg.src, cfg.dst, "DST")
    entries, missing = list_source_videos(cfg.src, cfg.split_file, exclude)
    root = cfg.src.parent if cfg.src.is_file() else cfg.src
    rels = [e.rel for e in entries]
    names = {rels[0]: single_out} if single_out else {rel: cfg.dst / n for rel, n in output_names(rels, "." + CODECS[cfg.codec].container).items()}
    outputs = list(names.values())
    refuse_replacing_inputs([root / rel for rel in rels], outputs + ([mask_path(p) for p in outputs] if cfg.save_masks else []))
    remove_dead_temp_files(single_out.parent if single_out else cfg.dst)
    result = DegradeResult(failed=[(rel, "listed in the split file but not found") for rel in missing])
    bar = tqdm(total=len(rels), unit="video", disable=not cfg.progress, dynamic_ncols=True)
    say = bar.write if cfg.progress else (lambda line: None)  # --quiet: the summary alone
    frames = [0]

    def count(n):
        frames[0] += n
        bar.set_postfix(frames=frames[0], refresh=False)
    for rel in rels:
        out = names[rel]
        if out.exists() and not cfg.overwrite:
            result.skipped.append(rel)
        else:
            try:
                warnings = []
                n = degrade_video(root / rel, out, cfg.spec, video_seed(cfg.seed, rel), cfg.codec, cfg.save_masks, cfg.batch_size,
                                  count, warnings)
                result.done.append((rel, n))
                if warnings:
                    result.partial.append((rel, warnings[-1]))
                    say(f"partial: {rel}: {warnings[-1]} (degraded the {n} frames that decoded)")
            except (UnreadableVideo, VideoReadError, RuntimeError, OSError) as e:
                result.failed.append((rel, str(e)))
                say(f"failed: {rel}: {e}")
        bar.update(1)
    bar.close()
    return result
