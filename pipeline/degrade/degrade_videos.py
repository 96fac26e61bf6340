"""`vrestore degrade`: apply the degradation spec to videos, to make test inputs.

Same code path as training's reference ops (vrestore.pipeline.degrade.degradations), seeded per video, encoded
losslessly so compression adds no error of its own.
"""
import hashlib
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from vrestore.pipeline.atomic import check_writable, fit_name, kept_only_if_used, marker_path, remove_dead_temp_files, temp_path_for
from vrestore.pipeline.host.lease import exclusive
from vrestore.pipeline.cluster.jobs import run_jobs
from vrestore.pipeline.cluster.ray_engine import check_engine, engine_option, ray_address_option, ray_workers_option
from vrestore.pipeline.degrade.degradations import DegradationSpec, add_boxes, degrade
from vrestore.pipeline.degrade.real_world import PRESETS, RealSpec, damage_codec, draw, frame_damage
from vrestore.pipeline.options import option
from vrestore.pipeline.media.discover import (PARTIAL, VIDEOS_LOCK, check_output_folder, list_source_videos, note_partial,
                                              output_names, refuse_replacing_inputs)
from vrestore.pipeline.media.probe import probe_video
from vrestore.pipeline.media.video_io import CODECS, VIDEO_FAILURES, VideoWriter, not_carried, read_frames


BATCH_FRAMES = 16  # frames degraded at once by default (degrade --batch-size)
CODEC = "ffv1"  # degrade's output codec by default: lossless, so compression adds no damage of its own

@dataclass
class DegradeConfig:
    src: Path  # a video, or a folder searched recursively (the command's arguments)
    dst: Path
    spec: DegradationSpec = field(default_factory=DegradationSpec)
    preset: str = "seed"  # seed: blur, noise, boxes (spec); real: real_world.py (real); the CLI's --preset (real_options)
    real: RealSpec = field(default_factory=RealSpec)
    split_file: Optional[Path] = option(None, "UCF-101 trainlist/testlist selecting videos under SRC (the file from the current "
                                                   "folder, else from SRC).")
    seed: int = option(0, "Base seed; each video's seed comes from it and the video's path.")
    codec: str = option(CODEC, "Output codec; ffv1 and png are lossless (the default: compression adds no error of its own).",
                        choices=CODECS)
    save_masks: bool = option(False, "Also write NAME_mask.avi: 255 inside the occlusion boxes.")
    engine: str = engine_option("Ray workers (one per CPU core), one video per task")
    ray_address: Optional[str] = ray_address_option()
    ray_workers: Optional[int] = ray_workers_option("one per CPU, at most the cluster's")
    batch_size: int = option(BATCH_FRAMES, "Frames degraded at once.")
    overwrite: bool = option(False, "Replace existing outputs (default: skip them).")
    progress: bool = True

    def __post_init__(self):
        self.src, self.dst = Path(self.src), Path(self.dst)
        check_engine(self.engine, self.ray_address, self.ray_workers)
        if self.preset not in PRESETS:
            raise ValueError(f"--preset {self.preset}: choose from {', '.join(PRESETS)}")
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
    notes: list = field(default_factory=list)  # (relative path, what its output leaves out: subtitles, bits past 8)


def video_seed(seed: int, rel: str) -> int:
    """A stable per-video seed: the same video gets the same boxes whatever else is in the folder."""
    return int.from_bytes(hashlib.sha256(os.fsencode(f"{seed}/{rel}")).digest()[:8], "little") & (2**63 - 1)


def output_path(dst_root: Path, rel: str, codec: str) -> Path:
    """Where one video's output goes when its name clashes with no other input's."""
    return dst_root / Path(rel).with_suffix("." + CODECS[codec].container)


def mask_path(video_out: Path) -> Path:
    return video_out.with_name(fit_name(f"{video_out.stem}_mask{video_out.suffix}"))


def degrade_video(src: Path, dst: Path, spec: DegradationSpec, seed: int, codec=CODEC, save_masks=False, batch_size=BATCH_FRAMES,
                  on_frames=None, warnings: list = None, real: Optional[RealSpec] = None, notes: list = None, replace: bool = True) -> int:
    """Degrade `src` into `dst` (and its mask); returns the frame count. With a `warnings` list,
    a video ffmpeg complains about but decodes is degraded as far as it decodes (see read_frames);
    `notes` gets what the output leaves out of the source (subtitles, bits past 8).
    `real`: the real preset (real_world.py) instead of the seed's blur, noise and boxes; its
    codec stage encodes the damaged frames with the drawn encoder into a file beside `dst`,
    removed afterwards, and decodes them again."""
    info = probe_video(src)
    if notes is not None:
        notes += not_carried(info)
    generator = torch.Generator().manual_seed(seed)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        out = stack.enter_context(VideoWriter(dst, info.width, info.height, info.fps, codec, sample_aspect=info.sample_aspect,
                                              replace=replace, color=info.color))
        masks = stack.enter_context(VideoWriter(mask_path(dst), info.width, info.height, info.fps, codec, gray=True,
                                                sample_aspect=info.sample_aspect, replace=replace)) if save_masks else None

        def emit(x: torch.Tensor, mask: Optional[torch.Tensor] = None):
            out.write(x.permute(0, 2, 3, 1).to(torch.uint8).numpy())
            if masks:
                masks.write(np.zeros((len(x), info.height, info.width), np.uint8) if mask is None else mask[:, 0].numpy().astype(np.uint8) * 255)
            if on_frames:
                on_frames(len(x))

        as_nchw = lambda f: torch.from_numpy(f.copy()).permute(0, 3, 1, 2).float()
        frames = (as_nchw(f) for f in read_frames(src, batch_size, info, warnings=warnings))
        if real is None:
            for x in frames:
                emit(*degrade(x, spec, generator))
            return out.frames
        d = draw(real, seed)
        damaged = (frame_damage(x, d, generator) for x in frames)
        coded = None
        try:
            if d.codec is not None:  # through the drawn encoder and back
                lossy = damage_codec(d.codec, info.width, info.height)
                coded = temp_path_for(dst.with_name(f"{dst.stem}.codec.{lossy.container}"))
                with VideoWriter(coded, info.width, info.height, info.fps, lossy) as enc:  # untagged both ways (BT.601): only the encoder's damage counts
                    for y in damaged:
                        enc.write(y.permute(0, 2, 3, 1).to(torch.uint8).numpy())
                damaged = (as_nchw(f) for f in read_frames(coded, batch_size))
            for y in damaged:
                emit(*add_boxes(y, spec, generator)) if real.boxes else emit(y)
        finally:
            if coded is not None:
                coded.unlink(missing_ok=True)
    return out.frames


@dataclass
class DegradeJob:
    rel: str
    src: Path
    dst: Path
    spec: DegradationSpec
    seed: int
    codec: str
    save_masks: bool
    batch_size: int
    real: Optional[RealSpec] = None  # the real preset; None: the seed's
    replace: bool = False  # --overwrite, or an earlier run's partial output of this video


def degrade_job(_state, job: DegradeJob, on_frames=None) -> tuple:
    """("done", frames, warning or None, notes) or ("failed", reason): a video that fails fails alone."""
    warnings, notes = [], []
    try:
        n = degrade_video(job.src, job.dst, job.spec, job.seed, job.codec, job.save_masks, job.batch_size, on_frames, warnings, job.real,
                          notes, job.replace)
    except (*VIDEO_FAILURES, torch.OutOfMemoryError) as e:
        return "failed", str(e)
    return "done", n, warnings[-1] if warnings else None, notes


def degrade_videos(cfg: DegradeConfig) -> DegradeResult:
    """Degrade every selected video here (`engine` "local") or as Ray tasks (`engine` "ray");
    the same outputs either way (each video's seed comes from its path). One run at a time
    writes into DST (the folder's lock, which `restore` takes too)."""
    single_out = cfg.dst if cfg.src.is_file() and cfg.dst.suffix else None
    folder = single_out.parent if single_out else cfg.dst
    if single_out is None and cfg.dst.is_file():
        raise ValueError(f"DST {cfg.dst} is a file; give a folder for the degraded videos")
    with kept_only_if_used(folder):
        check_writable(folder, "DST")  # read-only or blocked: one line before any work
        with exclusive(folder / VIDEOS_LOCK, f"DST {folder}"):
            return _degrade_videos(cfg, single_out)


def _degrade_videos(cfg: DegradeConfig, single_out) -> DegradeResult:
    exclude = () if single_out else check_output_folder(cfg.src, cfg.dst, "DST")
    entries, missing = list_source_videos(cfg.src, cfg.split_file, exclude)
    root = cfg.src.parent if cfg.src.is_file() else cfg.src
    rels = [e.rel for e in entries]
    names = {rels[0]: single_out} if single_out else {rel: cfg.dst / n for rel, n in output_names(rels, "." + CODECS[cfg.codec].container).items()}
    outputs = list(names.values())
    refuse_replacing_inputs([root / rel for rel in rels], outputs + ([mask_path(p) for p in outputs] if cfg.save_masks else []))
    check_writable(single_out.parent if single_out else cfg.dst, "DST")  # read-only or blocked: one line before any work
    remove_dead_temp_files(single_out.parent if single_out else cfg.dst)
    result = DegradeResult(failed=list(missing))
    jobs = []
    for rel in rels:
        partial = marker_path(names[rel], PARTIAL).exists()  # an earlier run degraded only part of it: not done
        if names[rel].exists() and not cfg.overwrite and not partial:
            result.skipped.append(rel)
        else:
            jobs.append(DegradeJob(rel, root / rel, names[rel], cfg.spec, video_seed(cfg.seed, rel), cfg.codec, cfg.save_masks, cfg.batch_size,
                                  cfg.real if cfg.preset == "real" else None, cfg.overwrite or partial))
    frames_of = lambda outcome: outcome[1] if outcome[0] == "done" else 0
    # torch ops on the CPU on either engine, as the local engine runs them
    try:
        outcomes = run_jobs(jobs, _no_state, degrade_job, frames_of, "degrade", cfg.engine, "cpu", cfg.ray_address, cfg.ray_workers,
                            cfg.progress)
    finally:  # stopped by a signal: the workers are gone now, and so go their half-written files
        remove_dead_temp_files(single_out.parent if single_out else cfg.dst)
    say = tqdm.write if cfg.progress else (lambda line: None)  # --quiet: the summary alone
    for i, job in enumerate(jobs):  # in input order, whichever engine ran them
        outcome = outcomes[i]
        if outcome[0] == "failed":  # its line was printed as it failed
            result.failed.append((job.rel, outcome[1]))
            continue
        result.done.append((job.rel, outcome[1]))
        note_partial(job.dst, outcome[2])
        if outcome[2]:
            result.partial.append((job.rel, outcome[2]))
            say(f"partial: {job.rel}: {outcome[2]} (degraded the {outcome[1]} frames that decoded)")
        if outcome[3]:
            result.notes.append((job.rel, note := "; ".join(outcome[3])))
            say(f"{job.rel}: {note}")
    return result


def _no_state():
    return None
