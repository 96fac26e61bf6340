"""`vrestore preview`: one batch of the training pipeline as a picture: clean | degraded (for
T-frame shards: clean centre | degraded t-k .. t+k, one crop window for all)."""
from pathlib import Path

import torch

from vrestore.pipeline.evaluation.metrics import to_255
from vrestore.pipeline.evaluation.pictures import hwc_uint8, image_grid, write_png
from vrestore.pipeline.atomic import check_writable
from vrestore.pipeline.dataset.shard_set import load_shard_set
from vrestore.trainer.config import PreviewConfig
from vrestore.trainer.dali_input import train_batches


def make_preview(cfg: PreviewConfig, device: torch.device) -> Path:
    """One batch of the training pipeline on `device` as a clean | degraded grid at cfg.out."""
    out = cfg.out
    if out.resolve().is_relative_to(cfg.shards.resolve()):
        raise ValueError(f"--out {out} is inside the shards folder {cfg.shards}; write the picture elsewhere")
    check_writable(out.parent, "--out")
    shards = load_shard_set(cfg.shards)
    if cfg.preset is not None and cfg.preset != shards.preset:
        raise ValueError(f"--preset {cfg.preset}, but {cfg.shards} was made with --preset {shards.preset}; make shards with "
                         f"make-shards --preset {cfg.preset}")
    batch = next(iter(train_batches(shards, cfg.spec, cfg.num, cfg.crop, device, seed=cfg.seed)))
    # clean centre | each degraded frame of the window (one column for per-frame shards)
    degraded = [hwc_uint8(to_255(frame)) for frame in batch["degraded"].split(3, dim=1)]
    write_png(out, image_grid([hwc_uint8(to_255(batch["clean"])), *degraded]))
    return out
