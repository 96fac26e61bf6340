"""`make-shards --engine ray`: the same samples as a local run, written by Ray tasks.

The videos are cut into the local run's windows (`--mix-window` videos each); one task decodes a
window, shuffles its samples with the window's own seed and writes them into whole shards of
its own (`PREFIX-wWWWWWW-NNNNNN.tar`), then a small done file (video2dataset's "stats file"
rule): a re-run skips windows that have one, a task whose worker died is retried, and the driver
writes one manifest.json at the end. Samples (keys and bytes) are those of a local run with the
same settings; only their grouping into shard files differs.
"""
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from vrestore.pipeline.atomic import check_writable, remove_dead_temp_files, write_json_atomic
from vrestore.pipeline.cluster import ray_engine
from vrestore.pipeline.dataset.make_shards import (
    NoReadableVideo, ShardResult, decode_batches, select_videos, shard_batch, videos_fingerprint, window_rng,
)
from vrestore.pipeline.dataset.manifest import build_manifest, node_manifest_name
from vrestore.pipeline.dataset.shard_config import ShardConfig
from vrestore.pipeline.dataset.shard_writer import ShardWriter
from vrestore.pipeline.media.discover import SourceError
from vrestore.pipeline.media.frame_reader import ffmpeg_version, require_ffmpeg


def window_prefix(cfg: ShardConfig, w: int) -> str:
    return f"{cfg.file_prefix}-w{w:06d}"


def done_path(cfg: ShardConfig, w: int) -> Path:
    return cfg.out / f".{window_prefix(cfg, w)}.done.json"


def shard_window(cfg: ShardConfig, w: int, entries: list, params: dict, fingerprint: str) -> dict:
    """One Ray task: a window of videos into shards, then its done file; returns the done file's
    content. Idempotent: a retry rewrites the same shards with the same bytes."""
    prefix = window_prefix(cfg, w)
    remove_dead_temp_files(cfg.out, prefix)  # an earlier attempt's, if its worker died mid-shard
    results = [r for batch in decode_batches(entries, cfg) for r in shard_batch(batch, cfg)]
    groups = [g for r in results for g in r.samples]
    window_rng(cfg, w).shuffle(groups)
    shards = []
    writer = ShardWriter(cfg.out, prefix, cfg.max_frames, int(cfg.max_size_mb * 2**20), 0, lambda info: shards.append(asdict(info)))
    try:
        for group in groups:
            writer.write_group(group)
        writer.close_shard()
    except BaseException:
        writer.abandon()
        raise
    finally:
        for r in results:
            r.close()
    stats = {"params": params, "videos_fingerprint": fingerprint, "window": w, "shards": shards, "samples": sum(len(g) for g in groups),
             "records": [r.record | {"skipped": r.skipped} for r in results]}
    write_json_atomic(done_path(cfg, w), stats)
    return stats


def _check_done(path: Path, params: dict, fingerprint: str) -> dict:
    stats = json.loads(path.read_text())
    if stats.get("params") != params or stats.get("videos_fingerprint") != fingerprint:
        raise SourceError(f"{path} was made with other settings or videos; pass --overwrite to start over")
    return stats


def make_shards_ray(cfg: ShardConfig, address: Optional[str] = None, task: Callable = shard_window) -> ShardResult:
    """Shard `cfg.src` into `cfg.out` with Ray tasks; resumes from the windows already done.
    `task`: what each Ray task runs, `shard_window`'s arguments and result (a test wraps it in a
    worker that dies once, to show the retry)."""
    t0 = time.perf_counter()
    require_ffmpeg()
    ray_engine.import_ray()  # a missing extra is one line before OUT is made
    entries, missing = select_videos(cfg)
    params, fingerprint = cfg.output_params() | {"engine": "ray"}, videos_fingerprint(entries)
    manifest_path = cfg.out / node_manifest_name(cfg.node_rank, cfg.num_nodes)
    check_writable(cfg.out, "OUT")
    ours = [*cfg.out.glob(f"{cfg.file_prefix}-w[0-9]*"), *cfg.out.glob(f".{cfg.file_prefix}-w[0-9]*.done.json")]
    if cfg.overwrite:
        for p in [*ours, manifest_path]:
            p.unlink(missing_ok=True)
    elif manifest_path.exists():
        previous = json.loads(manifest_path.read_text())
        if previous.get("params") == params and previous.get("videos_fingerprint") == fingerprint:
            return ShardResult(cfg.out, manifest_path, previous, time.perf_counter() - t0, already_complete=True)
        raise SourceError(f"{manifest_path} was made with other settings or videos; pass --overwrite to start over")
    windows = [entries[i : i + cfg.mix_window] for i in range(0, len(entries), cfg.mix_window)]
    stats = {w: _check_done(done_path(cfg, w), params, fingerprint) for w in range(len(windows)) if done_path(cfg, w).exists()}
    resumed = sum(len(s["shards"]) for s in stats.values())
    todo = [w for w in range(len(windows)) if w not in stats]

    started = ray_engine.connect(address, num_cpus=cfg.workers)
    bar = tqdm(total=len(entries), initial=sum(len(windows[w]) for w in stats), unit="video", disable=not cfg.progress, dynamic_ncols=True)
    frames, t_frames = 0, time.perf_counter()

    def done(i, result):
        nonlocal frames
        stats[result["window"]] = result
        frames += result["samples"]
        bar.update(len(windows[result["window"]]))
        bar.set_postfix(samples=frames, samples_s=f"{frames / (time.perf_counter() - t_frames):.0f}", refresh=False)
        for r in result["records"]:
            if r["skipped"] or r.get("partial"):
                bar.write(f"{'skipped' if r['skipped'] else 'partial'}: {r['path']}: {r.get('reason') or r.get('warning')}")

    try:
        ray_engine.run_tasks(task, [(cfg, w, windows[w], params, fingerprint) for w in todo], done)
    finally:
        bar.close()
        ray_engine.shutdown(started)
        remove_dead_temp_files(cfg.out, cfg.file_prefix)  # stopped by a signal: the stopped tasks' half-written shards

    records = [r for w in range(len(windows)) for r in stats[w]["records"]]
    videos = [{k: v for k, v in r.items() if k != "skipped"} for r in records if not r["skipped"]]
    skipped = [{k: v for k, v in r.items() if k != "skipped"} for r in records if r["skipped"]]
    skipped += [{"path": rel, "reason": reason} for rel, reason in missing]
    if not videos:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        raise NoReadableVideo(f"no readable video in {cfg.src} ({reasons})")
    manifest = build_manifest(params, [s for w in range(len(windows)) for s in stats[w]["shards"]], videos, skipped, ffmpeg_version())
    manifest["videos_fingerprint"] = fingerprint
    manifest["source"] = os.fsdecode(os.path.abspath(cfg.src))  # merge-manifests checks that all nodes sharded one SRC
    write_json_atomic(manifest_path, manifest)
    for w in range(len(windows)):
        done_path(cfg, w).unlink(missing_ok=True)  # the manifest now says it all
    return ShardResult(cfg.out, manifest_path, manifest, time.perf_counter() - t0, resumed_shards=resumed)
