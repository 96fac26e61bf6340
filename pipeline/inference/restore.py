"""`vrestore restore`: its config, the plan (every check on inputs and outputs before any work),
and the run over all videos, here or on Ray workers. The rooms it draws on: restorer.py (the
generator and its memory plan), restore_video.py (one video's stream), originals.py (matching
originals and masks), video_scores.py, report.py (the rows, table and files)."""
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from vrestore.models.weights import load_network
from vrestore.pipeline.atomic import check_writable, kept_only_if_used, marker_path, remove_dead_temp_files
from vrestore.pipeline.host.lease import exclusive
from vrestore.pipeline.cluster.jobs import run_jobs
from vrestore.pipeline.cluster.ray_engine import check_engine, engine_option, ray_address_option, ray_workers_option
from vrestore.pipeline.inference.gallery import GALLERY, gallery_items, write_gallery
from vrestore.pipeline.inference.memory_cap import check_max_memory
from vrestore.pipeline.inference.originals import Originals, masks_among
from vrestore.pipeline.inference.report import RestoreResult, write_report
from vrestore.pipeline.inference.restore_video import BATCH_FRAMES, CODEC, NIQE_FRAMES, restore_video
from vrestore.pipeline.inference.restorer import Restorer
from vrestore.pipeline.host.limits import cpu_count
from vrestore.pipeline.options import option
from vrestore.pipeline.media.discover import (PARTIAL, VIDEOS_LOCK, check_output_folder, list_source_videos, note_partial,
                                              output_names, refuse_replacing_inputs)
from vrestore.pipeline.media.video_io import CODECS, VIDEO_FAILURES
from vrestore.pipeline.devices import AMP_MODES

@dataclass
class RestoreConfig:
    input: Path  # a video, or a folder searched recursively (the command's argument)
    weights: Path = option(Path("saved_models/generator.pth"), "A generator.pth written by training.")
    output_dir: Path = option(Path("restored_videos"), "Restored videos, in INPUT's relative layout.", path={"file_okay": False})
    batch_size: int = option(BATCH_FRAMES, "Frames through the generator at once.")
    codec: str = option(CODEC, "mjpeg: .avi at JPEG quality 2 (as the original project wrote); ffv1/png: lossless .avi; "
                        "h264: lossless x264 .mp4.", choices=CODECS)
    device: str = option("auto", "auto (cuda when available), cuda, cuda:N, cpu.")
    amp: str = option("auto", "auto: bf16 (or fp16) autocast on a GPU, fp32 on the CPU.", choices=AMP_MODES)
    channels_last: bool = option(True, "Run the generator in channels_last memory format.")
    tile: Optional[int] = option(None, "Restore large frames in overlapping tiles of N pixels (a multiple of the generator's "
                                 "2^depth) to bound memory.")
    niqe_frames: int = option(NIQE_FRAMES, "NIQE (a no-reference score, lower is more natural) of input and output, and of the original "
                              "when given, from this many evenly spaced frames per video; 0 turns it off.")
    max_memory: Optional[float] = option(None, "GiB the generator's tensors may take at once (per process; each --engine ray "
                                         "worker has its own). Frames go through in smaller passes, then in tiles, to stay under "
                                         "it. Default: half of what the job may use at start (its cgroup's limit when lower than "
                                         "the host's free memory), split between Ray's CPU workers.")
    originals: Optional[Path] = option(None, "Clean originals (a file, or a folder matched by relative path, then by file name): "
                                       "report PSNR/SSIM.", path={"exists": True})
    report: Optional[Path] = option(None, "Write the figures as JSON here and as CSV beside it.", path={"dir_okay": False})
    side_by_side: bool = option(False, "Also write OUTPUT_DIR/side_by_side/NAME video and .png: degraded | restored | original.")
    gallery: bool = option(False, "Also write OUTPUT_DIR/gallery.html and gallery_files/: per video restored in this run, "
                           "degraded | restored | original players that play and scrub together, stills and scores; opens from disk.")
    overwrite: bool = option(False, "Replace existing outputs (default: skip them).")
    engine: str = engine_option("Ray workers (one per GPU, else one per CPU core), one video per task")
    ray_address: Optional[str] = ray_address_option()
    ray_workers: Optional[int] = ray_workers_option("one per GPU in the cluster, else one per CPU, at most the cluster's CPUs")
    progress: bool = True

    def __post_init__(self):
        self.input, self.weights, self.output_dir = Path(self.input), Path(self.weights), Path(self.output_dir)
        check_engine(self.engine, self.ray_address, self.ray_workers)
        self.originals = Path(self.originals) if self.originals else None
        self.report = Path(self.report) if self.report else None
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}; choose from {', '.join(CODECS)}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}")
        if self.batch_size < 1:
            raise ValueError("--batch-size must be >= 1")
        if self.niqe_frames < 0:
            raise ValueError(f"--niqe-frames {self.niqe_frames}: must be >= 0 (0 turns NIQE off)")
        check_max_memory(self.max_memory)  # here: before any Ray worker builds a Restorer
        if self.originals and not self.originals.exists():
            raise ValueError(f"--originals: {self.originals} not found")


@dataclass
class RestoreJob:
    """One video's work, planned before any starts (so a bad plan fails before any output)."""
    rel: str
    src: Path
    dst: Path
    original: Optional[Path]
    comparison: Optional[Path]
    codec: str
    batch_size: int
    niqe_frames: int = NIQE_FRAMES
    replace: bool = False  # --overwrite, or an earlier run's partial output of this video


def plan_restore(cfg: RestoreConfig) -> tuple:
    """(jobs, skipped, no_original, unreadable): every check on inputs and outputs, before any work."""
    exclude = check_output_folder(cfg.input, cfg.output_dir, "--output-dir")
    if cfg.originals is not None and cfg.originals.is_file() and cfg.input.is_dir():
        raise ValueError(f"--originals {cfg.originals} is one file but INPUT {cfg.input} is a folder: give the originals' folder")
    # the originals are inputs too: the output folder may not be theirs, and earlier outputs
    # inside their folder are never taken for originals
    skip_in_originals = check_output_folder(cfg.originals, cfg.output_dir, "--output-dir") if cfg.originals and cfg.originals.is_dir() else ()
    if cfg.report is not None and cfg.report.suffix.lower() == ".csv":
        raise ValueError(f"--report {cfg.report}: give the JSON report's name; its CSV is written beside it (.csv)")
    entries, unreadable = list_source_videos(cfg.input, exclude=exclude)
    root = cfg.input.parent if cfg.input.is_file() else cfg.input
    masks = masks_among([root / e.rel for e in entries])
    entries = [e for e in entries if root / e.rel not in masks]
    ext = "." + CODECS[cfg.codec].container
    names = output_names([e.rel for e in entries], ext)
    inputs = [root / e.rel for e in entries] + ([cfg.originals] if cfg.originals and cfg.originals.is_file() else []) + [cfg.weights]
    report_files = [cfg.report, cfg.report.with_suffix(".csv")] if cfg.report else []
    report_files += [cfg.output_dir / GALLERY] if cfg.gallery else []
    found = Originals(cfg.originals, skip_in_originals) if cfg.originals else None  # the folder walked once
    originals = {e.rel: found.find(e.rel) for e in entries} if found else {}
    refuse_replacing_inputs(inputs + [o for o in originals.values() if o], [cfg.output_dir / n for n in names.values()] + report_files)
    check_writable(cfg.output_dir, "--output-dir")  # a read-only or blocked folder: one line before any work
    if cfg.side_by_side:  # every folder this run writes in, not only the first
        check_writable(cfg.output_dir / "side_by_side", "--side-by-side")
    if cfg.report:
        check_writable(cfg.report.parent, "--report")  # now, not after every video was restored
        csv_path = cfg.report.with_suffix(".csv")
        if csv_path.exists() and not cfg.report.exists() and not cfg.overwrite:
            raise ValueError(f"--report: {csv_path} exists and is no earlier report's CSV; choose another --report or pass --overwrite")
    remove_dead_temp_files(cfg.output_dir)
    jobs, skipped, no_original = [], [], []
    for e in entries:
        dst = cfg.output_dir / names[e.rel]
        partial = marker_path(dst, PARTIAL).exists()  # an earlier run restored only part of it: not done
        if dst.exists() and not cfg.overwrite and not partial:
            skipped.append(e.rel)
            continue
        original = originals.get(e.rel)
        if cfg.originals and original is None:
            no_original.append(e.rel)
        comparison = cfg.output_dir / "side_by_side" / names[e.rel] if cfg.side_by_side else None
        jobs.append(RestoreJob(e.rel, root / e.rel, dst, original, comparison, cfg.codec, cfg.batch_size, cfg.niqe_frames,
                               cfg.overwrite or partial))
    return jobs, skipped, no_original, unreadable


def restore_job(restorer: Restorer, job: RestoreJob, on_frames=None) -> tuple:
    """("done", VideoReport) or ("failed", reason): a video that fails fails alone."""
    try:
        report = restore_video(job.src, job.dst, restorer, job.codec, job.batch_size, job.original, job.comparison, on_frames,
                               job.niqe_frames, job.replace)
    except (*VIDEO_FAILURES, torch.OutOfMemoryError) as err:
        return "failed", str(err)
    report.video = job.rel
    return "done", report


def collect(result: RestoreResult, job: RestoreJob, outcome: tuple, say) -> None:
    kind, value = outcome
    if kind == "failed":
        result.failed.append((job.rel, value))
        return
    value.output = str(job.dst)  # as planned (a Ray worker saw the absolute path)
    result.videos.append(value)
    note_partial(job.dst, value.warning)
    if value.plan and value.plan not in result.plans:  # once per frame size (and Ray worker's plan)
        result.plans.append(value.plan)
        say(f"generator plan: {value.plan}")
    for note in (value.warning and f"partial: {job.rel}: {value.warning} (restored the frames that decoded)",
                 value.audio and f"{job.rel}: {value.audio}", value.not_carried and f"{job.rel}: {value.not_carried}"):
        if note:
            say(note)
    if value.warning:
        result.partial.append((job.rel, value.warning))


def restore_videos(cfg: RestoreConfig) -> RestoreResult:
    """Restore every planned video with the local generator (`engine` "local") or on Ray workers,
    one per GPU or CPU slot (`engine` "ray"); one report for the whole folder either way, its
    rows in input order. One run at a time writes into --output-dir (OUTPUT_DIR's lock, which
    `degrade` takes too): a second is refused in one line."""
    with kept_only_if_used(cfg.output_dir):
        check_writable(cfg.output_dir, "--output-dir")
        with exclusive(cfg.output_dir / VIDEOS_LOCK, f"--output-dir {cfg.output_dir}"):
            return _restore_videos(cfg)


def _restore_videos(cfg: RestoreConfig) -> RestoreResult:
    if cfg.engine == "local":
        restorer = Restorer(cfg.weights, cfg.device, cfg.amp, cfg.channels_last, cfg.tile, cfg.max_memory)  # weights first: fail fast
        make_state, g = (lambda: restorer), restorer.G.cfg
    else:
        g = load_network(cfg.weights, "generator").cfg  # fail fast on the driver, not in every worker
        # each CPU actor takes its share of the node's memory; a GPU actor has its own device
        share = 1 if cfg.device.startswith("cuda") else (cfg.ray_workers or cpu_count())
        device = "cuda" if cfg.device.startswith("cuda") else cfg.device  # Ray numbers each actor's GPU as its only one
        make_state = functools.partial(Restorer, cfg.weights.resolve(), device, cfg.amp, cfg.channels_last, cfg.tile,
                                       cfg.max_memory, share)
    jobs, skipped, no_original, unreadable = plan_restore(cfg)
    model = {"weights": str(cfg.weights), "trained_for_preset": g.preset, "arch": g.arch, "frames": g.frames,
             "frame_spacing": g.frame_spacing}
    result = RestoreResult(skipped=skipped, no_original=no_original, failed=list(unreadable), model=model)
    frames_of = lambda outcome: outcome[1].frames if outcome[0] == "done" else 0
    try:
        outcomes = run_jobs(jobs, make_state, restore_job, frames_of, "restore", cfg.engine, cfg.device, cfg.ray_address,
                            cfg.ray_workers, cfg.progress)
    finally:  # stopped by a signal: the workers are gone now, and so go their half-written files
        remove_dead_temp_files(cfg.output_dir)
    say = tqdm.write if cfg.progress else (lambda line: None)
    for i, job in enumerate(jobs):  # in input order, whichever engine ran them
        collect(result, job, outcomes[i], say)
    if cfg.report:
        write_report(cfg.report, result)
    if cfg.gallery and result.videos:
        result.gallery = write_gallery(cfg.output_dir / GALLERY, gallery_items(result, cfg.input), result.model)
    return result
