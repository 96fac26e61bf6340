"""The weights file format: `generator.pth` / `discriminator.pth`.

A dict of plain types and tensors, {"kind", "format", "config", "state_dict"}, so it loads with
`torch.load(path, weights_only=True)` and rebuilds its own network with no other flags.
Beside the networks it describes; like them it imports nothing else of this package, so the
caller writes it under a temporary name (the trainer through pipeline/atomic.py).
"""
import warnings
import zipfile
from pathlib import Path

import torch

from vrestore.models.networks import DiscriminatorConfig, GeneratorConfig, PatchDiscriminator, generator_for

FORMAT = 1
KINDS = {"generator": (GeneratorConfig, generator_for), "discriminator": (DiscriminatorConfig, PatchDiscriminator)}


class WeightsError(Exception):
    """A weights file that is missing, unreadable, or not what was asked for."""


def first_line(e: Exception, limit: int = 160) -> str:
    """An exception as one short line: its type and the first line of its message, if any."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:limit]}" if text else type(e).__name__


def weights_payload(net) -> dict:
    kind = "discriminator" if isinstance(net, PatchDiscriminator) else "generator"
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}  # loads anywhere, GPU or not
    return {"kind": kind, "format": FORMAT, "config": net.cfg.to_dict(), "state_dict": state}


def save_weights(path, net) -> None:
    """Write `net` as a weights file at `path`."""
    save_file(weights_payload(net), path)


class _WriteErrors:
    """A binary file that keeps the OSError of a failed write: torch.save reports one as a
    RuntimeError with neither errno nor file name ("basic_ios::clear: iostream error")."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        return self.f.flush()


def save_file(obj, path) -> None:
    """torch.save `obj` into `path` through a Python file, streamed (memory stays flat), so a full
    disk is an OSError naming the file, as every other write of ours is (cli_options: one line)."""
    path = Path(path)
    try:
        with open(path, "wb") as f:
            sink = _WriteErrors(f)
            try:
                torch.save(obj, sink)
            except RuntimeError:
                if sink.error is None:
                    raise
                raise OSError(sink.error.errno, sink.error.strerror, str(path)) from None
    except OSError as e:
        if e.filename is None:  # the final flush, on close
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def exported_format(path: Path):
    """"TorchScript" or "ONNX" when `path` is a file `vrestore export` (or torch) wrote for
    running elsewhere, not a weights file; None otherwise. Told by content, not by name."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "TorchScript"
        return None
    with open(path, "rb") as f:
        head = f.read(4096)
    # ONNX is a protobuf ModelProto: field 1 (ir_version, a varint) first, then the producer
    if head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head.lower()):
        return "ONNX"
    return None


def read_weights(path, kind: str) -> dict:
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder; give the {kind}.pth file in it")
    if not path.exists():
        raise WeightsError(f"{path}: no such file")
    if not path.is_file():
        raise WeightsError(f"{path}: not a regular file (a device or pipe), not a weights file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes), not a weights file")
    exported = exported_format(path)
    if exported:
        article = "an" if exported == "ONNX" else "a"
        raise WeightsError(f"{path}: {article} {exported} export, for running elsewhere; this command takes the {kind}.pth "
                           "that training wrote (vrestore export made this file from one)")
    try:
        with warnings.catch_warnings():  # torch warns, with its source path, before failing on foreign files
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and weights_only errors all mean "not our file"
        raise WeightsError(f"{path}: not a weights file ({first_line(e)})") from None
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise WeightsError(f"{path}: not a {kind} weights file (no config/state_dict; a training checkpoint.pt? use generator.pth)")
    if payload.get("kind") != kind:
        raise WeightsError(f"{path}: holds a {payload.get('kind')}, not a {kind}")
    if payload.get("format") != FORMAT:
        raise WeightsError(f"{path}: weights format {payload.get('format')!r}, this version reads format {FORMAT}; "
                           "use the version of vrestore that wrote it")
    return payload


def load_network(path, kind: str = "generator"):
    """Rebuild the network a weights file describes and load its weights (strictly)."""
    payload = read_weights(path, kind)
    config_cls, net_cls = KINDS[kind]
    try:
        net = net_cls(config_cls(**payload["config"]))
        net.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: weights do not fit the architecture they name ({first_line(e)})") from None
    for name, t in net.state_dict().items():  # a corrupted file can still unpickle; NaN weights restore nothing
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise WeightsError(f"{path}: {name} holds NaN or infinite values (a corrupted or diverged file)")
    return net
