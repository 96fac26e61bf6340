"""make-shards: videos → interleaved, indexed WebDataset shards plus a manifest.

Videos are taken in windows of `mix_window`; the samples of a window (frames or clips, or for
the frames layout whole runs of frames) are shuffled with a seed derived from (seed, node,
window) and streamed into shards, so every shard mixes many clips and the same settings always
give byte-identical shards. After each shard closes, a small state file records where the
next one starts (window, offset), which is all a re-run needs to resume without writing any
finished shard again.
"""
import hashlib
import importlib
import json
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from vrestore.pipeline.atomic import check_writable, remove_dead_temp_files, write_json_atomic
from vrestore.pipeline.host.lease import exclusive
from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.degrade.degrade_videos import degrade_video, video_seed
from vrestore.pipeline.degrade.real_world import draw
from vrestore.pipeline.media.discover import SourceError, VideoEntry, list_source_videos
from vrestore.pipeline.media.ffmpeg_cmd import decode_problem, partial_decode
from vrestore.pipeline.media.frame_reader import (ffmpeg_version, read_encoded_frames, read_encoded_frames_together, require_ffmpeg,
                                                   resized_copy)
from vrestore.pipeline.media.image_stream import image_size
from vrestore.pipeline.dataset.manifest import build_manifest, node_manifest_name
from vrestore.pipeline.media.probe import UnreadableVideo, probe_video
from vrestore.pipeline.media.video_io import VIDEO_FAILURES
from vrestore.pipeline.dataset.samples import clip_samples, frame_run_samples
from vrestore.pipeline.dataset.shard_config import ShardConfig
from vrestore.pipeline.dataset.shard_writer import ShardInfo, ShardWriter
from vrestore.pipeline.dataset.spool import Spool

@dataclass
class VideoResult:
    entry: VideoEntry
    # groups of (key, {"jpg"|"png": Stored, "json": bytes}) samples; a group stays inside one shard
    samples: list = field(default_factory=list)
    record: dict = field(default_factory=dict)  # what the manifest says of this video
    skipped: bool = False
    spool: Optional[Spool] = None  # where the video's encoded frames wait for the writer (spool.py)

    def close(self) -> None:
        """Free the spooled frames (after the window is written)."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None


@dataclass
class ShardResult:
    out: Path
    manifest_path: Path
    manifest: dict
    seconds: float
    resumed_shards: int = 0
    already_complete: bool = False


class NoReadableVideo(SourceError):
    pass


def select_videos(cfg: ShardConfig):
    entries, missing = list_source_videos(cfg.src, cfg.split_file)
    if cfg.limit:
        entries = entries[: cfg.limit]
    return entries[cfg.node_rank :: cfg.num_nodes], missing


# Videos up to this size share one ffmpeg process, this many at a time: a process start costs
# ~150 ms (Debian's ffmpeg loads 215 shared libraries), as much as a 2-second clip's frames.
TOGETHER_BYTES = 4 << 20
TOGETHER_VIDEOS = 8


def decode_batches(entries: list, cfg: ShardConfig) -> list:
    """The videos of a window in the groups decoded together: short clean-preset videos by up to
    TOGETHER_VIDEOS, every other video alone."""
    batches, small = [], []
    for e in entries:
        try:
            together = cfg.preset == "seed" and 0 < e.path.stat().st_size <= TOGETHER_BYTES
        except OSError:
            together = False
        if not together:
            batches.append([e])
            continue
        small.append(e)
        if len(small) == TOGETHER_VIDEOS:
            batches.append(small)
            small = []
    return batches + ([small] if small else [])


def shard_batch(entries: list, cfg: ShardConfig) -> list:
    """shard_video for each of `entries`, decoded by one ffmpeg process when there are several
    (read_encoded_frames_together); when ffmpeg complained about any of them, each is decoded
    alone, so a damaged video is told apart and the others are as a lone decode gives them."""
    if len(entries) > 1:
        spools = [Spool() for _ in entries]
        decoded = read_encoded_frames_together([e.path for e in entries], cfg.image_format, cfg.quality, cfg.frame_stride,
                                               cfg.size, cfg.short_side, sinks=[s.put for s in spools])
        if decoded is not None:
            return [video_samples(VideoResult(e, spool=s), cfg, d) for e, s, d in zip(entries, spools, decoded)]
        for s in spools:
            s.close()
    return [shard_video(e, cfg) for e in entries]


def shard_video(entry: VideoEntry, cfg: ShardConfig) -> VideoResult:
    """Decode one video into encoded frame samples, its frames parked in a spool on local disk
    (memory holds where they are, not the frames); never raises for a bad video."""
    result = VideoResult(entry, spool=Spool())
    try:
        if entry.path.stat().st_size == 0:
            return skipped(result, "empty file (0 bytes)")
        decoded = read_encoded_frames(entry.path, cfg.image_format, cfg.quality, cfg.frame_stride, cfg.size, cfg.short_side,
                                      sink=result.spool.put)
    except OSError as e:
        return skipped(result, f"cannot read: {e}")
    return video_samples(result, cfg, decoded)


def skipped(result: VideoResult, reason: str) -> VideoResult:
    result.close()
    result.record, result.skipped = {"path": result.entry.rel, "id": result.entry.video_id, "reason": reason}, True
    return result


def video_samples(result: VideoResult, cfg: ShardConfig, decoded) -> VideoResult:
    """The samples and the manifest's record of a decoded video (its frames in result.spool)."""
    entry = result.entry
    problem = decode_problem(decoded.problems, decoded.returncode, truncated=bool(decoded.truncated_bytes))
    if failure := partial_decode(problem, len(decoded.images), keep_partial=True):
        return skipped(result, failure)
    fps = decoded.fps
    if fps is None:  # the log did not say; ask ffprobe (slower, but exact)
        try:
            fps = probe_video(entry.path).fps
        except UnreadableVideo as e:
            return skipped(result, str(e))
    width, height = image_size(decoded.images[0].read())
    meta = {
        "video": entry.video_id, "class": entry.cls, "group": entry.group, "clip": entry.clip,
        "fps": round(float(fps), 6), "width": width, "height": height, "source": entry.rel,
    }
    if len(decoded.images) < cfg.clip_len:
        return skipped(result, f"shorter than --clip-len {cfg.clip_len} ({len(decoded.images)} frames)")
    damaged = None
    if cfg.preset == "real":
        try:
            damaged = damaged_frames(entry, cfg, result.spool)
        except VIDEO_FAILURES as e:
            return skipped(result, f"--preset real: could not make the damaged copy: {e}")
        for copy in damaged:
            if len(copy) != len(decoded.images):
                return skipped(result, f"--preset real: the damaged copy has {len(copy)} frames, the video {len(decoded.images)}")
    by_frame = cfg.clip_len > 1 and cfg.layout == "frames"
    result.samples = (frame_run_samples if by_frame else clip_samples)(entry.video_id, decoded.images, meta, cfg, damaged)
    # Training samples of this video: T-frame windows (frames layout: every clip_stride-th
    # centre of each run, context frames left out) or stored clips.
    centres = lambda g: sum(1 for key, _ in g if not key.rpartition("/")[2].startswith("c"))
    clips = sum(len(range(0, centres(g), cfg.clip_stride)) for g in result.samples) if by_frame else len(result.samples)
    result.record = {
        "path": entry.rel, "id": entry.video_id, "class": entry.cls, "group": entry.group, "clip": entry.clip,
        "frames": len(decoded.images), "fps": meta["fps"], "width": width, "height": height,
        "partial": bool(problem), **({"warning": problem} if problem else {}),
        **({"clips": clips} if cfg.clip_len > 1 else {}),
        **({"real": real_record(entry, cfg)} if damaged else {}),
    }
    return result


def draw_seeds(entry: VideoEntry, cfg: ShardConfig) -> list:
    """One seed per draw: the first is `vrestore degrade`'s for this video (same seed rule)."""
    return [video_seed(cfg.seed, entry.rel if k == 0 else f"{entry.rel}#draw{k}") for k in range(cfg.real_draws)]


def real_record(entry: VideoEntry, cfg: ShardConfig):
    """The manifest's account of a video's damage: its draw, or a list of them (--real-draws)."""
    draws = [draw(cfg.real, s).describe() for s in draw_seeds(entry, cfg)]
    return draws[0] if cfg.real_draws == 1 else draws


def damaged_frames(entry: VideoEntry, cfg: ShardConfig, spool: Spool) -> list:
    """The video's real-preset copies, one per draw, each made by `vrestore degrade`'s own
    function into a lossless file in a temporary folder (from a lossless copy resized as the
    clean frames are, when --size/--short-side resize), then decoded with the clean frames'
    stride, to PNG so no second lossy step is added."""
    copies = []
    with tempfile.TemporaryDirectory(prefix="vrestore-real-") as tmp:
        source = entry.path
        if cfg.size or cfg.short_side:  # resized first, then damaged: the damage at the size trained on
            source = Path(tmp) / "resized.avi"
            resized_copy(entry.path, source, cfg.size, cfg.short_side)
        for k, seed in enumerate(draw_seeds(entry, cfg)):
            copy = Path(tmp) / f"damaged{k}.avi"
            degrade_video(source, copy, DegradationSpec(), seed, codec="ffv1", warnings=[], real=cfg.real)
            copies.append(read_encoded_frames(copy, "png", cfg.quality, cfg.frame_stride, sink=spool.put).images)
            copy.unlink()
    return copies


def window_rng(cfg: ShardConfig, window: int) -> random.Random:
    return random.Random(f"make-shards/{cfg.seed}/{cfg.node_rank}/{window}")


def videos_fingerprint(entries) -> str:
    return hashlib.sha256(os.fsencode("\n".join(e.rel for e in entries))).hexdigest()[:16]


def _decoded_windows(windows, start, pool, cfg):
    """Yield (index, results) per window while the next window already decodes."""
    submit = lambda w: [pool.submit(shard_batch, b, cfg) for b in decode_batches(windows[w], cfg)] if w < len(windows) else []
    ahead = submit(start)
    for w in range(start, len(windows)):
        current, ahead = ahead, submit(w + 1)
        yield w, [r for f in current for r in f.result()]


def _prepare_out_dir(cfg: ShardConfig, state_path: Path, manifest_path: Path) -> None:
    check_writable(cfg.out, "OUT")
    ours = [*cfg.out.glob(f"{cfg.file_prefix}-[0-9]*.tar"), *cfg.out.glob(f"{cfg.file_prefix}-[0-9]*.idx")]
    if cfg.overwrite:
        for p in [*ours, state_path, manifest_path]:
            p.unlink(missing_ok=True)
    remove_dead_temp_files(cfg.out, cfg.file_prefix)
    remove_dead_temp_files(cfg.out, manifest_path.name)
    remove_dead_temp_files(cfg.out, state_path.name)
    if ours and not cfg.overwrite and not state_path.exists() and not manifest_path.exists():
        raise SourceError(f"{cfg.out} already holds {cfg.file_prefix}-*.tar shards of an unknown run; pass --overwrite to replace them")


def _load_previous(path: Path, params: dict, fingerprint: str, what: str) -> Optional[dict]:
    if not path.exists():
        return None
    previous = json.loads(path.read_text())
    old = previous.get("params", {})
    changed = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
    if changed:
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {params.get(k)!r}" for k in changed)
        raise SourceError(f"{path.parent} holds a {what} made with other settings ({diff}); pass --overwrite to start over")
    if previous.get("videos_fingerprint") != fingerprint:
        raise SourceError(f"{path.parent} holds a {what} made from a different list of videos; pass --overwrite to start over")
    return previous


def make_shards(cfg: ShardConfig, on_shard: Optional[Callable[[ShardInfo], None]] = None) -> ShardResult:
    """Shard `cfg.src` into `cfg.out`; resumes a run that stopped part-way. One run per node's
    files at a time: a second into the same OUT (same --node-rank) stops with one line."""
    for writer in ("webdataset", "wds2idx"):  # the train extra's writers: when missing, one line before any work
        importlib.import_module(writer)

    t0 = time.perf_counter()
    require_ffmpeg()
    entries, missing = select_videos(cfg)  # bad sources fail before OUT is created
    check_writable(cfg.out, "OUT")
    with exclusive(cfg.out / f".{cfg.file_prefix}.lock", f"OUT {cfg.out}"):
        return _make_shards(cfg, on_shard, t0, entries, missing)


def _make_shards(cfg: ShardConfig, on_shard, t0: float, entries: list, missing: list) -> ShardResult:
    params, fingerprint = cfg.output_params(), videos_fingerprint(entries)
    manifest_path = cfg.out / node_manifest_name(cfg.node_rank, cfg.num_nodes)
    state_path = cfg.out / f".{cfg.file_prefix}.state.json"
    _prepare_out_dir(cfg, state_path, manifest_path)

    done = _load_previous(manifest_path, params, fingerprint, "finished run")
    if done is not None:
        return ShardResult(cfg.out, manifest_path, done, time.perf_counter() - t0, already_complete=True)
    state = _load_previous(state_path, params, fingerprint, "partial run") or {
        "params": params, "videos_fingerprint": fingerprint, "shards": [], "records": [],
        "next_window": 0, "next_offset": 0,
    }
    resumed = len(state["shards"])
    windows = [entries[i : i + cfg.mix_window] for i in range(0, len(entries), cfg.mix_window)]
    position = {"window": state["next_window"], "offset": state["next_offset"]}
    records_before = list(state["records"])  # records of windows before the current one

    def shard_closed(info: ShardInfo):
        state["shards"].append(asdict(info))
        state["next_window"], state["next_offset"] = position["window"], position["offset"]
        state["records"] = records_before
        write_json_atomic(state_path, state)
        if on_shard:
            on_shard(info)

    writer = ShardWriter(cfg.out, cfg.file_prefix, cfg.max_frames, int(cfg.max_size_mb * 2**20), len(state["shards"]), shard_closed)
    bar = tqdm(total=len(entries), unit="video", disable=not cfg.progress, dynamic_ncols=True)
    say = bar.write if cfg.progress else (lambda line: None)  # --quiet: the summary alone
    bar.update(sum(len(w) for w in windows[: state["next_window"]]))
    frames_done, frames_t0 = 0, time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=cfg.workers)
    try:
        for w, results in _decoded_windows(windows, state["next_window"], pool, cfg):
            groups = [g for r in results for g in r.samples]
            window_rng(cfg, w).shuffle(groups)
            skip = state["next_offset"] if w == state["next_window"] else 0
            position["window"] = w
            for i in range(skip, len(groups)):
                position["offset"] = i
                writer.write_group(groups[i])
            records_before = records_before + [r.record | {"skipped": r.skipped} for r in results]
            for r in results:
                r.close()
            position["window"], position["offset"] = w + 1, 0
            for r in results:
                if r.skipped or r.record.get("partial"):
                    tag = "skipped" if r.skipped else "partial"
                    say(f"{tag}: {r.entry.rel}: {r.record.get('reason') or r.record.get('warning')}")
            frames_done += sum(len(g) for g in groups[skip:])
            bar.update(len(results))
            bar.set_postfix(frames=frames_done, kept_per_s=f"{frames_done / (time.perf_counter() - frames_t0):.0f}")
        writer.close_shard()
    except BaseException:
        writer.abandon()
        raise
    finally:
        # An interrupt or error must not wait for two windows of queued videos to decode.
        pool.shutdown(cancel_futures=True)
        bar.close()

    all_records = records_before
    videos = [{k: v for k, v in r.items() if k != "skipped"} for r in all_records if not r["skipped"]]
    skipped = [{k: v for k, v in r.items() if k != "skipped"} for r in all_records if r["skipped"]]
    skipped += [{"path": rel, "reason": reason} for rel, reason in missing]
    if not videos:
        state_path.unlink(missing_ok=True)
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        raise NoReadableVideo(f"no readable video in {cfg.src} ({reasons})")
    manifest = build_manifest(params, state["shards"], videos, skipped, ffmpeg_version())
    manifest["videos_fingerprint"] = fingerprint
    manifest["source"] = os.fsdecode(os.path.abspath(cfg.src))  # merge-manifests checks that all nodes sharded one SRC
    write_json_atomic(manifest_path, manifest)
    state_path.unlink(missing_ok=True)
    return ShardResult(cfg.out, manifest_path, manifest, time.perf_counter() - t0, resumed_shards=resumed)
