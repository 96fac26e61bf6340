"""`vrestore` and `make-shards`: click options map one to one onto the config dataclasses."""
import os
import sys
from pathlib import Path

import click

from pipeline.discover import SourceError
from pipeline.manifest import ManifestError, merge_manifests
from pipeline.make_shards import ShardConfig, format_summary, make_shards
from pipeline.sample_videos import SampleConfig, make_sample_videos


def fail(message: str, code: int = 2):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def parse_size(ctx, param, value):
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter("expected WxH, for example 320x240") from None
    return (w, h)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Train a pix2pix GAN that restores blurred, noisy, occluded video, and restore videos with it."""


@cli.command("sample-videos")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--classes", default=5, show_default=True, help="Classes (one photograph each), at most 5.")
@click.option("--groups", default=4, show_default=True, help="Groups per class; group 1 is the test split.")
@click.option("--clips", default=2, show_default=True, help="Clips per group.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same videos.")
@click.option("--workers", default=os.cpu_count() or 1, show_default="CPU count", help="ffmpeg processes at once.")
def sample_videos_cmd(out, classes, groups, clips, seed, workers):
    """Write a small UCF-101-shaped tree of 320x240 AVI clips to OUT, with split files.

    The clips are pans and zooms over photographs bundled with scikit-image, so the tool can be
    tried without downloading UCF-101. Test split = group 1, as in UCF-101.
    """
    try:
        cfg = SampleConfig(out, classes=classes, groups=groups, clips=clips, seed=seed, workers=workers)
    except ValueError as e:
        fail(str(e))
    splits = make_sample_videos(cfg)
    click.echo(
        f"{len(splits['train']) + len(splits['test'])} clips in {out} "
        f"({len(splits['train'])} train, {len(splits['test'])} test); "
        f"split files in {out / 'ucfTrainTestlist'}"
    )


@click.command("make-shards", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path), default="shards")
@click.option("--split-file", type=click.Path(path_type=Path), help="UCF-101 trainlist/testlist file; paths are relative to SRC.")
@click.option("--use-first-100", is_flag=True, help="Keep only the first 100 videos in sorted order (quick mode).")
@click.option("--limit", type=int, help="Keep only the first N videos in sorted order.")
@click.option("--format", "image_format", type=click.Choice(["jpg", "png"]), default="jpg", show_default=True, help="Frame encoding; png is lossless and ~8x larger.")
@click.option("--quality", default=2, show_default=True, help="JPEG quality as ffmpeg's -q:v: 2 (best) to 31 (worst).")
@click.option("--frame-stride", default=1, show_default=True, help="Keep every Nth frame.")
@click.option("--size", callback=parse_size, help="Resize frames to WxH (even numbers). Default: as is.")
@click.option("--short-side", type=int, help="Resize so the short side is N pixels, keeping aspect.")
@click.option("--max-frames", default=10_000, show_default=True, help="Frames per shard at most.")
@click.option("--max-size-mb", default=512.0, show_default=True, help="Shard size cap in MB.")
@click.option("--mix-window", default=32, show_default=True, help="Videos whose frames are shuffled together into shards (memory grows with it).")
@click.option("--seed", default=0, show_default=True, help="Seed of the writer-side shuffle.")
@click.option("--workers", default=os.cpu_count() or 1, show_default="CPU count", help="Videos decoded in parallel.")
@click.option("--prefix", default="shard", show_default=True, help="Shard file name prefix.")
@click.option("--overwrite", is_flag=True, help="Delete this run's shards in OUT and start over (default: resume).")
@click.option("--strict", is_flag=True, help="Exit 1 if any video was skipped.")
@click.option("--num-nodes", default=1, show_default=True, help="Nodes sharding one collection into one OUT.")
@click.option("--node-rank", default=0, show_default=True, help="This node's rank; takes every num-nodes-th video.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def make_shards_cmd(quiet, **options):
    """Decode the videos under SRC with ffmpeg into WebDataset shards in OUT (default: shards/).

    One sample per frame: KEY.jpg (or .png) and KEY.json (video id, class, group, clip, frame,
    fps, width, height), frames of many videos interleaved. Each shard gets the .idx file DALI
    reads, and OUT/manifest.json lists shards, sample counts and skipped videos. Re-running on
    the same OUT resumes where an interrupted run stopped.
    """
    try:
        cfg = ShardConfig(**options, progress=not quiet)
        result = make_shards(cfg)
    except (SourceError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted; finished shards are kept, re-run the same command to resume", 130)
    click.echo(format_summary(result))
    if cfg.strict and result.manifest["skipped"]:
        fail(f"{len(result.manifest['skipped'])} videos skipped (--strict)", 1)


@cli.command("merge-manifests")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
def merge_manifests_cmd(out):
    """Merge the manifest-nodeNNN.json files of a --num-nodes run in OUT into OUT/manifest.json."""
    try:
        m = merge_manifests(out)
    except ManifestError as e:
        fail(str(e))
    click.echo(f"{out / 'manifest.json'}: {m['num_samples']} frames in {m['num_shards']} shards from {m['params']['num_nodes']} nodes")


cli.add_command(make_shards_cmd)


def main():
    cli(prog_name="vrestore")


def make_shards_main():
    make_shards_cmd(prog_name="make-shards")
