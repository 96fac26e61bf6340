"""`vrestore preview`: one batch of the training pipeline as a picture: clean | degraded (for
T-frame shards: clean centre | degraded t-k .. t+k, one crop window for all)."""
from pathlib import Path

import torch

from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.evaluation.metrics import to_255
from vrestore.pipeline.evaluation.pictures import hwc_uint8, image_grid, write_png
from vrestore.pipeline.atomic import check_writable
from vrestore.pipeline.dataset.shard_set import load_shard_set
from vrestore.trainer.config import CROP
from vrestore.trainer.dali_input import train_batches


MAX_ROWS = 256  # a grid taller than this is no longer looked at, and the batch grows with it


def make_preview(shards: Path, out: Path, spec: DegradationSpec, n: int = 8, crop: int = CROP, device="cpu", seed: int = 0) -> Path:
    if not 1 <= n <= MAX_ROWS:
        raise ValueError(f"--num {n}: must be 1 to {MAX_ROWS} (one batch of that many samples is held in memory)")
    out = Path(out)
    if out.resolve().is_relative_to(Path(shards).resolve()):
        raise ValueError(f"--out {out} is inside the shards folder {shards}; write the picture elsewhere")
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: the picture is a PNG; give a name ending in .png")
    check_writable(out.parent, "--out")
    batch = next(iter(train_batches(load_shard_set(shards), spec, n, crop, torch.device(device), seed=seed)))
    # clean centre | each degraded frame of the window (one column for per-frame shards)
    degraded = [hwc_uint8(to_255(frame)) for frame in batch["degraded"].split(3, dim=1)]
    write_png(out, image_grid([hwc_uint8(to_255(batch["clean"])), *degraded]))
    return Path(out)
