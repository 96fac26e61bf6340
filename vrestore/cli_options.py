"""What every command of the CLI shares: one-line errors and exit codes, signal handling, and the
option groups several commands take (the seed degradations, the real preset's ranges)."""
import dataclasses
import functools
import signal
import sys
import typing
from pathlib import Path

import click

from vrestore.models.weights import WeightsError
from vrestore.pipeline.dataset.manifest import ManifestError
from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.degrade.real_world import PRESETS, PROBABILITIES, RANGES, VIDEO_CODECS, RealSpec
from vrestore.pipeline.media.discover import SourceError

# What the library raises for bad options or inputs as a whole: shown as one line, exit 2.
USAGE_ERRORS = (ValueError, SourceError, ManifestError, WeightsError, FileNotFoundError, NotADirectoryError)


def fail(message: str, code: int = 2):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


# the extra that brings each optional module (setup.cfg's extras_require)
EXTRA_OF = {"nvidia": "train", "webdataset": "train", "wds2idx": "train", "matplotlib": "plots", "skimage": "samples",
            "skvideo": "samples", "ray": "cluster", "onnx": "export", "onnxscript": "export", "onnxruntime": "export"}


def missing_extra(err: ImportError):
    """The one line for a command whose optional packages are not installed, or None when the
    missing module is not one an extra brings (then it is a real error)."""
    top = (err.name or "").split(".")[0]
    if top not in EXTRA_OF:
        return None
    extra = EXTRA_OF[top]
    return f"this command needs the {extra} extra ({top} is not installed): pip install 'video-restoration-gan[{extra}]'"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def one_line_errors(interrupted: str = "interrupted; no half-written file was left"):
    """Usage errors as one line (exit 2); Ctrl-C and SIGTERM unwind like an exception, so every
    `with` block removes its temporary files, and exit 130.

    SIGINT is set here too: Python installs its Ctrl-C handler only when the process did not
    inherit SIGINT as ignored, and a non-interactive shell starts its background jobs (`cmd &`)
    with it ignored, so `kill -INT` would otherwise go unheard and the command run on."""
    def wrap(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            old = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt:
                fail(interrupted, 130)
            except ImportError as e:
                if (line := missing_extra(e)) is None:
                    raise
                fail(line)
            except USAGE_ERRORS as e:
                fail(str(e))
            except OSError as e:  # a full disk or an I/O error once work began: one line naming the file, exit 1
                where = f"{e.filename}: " if e.filename else ""
                fail(f"{where}{e.strerror or e}; files written under temporary names were removed", 1)
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)
        return run
    return wrap


def parse_range(ctx, param, value):
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected LOW,HIGH") from None
    return low, high


PRESET_HELP = ("seed: the blur, noise and boxes above; real: blur, resize, noise, JPEG, grain, fade and a real "
               "video encoder, drawn per video (the --real-* options; docs/degradations.md).")


def real_options(command, preset_default="seed", preset_help=PRESET_HELP):
    """--preset and the real preset's ranges and probabilities (real_world.py), one option each."""
    options = [click.option("--preset", type=click.Choice(PRESETS), default=preset_default, show_default=preset_default is not None,
                            help=preset_help)]
    for name, (low, high) in RANGES.items():
        options.append(click.option(f"--real-{name.replace('_', '-')}", default=f"{low:g},{high:g}", show_default=True, callback=parse_range,
                                    help=f"real: the range {name.replace('_', ' ')} is drawn from, LOW,HIGH."))
    for name, p in PROBABILITIES.items():
        options.append(click.option(f"--real-p-{name.replace('_', '-')}", type=float, default=p, show_default=True,
                                    help=f"real: chance per video of {name.replace('_', ' ')}."))
    options += [
        click.option("--real-codecs", default=",".join(VIDEO_CODECS), show_default=True, help="real: the encoders drawn from."),
        click.option("--real-boxes", is_flag=True, help="real: the seed's gray boxes on top (after the codec)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def pop_real(options: dict) -> RealSpec:
    ranges = {name: options.pop(f"real_{name}") for name in RANGES}
    probabilities = {name: options.pop(f"real_p_{name}") for name in PROBABILITIES}
    codecs = tuple(c for c in options.pop("real_codecs").split(",") if c)
    return RealSpec(ranges, probabilities, codecs, options.pop("real_boxes"))


def config_options(cls, skip=()):
    """click options built from the fields of config dataclass `cls` that carry a help text
    (pipeline/options.py): `--field-name`, its default, type and help from the field. bool
    fields become flags (`--x` when False by default, `--x/--no-x` when True)."""
    hints = typing.get_type_hints(cls)

    def decorate(command):
        for f in reversed(dataclasses.fields(cls)):
            if f.name in skip or "help" not in f.metadata:
                continue
            meta, kind = f.metadata, hints[f.name]
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            base = args[0] if typing.get_origin(kind) is typing.Union and len(args) == 1 else kind
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory
            name = meta.get("flag") or "--" + f.name.replace("_", "-")
            kw = {"help": meta["help"], "show_default": meta["show_default"], "default": default}
            if meta.get("metavar"):
                kw["metavar"] = meta["metavar"]
            if meta.get("parse"):  # text in, the field's value out (e.g. 1,1,1,2 -> a tuple)
                kw["callback"] = _parsed_by(meta["parse"])
                kw["default"] = ",".join(map(str, default)) if isinstance(default, tuple) else default
            if base is bool:
                decls = [name] if default is False else [f"{name}/--no-{name[2:]}"]
                decls = decls + [f.name] if meta.get("flag") else decls
                kw["is_flag"] = True
                if default is False:
                    kw["show_default"] = False
            else:
                decls = [name, f.name] if meta.get("flag") else [name]  # the flag's value lands on the field
                if meta.get("bare") is not None:  # the option alone, without a value, means this one
                    kw["is_flag"], kw["flag_value"] = False, meta["bare"]
                if meta.get("choices"):
                    kw["type"] = click.Choice(list(meta["choices"]))
                elif base is Path:
                    kw["type"] = click.Path(path_type=Path, **(meta.get("path") or {}))
                elif base in (int, float, str) and not meta.get("parse"):
                    kw["type"] = base
            decls = [meta["short"], *decls] if meta.get("short") else decls
            command = click.option(*decls, **kw)(command)
        return command
    return decorate


def _parsed_by(parse):
    def callback(ctx, param, value):
        try:
            return parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return callback


def degradation_options(command):
    """The spec's numbers as options, shared by every command that degrades (one set of defaults)."""
    return config_options(DegradationSpec)(command)


def pop_spec(options: dict) -> DegradationSpec:
    names = DegradationSpec.__dataclass_fields__
    return DegradationSpec(**{k: options.pop(k) for k in list(options) if k in names})
