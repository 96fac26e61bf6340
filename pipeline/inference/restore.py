"""`vrestore restore`: run a trained generator over videos, frame batches streamed through
ffmpeg pipes (memory stays flat however long the video), and measure it against originals.

The generator runs in eval mode (dropout off, running batch-norm statistics): in training mode
each frame would get its own noise and statistics and the video would flicker.
"""
import csv
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from vrestore.models import pad_to_multiple
from vrestore.models.weights import load_network
from vrestore.pipeline.atomic import atomic_path, check_writable, remove_dead_temp_files, write_json_atomic
from vrestore.pipeline.cluster import ray_engine
from vrestore.pipeline.cluster.ray_engine import check_engine
from vrestore.pipeline.devices import resolve_device
from vrestore.pipeline.evaluation.metrics import DEFINITIONS, VideoScores, to_255
from vrestore.pipeline.evaluation.niqe import NIQEUnavailable, frame_features, luminance, niqe_of_features, sample_indices
from vrestore.pipeline.evaluation.pictures import hwc_uint8, side_by_side, write_png
from vrestore.pipeline.inference.frame_windows import sliding_windows
from vrestore.pipeline.inference.gallery import GALLERY, gallery_items, write_gallery
from vrestore.pipeline.inference.memory_cap import budget_bytes, bytes_per_pixel, tile_for, windows_per_pass
from vrestore.pipeline.media.discover import VIDEO_EXTENSIONS, check_output_folder, list_source_videos, output_names, refuse_replacing_inputs
from vrestore.pipeline.media.probe import UnreadableVideo, probe_video
from vrestore.pipeline.media.video_io import CODECS, VideoReadError, VideoWriter, prefetched, read_frames
from vrestore.pipeline.precision import AMP_MODES, amp_dtype


@dataclass
class RestoreConfig:
    input: Path  # a video, or a folder searched recursively
    weights: Path = Path("saved_models/generator.pth")
    output_dir: Path = Path("restored_videos")
    batch_size: int = 8  # frames through the generator at once
    niqe_frames: int = 16  # NIQE of input and output (and original) on this many evenly spaced frames; 0: off
    codec: str = "mjpeg"  # .avi at JPEG quality 2, as the original project wrote; ffv1 lossless; h264 -> .mp4
    device: str = "auto"  # auto: cuda when available
    amp: str = "auto"  # auto: bf16/fp16 autocast on a GPU, fp32 on the CPU
    channels_last: bool = True
    tile: Optional[int] = None  # process frames in overlapping tiles of this side (bounds memory)
    max_memory: Optional[float] = None  # GiB for the generator's tensors; None: half the memory available at start
    originals: Optional[Path] = None  # a video, or a folder matched by relative path, then by stem
    report: Optional[Path] = None  # write JSON here and CSV beside it
    side_by_side: bool = False  # also output_dir/side_by_side/<name>.<ext> and .png
    gallery: bool = False  # also output_dir/gallery.html: the videos restored in this run, players in step (gallery.py)
    overwrite: bool = False
    engine: str = "local"  # local: this process; ray: Ray workers, one per GPU or CPU slot
    ray_address: Optional[str] = None  # with engine ray: a cluster to join; None starts a local instance
    ray_workers: Optional[int] = None  # with engine ray: actors (default: one per GPU, else one per CPU)
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
        if self.originals and not self.originals.exists():
            raise ValueError(f"--originals: {self.originals} not found")


class Restorer:
    """The generator on a device: windows of frames in, (N, H, W, 3) uint8 frames out."""

    def __init__(self, weights: Path, device="auto", amp="auto", channels_last=True, tile: Optional[int] = None,
                 max_memory: Optional[float] = None):
        self.device = resolve_device(device)
        self.G = load_network(weights, "generator").eval().to(self.device)
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.G = self.G.to(memory_format=self.fmt)
        self.multiple, self.frames = self.G.cfg.multiple, self.G.cfg.frames
        if tile is not None and (tile < self.multiple or tile % self.multiple):
            raise ValueError(f"--tile must be a multiple of {self.multiple} (this generator's 2^depth)")
        if max_memory is not None and max_memory <= 0:
            raise ValueError(f"--max-memory {max_memory:g}: must be > 0 (GiB)")
        self.tile = tile
        self.dtype = amp_dtype(amp, self.device)
        # memory: one window's peak bytes per pixel, measured once; the budget is fixed at start
        self.budget = budget_bytes(self.device, max_memory)
        self.per_pixel = bytes_per_pixel(self._forward, 3 * self.frames, self.multiple, self.device)
        self.plans = {}  # (H, W) -> (windows per pass, tile or None), said once per size

    def plan(self, h: int, w: int) -> tuple:
        """Windows per forward pass and the tile side (None: whole frames) for H x W frames."""
        if (h, w) not in self.plans:
            tile = self.tile if self.tile and (h > self.tile or w > self.tile) else None
            ph, pw = (-(-h // self.multiple) * self.multiple, -(-w // self.multiple) * self.multiple) if tile is None else (tile, tile)
            n = windows_per_pass(self.per_pixel, ph, pw, self.budget)
            if n == 0 and tile is None:  # not one whole frame fits: tiles that do
                tile = tile_for(self.per_pixel, self.budget, self.multiple)
                n = max(1, windows_per_pass(self.per_pixel, tile, tile, self.budget))
            self.plans[(h, w)] = (max(n, 1), tile)
        return self.plans[(h, w)]

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else nullcontext()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Any size: mirror-pad to the generator's multiple, run, crop back (never resize)."""
        padded, crop_back = pad_to_multiple(x, self.multiple)
        with self._autocast():
            return crop_back(self.G(padded.contiguous(memory_format=self.fmt))).float()

    def _to_input(self, part: np.ndarray) -> torch.Tensor:
        """(N, T, H, W, 3) uint8 -> (N, 3T, H, W) float in [-1, 1], frame-major as training stacks them."""
        n, t, h, w, _ = part.shape
        x = torch.from_numpy(part).to(self.device, non_blocking=True).permute(0, 2, 3, 1, 4).reshape(n, h, w, t * 3)
        return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1)

    def _tiled(self, part: np.ndarray, tile: int) -> np.ndarray:
        """Overlapping tiles; each keeps only its centre, so seams fall where both sides saw
        `overlap` pixels of context. Each tile is converted from and back to uint8 on its own,
        so no float copy of the whole frame is ever made (memory: the tile's, see plan)."""
        n, _, h, w, _ = part.shape
        overlap = min(32, tile // 4)
        step = tile - 2 * overlap
        out = np.empty((n, h, w, 3), np.uint8)
        for y0 in range(0, h, step):
            for x0 in range(0, w, step):
                y1, x1 = min(y0 + step, h), min(x0 + step, w)
                ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)
                y = self._forward(self._to_input(part[:, :, ya : min(y1 + overlap, h), xa : min(x1 + overlap, w)]))
                out[:, y0:y1, x0:x1] = hwc_uint8(to_255(y[..., y0 - ya : y1 - ya, x0 - xa : x1 - xa]))
        return out

    @torch.no_grad()
    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """(N, T, H, W, 3) uint8 windows (frames t-k .. t+k) -> (N, H, W, 3) restored frames t;
        a single-frame generator also takes (N, H, W, 3)."""
        if windows.ndim == 4:
            windows = windows[:, None]
        if not windows.flags.writeable:  # e.g. np.frombuffer over bytes: torch wants writable memory
            windows = windows.copy()
        n, _, h, w, _ = windows.shape
        per_pass, tile = self.plan(h, w)
        out = []
        for i in range(0, n, per_pass):  # a pass at a time: its float copy and activations bounded
            part = windows[i : i + per_pass]
            out.append(self._tiled(part, tile) if tile else hwc_uint8(to_255(self._forward(self._to_input(part)))))
        return out[0] if len(out) == 1 else np.concatenate(out)

    def stream(self, batches):
        """Yield (input frames, restored frames) for batches of consecutive frames of one video,
        each frame restored from its mirrored window of neighbours."""
        for centre, windows in sliding_windows(batches, self.frames):
            yield centre, self(windows)


# VideoScores.result() names -> the report's column stems
RESULT_NAMES = {"psnr": "psnr", "ssim": "ssim", "psnr_inside_boxes": "psnr_boxes", "psnr_outside_boxes": "psnr_outside",
                "temporal_psnr": "temporal_psnr"}


@dataclass
class VideoReport:
    video: str  # relative to INPUT
    output: str
    frames: int
    fps: str
    size: str
    seconds: float
    original: Optional[str] = None
    mask: Optional[str] = None  # NAME_mask.* beside the input: in/out-of-box scores
    # against the original, over all frames: mean per-frame PSNR and SSIM; PSNR pooled inside
    # and outside the boxes; temporal PSNR (consecutive-frame differences). None: not measured.
    psnr_input: Optional[float] = None
    psnr_restored: Optional[float] = None
    ssim_input: Optional[float] = None
    ssim_restored: Optional[float] = None
    psnr_boxes_input: Optional[float] = None
    psnr_boxes_restored: Optional[float] = None
    psnr_outside_input: Optional[float] = None
    psnr_outside_restored: Optional[float] = None
    temporal_psnr_input: Optional[float] = None
    temporal_psnr_restored: Optional[float] = None
    # NIQE (no reference, lower is more natural; evaluation/niqe.py) of up to --niqe-frames
    # evenly spaced frames: of the input and the output always, of the original when given
    niqe_input: Optional[float] = None
    niqe_restored: Optional[float] = None
    niqe_original: Optional[float] = None
    niqe_note: Optional[str] = None  # why there is no NIQE (frames under 96x96)
    sums: Optional[dict] = None  # {"input", "restored"}: VideoScores.sums(), pooled into the "all" row
    mismatch: Optional[str] = None  # why no figures, when an original was there but did not pair
    warning: Optional[str] = None  # ffmpeg complained but frames decoded: restored what decoded (partial)
    audio: Optional[str] = None  # how the audio was carried, when not copied as it was

    @property
    def psnr_gain(self):
        return None if self.psnr_restored is None else self.psnr_restored - self.psnr_input


@dataclass
class RestoreResult:
    videos: list = field(default_factory=list)  # VideoReport
    skipped: list = field(default_factory=list)  # outputs that already existed
    partial: list = field(default_factory=list)  # (video, ffmpeg's complaint): restored what decoded
    failed: list = field(default_factory=list)  # (video, reason)
    no_original: list = field(default_factory=list)
    model: dict = field(default_factory=dict)  # what the generator is: preset it was trained for, arch, frames
    gallery: Optional[Path] = None  # gallery.html, when asked for and written


class FrameQueue:
    """The next n frames of a stream of frame batches, whatever its batch sizes (the restored
    stream comes in other chunks than the originals' reader gives)."""

    def __init__(self, batches):
        self.batches, self.buf = batches, []

    def take(self, n: int):
        while len(self.buf) < n:
            batch = next(self.batches, None)
            if batch is None:
                break
            self.buf.extend(batch)
        out, self.buf = self.buf[:n], self.buf[n:]
        return np.stack(out) if out else None

    def exhausted(self) -> bool:
        return self.take(1) is None


class FrameScores:
    """The input's and the output's scores against the original, on the frames in memory
    (before encoding): vrestore.pipeline.evaluation.metrics.VideoScores for each."""

    def __init__(self):
        self.input, self.restored = VideoScores(), VideoScores()

    def add(self, degraded, restored, original, mask=None):
        to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float()
        o, m = to(original), None if mask is None else torch.from_numpy(mask[..., :1] > 127).permute(0, 3, 1, 2)
        self.input.add(to(degraded), o, m)
        self.restored.add(to(restored), o, m)

    def sums(self) -> dict:
        return {"input": self.input.sums(), "restored": self.restored.sums()}

    def means(self) -> dict:
        out = {}
        for which, scores in (("input", self.input), ("restored", self.restored)):
            out |= {f"{RESULT_NAMES[k]}_{which}": v for k, v in scores.result().items() if k in RESULT_NAMES}
        return out


def pair_check(info, original_info) -> Optional[str]:
    if (info.width, info.height) != (original_info.width, original_info.height):
        return f"size {info.width}x{info.height} but original {original_info.width}x{original_info.height}"
    if info.fps != original_info.fps:
        return f"{float(info.fps):g} fps but original {float(original_info.fps):g} fps"
    return None


class NIQEPool:
    """NIQE features of up to `max_frames` evenly spaced frames per stream (input, restored,
    original), pooled into one score per stream at the end (evaluation/niqe.py)."""

    def __init__(self, count: Optional[int], max_frames: int):
        # without a frame count in the header: every 25th frame, up to max_frames
        self.wanted = set(sample_indices(count, max_frames)) if count else set(range(0, 25 * max_frames, 25))
        self.feats, self.problem = {}, None

    def add(self, first: int, streams: dict) -> None:
        for i in range(len(next(iter(streams.values())))):
            if first + i in self.wanted and self.problem is None:
                for name, frames in streams.items():
                    try:
                        self.feats.setdefault(name, []).append(frame_features(luminance(frames[i])))
                    except NIQEUnavailable as e:
                        self.problem = str(e)

    def scores(self) -> dict:
        if self.problem:
            return {}
        out = {}
        for name, feats in self.feats.items():
            try:
                out[name] = niqe_of_features(np.vstack(feats))
            except NIQEUnavailable as e:
                self.problem = str(e)
        return out


class Sink:
    """Everything after the generator for one video: encode, score against the original, write
    the comparison. Runs in a worker thread so it overlaps the next batch's model pass."""

    def __init__(self, stack: ExitStack, out: VideoWriter, info, codec, originals=None, masks=None, comparison: Optional[Path] = None,
                 niqe_frames: int = 0):
        self.stack, self.out, self.info, self.codec = stack, out, info, codec
        self.originals = FrameQueue(originals) if originals is not None else None
        self.masks = FrameQueue(masks) if masks is not None else None
        self.comparison = comparison
        self.scores = FrameScores() if originals is not None else None
        self.mismatch, self.sbs = None, None
        self.picture_at = (info.nb_frames or 1) // 2
        self.niqe = NIQEPool(info.nb_frames, niqe_frames) if niqe_frames else None

    def consume(self, frames: np.ndarray, restored: np.ndarray) -> None:
        first = self.out.frames
        self.out.write(restored)
        columns = [frames, restored]
        ref = None
        if self.scores is not None:
            ref = self.originals.take(len(frames))
            mask = self.masks.take(len(frames)) if self.masks else None
            if ref is None or len(ref) != len(frames) or (mask is not None and len(mask) != len(frames)):
                self.mismatch, self.scores, ref = "original (or mask) and input differ in frame count", None, None
            else:
                self.scores.add(frames, restored, ref, mask)
                columns.append(ref)
        if self.niqe is not None:
            self.niqe.add(first, {"input": frames, "restored": restored, **({"original": ref} if ref is not None else {})})
        if self.comparison is not None:
            panel = side_by_side(columns)
            if self.sbs is None:
                self.comparison.parent.mkdir(parents=True, exist_ok=True)
                h, w = panel.shape[1:3]
                self.sbs = self.stack.enter_context(VideoWriter(self.comparison, w, h, self.info.fps, self.codec))
            if first <= self.picture_at < self.out.frames:
                write_png(self.comparison.with_suffix(".png"), panel[self.picture_at - first])
            self.sbs.write(panel)

    def finish(self) -> None:
        if self.scores is not None and not self.originals.exhausted():
            self.mismatch, self.scores = "original and input differ in frame count", None
        if self.mismatch:
            self.mismatch += f" (input {self.out.frames})"


def mask_beside(src: Path) -> Optional[Path]:
    """`vrestore degrade --save-masks` writes NAME_mask.EXT beside NAME.EXT: 255 inside the boxes."""
    for ext in VIDEO_EXTENSIONS:
        if (p := src.with_name(f"{src.stem}_mask{ext}")).is_file():
            return p
    return None


def restore_video(src: Path, dst: Path, restorer: Restorer, codec="mjpeg", batch_size=8, original: Optional[Path] = None,
                  comparison: Optional[Path] = None, on_frames=None, niqe_frames: int = 16) -> VideoReport:
    """Restore one video into `dst` (audio copied); with `original`, score input and output
    against it (inside and outside the boxes too when NAME_mask.* lies beside `src`); with
    `comparison`, also write that video and a PNG of its middle frame.

    Three stages overlap: ffmpeg decoding (read ahead in a thread), the generator (this
    thread), and the sink (a worker thread); at most one batch waits at each, and a
    multi-frame generator holds 2k frames more, so memory stays flat however long the video."""
    t0 = time.monotonic()
    info = probe_video(src)
    originals, masks, mismatch, mask_path = None, None, None, None
    if original is not None:
        original_info = probe_video(original)
        mismatch = pair_check(info, original_info)
        if mismatch is None:
            originals = read_frames(original, batch_size, original_info, warnings=[])
            mask_path = mask_beside(src)
            masks = read_frames(mask_path, batch_size, warnings=[]) if mask_path else None
    dst.parent.mkdir(parents=True, exist_ok=True)
    warnings = []
    with ExitStack() as stack:
        for reader in (originals, masks):
            if reader is not None:
                stack.callback(reader.close)  # stops its ffmpeg if we stop reading early
        out = stack.enter_context(VideoWriter(dst, info.width, info.height, info.fps, codec, audio_from=src, audio_codec=info.audio_codec,
                                              start_time=info.start_time, sample_aspect=info.sample_aspect))
        sink = Sink(stack, out, info, codec, originals, masks, comparison, niqe_frames)
        pool = stack.enter_context(ThreadPoolExecutor(1))
        pending = None
        for frames, restored in restorer.stream(prefetched(read_frames(src, batch_size, info, warnings=warnings))):
            if pending:
                pending.result()  # re-raises the sink's errors here
            pending = pool.submit(sink.consume, frames, restored)
            if on_frames:
                on_frames(len(frames))
        if pending:
            pending.result()
        sink.finish()
    report = VideoReport(src.name, str(dst), out.frames, f"{float(info.fps):g}", f"{info.width}x{info.height}",
                         round(time.monotonic() - t0, 2), str(original) if original else None,
                         mask=str(mask_path) if mask_path and sink.scores else None,
                         mismatch=mismatch or sink.mismatch, warning=warnings[-1] if warnings else None, audio=out.audio_note)
    if sink.scores is not None:
        for k, v in sink.scores.means().items():
            setattr(report, k, v)
        report.sums = sink.scores.sums()
    if sink.niqe is not None:
        for k, v in sink.niqe.scores().items():
            setattr(report, f"niqe_{k}", v)
        report.niqe_note = sink.niqe.problem
    return report


def original_names(rel: str) -> list:
    """The relative names (without extension) an input's original may have: its own, dots
    included (`scene.v2.avi` -> `scene.v2`, never `scene`), then the name `vrestore degrade` gave
    to one of several same-stem inputs (`a_mp4.avi` -> `a.mp4`, see discover.output_names)."""
    stem = rel[: -len(Path(rel).suffix)] if Path(rel).suffix else rel
    names = [(stem, VIDEO_EXTENSIONS)]
    base, _, ext = stem.rpartition("_")
    if base and f".{ext}" in VIDEO_EXTENSIONS:
        names.append((base, (f".{ext}",)))
    return names


def find_original(originals: Path, rel: str) -> Optional[Path]:
    """A file is the original of a single input; in a folder, the same relative name (any video
    extension) wins, then a unique file name anywhere below with that name."""
    if originals.is_file():
        return originals
    for stem, exts in original_names(rel):
        for ext in exts:
            if (p := originals / f"{stem}{ext}").is_file():
                return p
    for stem, exts in original_names(rel):
        name = Path(stem).name
        matches = [p for p in originals.rglob("*") if p.is_file() and p.name in {f"{name}{e}" for e in exts}]
        if len(matches) == 1:
            return matches[0]
    return None


def is_mask(path: Path) -> bool:
    """A NAME_mask.ext beside NAME.ext (see mask_beside) is not a video to restore."""
    return path.stem.endswith("_mask") and any(path.with_name(path.stem[: -len("_mask")] + e).exists() for e in VIDEO_EXTENSIONS)


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
    niqe_frames: int = 16


def plan_restore(cfg: RestoreConfig) -> tuple:
    """(jobs, skipped, no_original, unreadable): every check on inputs and outputs, before any work."""
    exclude = check_output_folder(cfg.input, cfg.output_dir, "--output-dir")
    if cfg.originals is not None and cfg.originals.is_file() and cfg.input.is_dir():
        raise ValueError(f"--originals {cfg.originals} is one file but INPUT {cfg.input} is a folder: give the originals' folder")
    entries, unreadable = list_source_videos(cfg.input, exclude=exclude)
    root = cfg.input.parent if cfg.input.is_file() else cfg.input
    entries = [e for e in entries if not is_mask(root / e.rel)]
    ext = "." + CODECS[cfg.codec].container
    names = output_names([e.rel for e in entries], ext)
    inputs = [root / e.rel for e in entries] + ([cfg.originals] if cfg.originals and cfg.originals.is_file() else [])
    report_files = [cfg.report, cfg.report.with_suffix(".csv")] if cfg.report else []
    report_files += [cfg.output_dir / GALLERY] if cfg.gallery else []
    refuse_replacing_inputs(inputs, [cfg.output_dir / n for n in names.values()] + report_files)
    if cfg.report:
        check_writable(cfg.report.parent, "--report")  # now, not after every video was restored
        csv_path = cfg.report.with_suffix(".csv")
        if csv_path.exists() and not cfg.report.exists() and not cfg.overwrite:
            raise ValueError(f"--report: {csv_path} exists and is no earlier report's CSV; choose another --report or pass --overwrite")
    remove_dead_temp_files(cfg.output_dir)
    jobs, skipped, no_original = [], [], []
    for e in entries:
        dst = cfg.output_dir / names[e.rel]
        if dst.exists() and not cfg.overwrite:
            skipped.append(e.rel)
            continue
        original = find_original(cfg.originals, e.rel) if cfg.originals else None
        if cfg.originals and original is None:
            no_original.append(e.rel)
        comparison = cfg.output_dir / "side_by_side" / names[e.rel] if cfg.side_by_side else None
        jobs.append(RestoreJob(e.rel, root / e.rel, dst, original, comparison, cfg.codec, cfg.batch_size, cfg.niqe_frames))
    return jobs, skipped, no_original, unreadable


def restore_job(restorer: Restorer, job: RestoreJob, on_frames=None) -> tuple:
    """("done", VideoReport) or ("failed", reason): a video that fails fails alone."""
    try:
        report = restore_video(job.src, job.dst, restorer, job.codec, job.batch_size, job.original, job.comparison, on_frames,
                               job.niqe_frames)
    except (UnreadableVideo, VideoReadError, RuntimeError, OSError) as err:
        return "failed", str(err)
    report.video = job.rel
    return "done", report


def collect(result: RestoreResult, job: RestoreJob, outcome: tuple, say) -> None:
    kind, value = outcome
    if kind == "failed":
        result.failed.append((job.rel, value))
        say(f"failed: {job.rel}: {value}")
        return
    value.output = str(job.dst)  # as planned (a Ray worker saw the absolute path)
    result.videos.append(value)
    for note in (value.warning and f"partial: {job.rel}: {value.warning} (restored the frames that decoded)",
                 value.audio and f"{job.rel}: {value.audio}"):
        if note:
            say(note)
    if value.warning:
        result.partial.append((job.rel, value.warning))


def restore_videos(cfg: RestoreConfig) -> RestoreResult:
    """Restore every planned video with the local generator (`engine` "local") or on Ray workers,
    one per GPU or CPU slot (`engine` "ray"); one report for the whole folder either way, its
    rows in input order."""
    if cfg.engine == "local":
        restorer = Restorer(cfg.weights, cfg.device, cfg.amp, cfg.channels_last, cfg.tile, cfg.max_memory)  # weights first: fail fast
    else:
        driver_G = load_network(cfg.weights, "generator")  # fail fast on the driver, not in every worker
    jobs, skipped, no_original, unreadable = plan_restore(cfg)
    g = (restorer.G if cfg.engine == "local" else driver_G).cfg
    model = {"weights": str(cfg.weights), "trained_for_preset": g.preset, "arch": g.arch, "frames": g.frames}
    result = RestoreResult(skipped=skipped, no_original=no_original, failed=list(unreadable), model=model)
    outcomes = {}
    if cfg.engine == "local":
        videos = tqdm(jobs, unit="video", disable=not cfg.progress, dynamic_ncols=True)
        say = videos.write if cfg.progress else (lambda line: None)  # --quiet: the summary alone
        for i, job in enumerate(videos):
            frames = tqdm(unit="frame", leave=False, disable=not cfg.progress, dynamic_ncols=True, desc=Path(job.rel).name)
            try:
                outcomes[i] = restore_job(restorer, job, frames.update)
            finally:
                frames.close()
            collect(result, job, outcomes[i], say)
    elif jobs:
        started = ray_engine.connect(cfg.ray_address, num_cpus=ray_engine.local_cpu_count())
        try:
            slots = ray_engine.worker_slots(cfg.device, cfg.ray_workers)
            device = "cuda" if slots.gpus else "cpu"
            make = functools.partial(Restorer, cfg.weights.resolve(), device, cfg.amp, cfg.channels_last, cfg.tile, cfg.max_memory)
            frames_of = lambda outcome: outcome[1].frames if outcome[0] == "done" else 0
            sent = [ray_engine.absolute_paths(job) for job in jobs]  # a worker's working folder is not ours
            for i, outcome in ray_engine.map_videos(sent, make, restore_job, slots, frames_of, "restore", cfg.progress):
                outcomes[i] = outcome
                if outcome[0] == "failed" and cfg.progress:
                    tqdm.write(f"failed: {jobs[i].rel}: {outcome[1]}")
        finally:
            ray_engine.shutdown(started)
        for i, job in enumerate(jobs):  # in input order, as the local engine reports
            collect(result, job, outcomes[i], lambda line: None)
    if cfg.report:
        write_report(cfg.report, result)
    if cfg.gallery and result.videos:
        result.gallery = write_gallery(cfg.output_dir / GALLERY, gallery_items(result, cfg.input), result.model)
    return result


def niqe_means(reports: list) -> Optional[dict]:
    """Mean NIQE over the videos that have one (a per-video score; no pooling across videos)."""
    out = {}
    for which in ("input", "restored", "original"):
        values = [getattr(r, f"niqe_{which}") for r in reports if getattr(r, f"niqe_{which}") is not None]
        if values:
            out[f"niqe_{which}"] = float(np.mean(values))
    return out or None


def overall(reports: list) -> Optional[dict]:
    """The "all" row: every scored video's frames as one set (metrics.DEFINITIONS): per-frame
    PSNR and SSIM averaged over all frames, box and temporal squared errors pooled over all
    videos; bench/quality.py computes the same figures with the same VideoScores."""
    scored = [r for r in reports if r.sums is not None]
    if not scored:
        return None
    m = {}
    for which in ("input", "restored"):
        result = VideoScores.merged([r.sums[which] for r in scored]).result()
        m |= {f"{RESULT_NAMES[k]}_{which}": result[k] for k in RESULT_NAMES}
    return m | {"psnr_gain": m["psnr_restored"] - m["psnr_input"], "frames": sum(r.frames for r in scored), "videos": len(scored)}


def format_table(result: RestoreResult) -> str:
    """Per-video scores of the input and the restored output against the originals (in -> out),
    and the means over all frames; videos that could not be paired are listed below with the
    reason. Boxes / outside: PSNR inside and outside the occlusion boxes (with masks beside the
    inputs); temporal: PSNR of consecutive-frame differences (flicker lowers it)."""
    head = ("video", "frames", "PSNR in", "PSNR out", "gain", "SSIM in -> out", "boxes in -> out", "outside in -> out", "temporal in -> out")
    pair = lambda m, k, f: "-" if m[f"{k}_input"] is None else f"{m[f'{k}_input']:{f}} -> {m[f'{k}_restored']:{f}}"
    row = lambda name, frames, m: (name, str(frames), f"{m['psnr_input']:.2f}", f"{m['psnr_restored']:.2f}",
                                   f"{m['psnr_restored'] - m['psnr_input']:+.2f}", pair(m, "ssim", ".4f"), pair(m, "psnr_boxes", ".2f"),
                                   pair(m, "psnr_outside", ".2f"), pair(m, "temporal_psnr", ".2f"))
    rows = [row(r.video, r.frames, asdict(r)) for r in result.videos if r.psnr_restored is not None]
    if (m := overall(result.videos)) is not None:
        rows.append(row(f"all ({m['videos']} videos)", m["frames"], m))
    lines = []
    if rows:
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)) for r in [head, *rows]]
    if rows:
        lines.append("PSNR, SSIM: per frame, averaged over frames; boxes, outside, temporal: one PSNR of the squared error "
                     "pooled over all their pixels (the all row pools every video's)")
    if (n := niqe_means(result.videos)) and "niqe_restored" in n:
        count = sum(r.niqe_restored is not None for r in result.videos)
        lines.append(f"NIQE (no reference; lower is more natural), mean of {count} videos: input {n['niqe_input']:.2f} -> restored "
                     f"{n['niqe_restored']:.2f}" + (f" (originals {n['niqe_original']:.2f})" if "niqe_original" in n else ""))
    lines += [f"no NIQE: {r.video}: {r.niqe_note}" for r in result.videos if r.niqe_note]
    lines += [f"not scored: {r.video}: {r.mismatch}" for r in result.videos if r.mismatch]
    lines += [f"not scored: {v}: no original found" for v in result.no_original]
    return "\n".join(lines)


def write_report(path: Path, result: RestoreResult) -> None:
    """JSON with every video and the overall means, and a CSV of the per-video rows beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{k: v for k, v in asdict(r).items() if k != "sums"} | {"psnr_gain": r.psnr_gain} for r in result.videos]
    doc = {"model": result.model, "definitions": DEFINITIONS, "videos": rows, "overall": overall(result.videos),
           "niqe_mean": niqe_means(result.videos), "failed": [{"video": v, "reason": why} for v, why in result.failed],
           "partial": [{"video": v, "warning": why} for v, why in result.partial],
           "no_original": result.no_original, "skipped_existing": result.skipped}
    write_json_atomic(path, doc)
    with atomic_path(path.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as f:
        cols = list(rows[0]) if rows else ["video"]
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
