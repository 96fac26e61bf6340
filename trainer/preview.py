"""`vrestore preview`: one batch of the training pipeline as a picture, clean | degraded."""
from pathlib import Path

import numpy as np
import torch

from pipeline.degradations import DegradationSpec
from pipeline.pictures import image_grid
from pipeline.video_io import write_png
from trainer.dali_input import load_shard_set, train_batches


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW -> 0..255 NHWC uint8."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def make_preview(shards: Path, out: Path, spec: DegradationSpec, n: int = 8, crop: int = 128, device="cpu", seed: int = 0) -> Path:
    batch = next(iter(train_batches(load_shard_set(shards), spec, n, crop, torch.device(device), seed=seed)))
    write_png(out, image_grid([to_uint8_hwc(batch["clean"]), to_uint8_hwc(batch["degraded"])]))
    return Path(out)
