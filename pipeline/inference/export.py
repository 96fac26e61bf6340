"""`vrestore export`: a trained generator as an ONNX or TorchScript file, to run without this
package (onnxruntime, TensorRT, C++ libtorch).

The network is exported in eval mode (no dropout, running batch-norm statistics, as restore
runs it). Input: (N, 3T, H, W) float32 in [-1, 1], the T frames t-k .. t+k stacked on channels,
H and W multiples of the generator's 2^depth (pad and crop back, as `vrestore restore` does);
output (N, 3, H, W) in [-1, 1], frame t. Batch, height and width are dynamic.
"""
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from vrestore.pipeline.atomic import atomic_path, check_writable, remove_dead_temp_files
from vrestore.pipeline.options import option
from vrestore.models.weights import load_network

FORMATS = ("onnx", "torchscript")


@dataclass
class ExportConfig:
    weights: Path
    out: Path
    format: str = option("onnx", "onnx (onnxruntime, TensorRT) or torchscript (torch.jit.load, C++ libtorch).", choices=FORMATS)
    overwrite: bool = option(False, "Replace OUT if it exists (never the weights file itself).")

    def __post_init__(self):
        self.weights, self.out = Path(self.weights), Path(self.out)
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}")
        if self.out.exists() and self.weights.exists() and self.out.resolve() == self.weights.resolve():
            raise ValueError(f"OUT {self.out} is the weights file: the export would replace it; choose another OUT")
        if self.out.exists() and not self.overwrite:
            raise ValueError(f"OUT {self.out} exists; choose another name or pass --overwrite to replace it")


def export_generator(cfg: ExportConfig) -> dict:
    """Write the file; returns what a caller needs to feed it."""
    G = load_network(cfg.weights, "generator").eval()
    m, channels = G.cfg.multiple, 3 * G.cfg.frames
    example = torch.zeros(2, channels, 2 * m, 2 * m)
    check_writable(cfg.out.parent, "OUT")
    remove_dead_temp_files(cfg.out.parent, cfg.out.name)  # a killed export's half-written file, nothing else
    # torch's exporter logs a warning per missing torchvision op and a FutureWarning of its own:
    # nothing a user can act on, and it buried the one line of a real error
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with atomic_path(cfg.out) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if cfg.format == "torchscript":
            # tracing records no sizes for convolutions and concatenations: any batch and any
            # H, W that are multiples of m run
            # saved to memory, then written from Python: libtorch's own file writer aborts the
            # process (C++ terminate) on a full disk instead of raising
            buffer = io.BytesIO()
            torch.jit.save(torch.jit.trace(G, example), buffer)
            tmp.write_bytes(buffer.getvalue())
        else:
            from torch.export import Dim  # here: 0.3 s of imports every other command does without

            height, width = Dim("height", min=1, max=1024), Dim("width", min=1, max=1024)
            program = torch.onnx.export(G, (example,), None, input_names=["frames"], output_names=["restored"], dynamo=True,
                                        verbose=False, dynamic_shapes=({0: Dim("batch", min=1, max=4096), 2: m * height, 3: m * width},))
            # one self-contained file: weights inside it (our generators are far below ONNX's 2 GB
            # limit), so the file can be copied alone and no data file is left beside it
            program.save(str(tmp), external_data=False)
    return {"input": f"(N, {channels}, H, W) float32 in [-1, 1], H and W multiples of {m}", "frames": G.cfg.frames, "multiple": m}
