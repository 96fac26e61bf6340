"""`vrestore preview`: one batch of the training pipeline as a picture: clean | degraded (for
clip shards: clean centre | degraded t-k .. t+k, one crop window for all)."""
from pathlib import Path

import torch

from pipeline.degradations import DegradationSpec
from pipeline.metrics import to_255
from pipeline.pictures import hwc_uint8, image_grid, write_png
from trainer.config import check_crop
from trainer.dali_input import load_shard_set, train_batches


def make_preview(shards: Path, out: Path, spec: DegradationSpec, n: int = 8, crop: int = 128, device="cpu", seed: int = 0) -> Path:
    check_crop(crop)
    if n < 1:
        raise ValueError("--num must be >= 1")
    batch = next(iter(train_batches(load_shard_set(shards), spec, n, crop, torch.device(device), seed=seed)))
    # clean centre | each degraded frame of the clip (one column for per-frame shards)
    degraded = [hwc_uint8(to_255(frame)) for frame in batch["degraded"].split(3, dim=1)]
    write_png(out, image_grid([hwc_uint8(to_255(batch["clean"])), *degraded]))
    return Path(out)
