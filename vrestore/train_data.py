"""`vrestore train --videos`: the shards a training run reads, made from a folder of videos
before the trainer starts (the trainer itself only reads shards)."""
import os
import sys

from vrestore.pipeline.atomic import atomic_path
from vrestore.pipeline.dataset.holdout import hold_out
from vrestore.pipeline.dataset.make_shards import make_shards, select_videos
from vrestore.pipeline.dataset.shard_config import ShardConfig
from vrestore.trainer.config import TrainConfig


def shards_from_videos(cfg: TrainConfig) -> tuple:
    """--videos: make-shards into OUT/shards/train (for windows of --frames frames), and, without
    --val-shards, a seeded --val-fraction of whole videos (whole UCF-101 groups) into
    OUT/shards/val for validation; reusing what a previous run made there when the settings
    match (make-shards' own resume check). Returns (train shards, validation shards or None)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--videos shards in one process; under torchrun, run make-shards first and pass --shards")
    root = cfg.out / "shards"
    common = dict(split_file=cfg.split_file, use_first_100=cfg.use_first_100)
    entries, _ = select_videos(ShardConfig(cfg.videos, root, **common))
    if cfg.val_split_file:  # a validation list of its own (sample-videos' vallist01.txt): no hold-out
        val_entries, _ = select_videos(ShardConfig(cfg.videos, root, split_file=cfg.val_split_file))
        held = {e.rel for e in val_entries}
        train_entries = [e for e in entries if e.rel not in held]
    else:
        train_entries, val_entries = hold_out(entries, 0 if cfg.val_shards else cfg.val_fraction, cfg.seed)
    lists = {"train": train_entries, "val": val_entries}
    made = {}
    for name, chosen in lists.items():
        if not chosen:
            continue
        out = root / name
        out.mkdir(parents=True, exist_ok=True)
        split = root / f"{name}_videos.txt"
        text = "".join(f"{e.rel}\n" for e in chosen)
        if not split.is_file() or split.read_text() != text:
            with atomic_path(split) as tmp:
                tmp.write_text(text)
        result = make_shards(ShardConfig(cfg.videos, out, split_file=split, clip_len=cfg.frames or 1, progress=cfg.progress,
                                         preset=cfg.preset or "seed", real=cfg.real))
        m = result.manifest
        print(("reusing " if result.already_complete else "made ") + f"{out}: {m['num_samples']} samples "
              f"from {len(m['videos'])} videos ({len(m['skipped'])} skipped)", file=sys.stderr)
        made[name] = out
    if val_entries:
        why = f"from {cfg.val_split_file}" if cfg.val_split_file else f"held out: {cfg.val_fraction:g} of the groups"
        print(f"validation: {len(val_entries)} videos ({why}; listed in {root / 'val_videos.txt'}), none of them trained on",
              file=sys.stderr)
    return made["train"], made.get("val")
