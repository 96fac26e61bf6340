"""Whole videos held out for validation when a run has no validation set of its own.

Never frames of a training video: a frame's neighbours in the same clip look almost the same, so
validating on them measures memory. UCF-101 names go further and hold out whole groups (the
clips of one group come from one recording), as UCF-101's own splits do.
"""
import hashlib
import math
import os

from vrestore.pipeline.media.discover import VideoEntry


def holdout_key(e: VideoEntry) -> str:
    return f"{e.cls}/g{e.group}" if e.group is not None else e.rel


def hold_out(entries: list, fraction: float, seed: int = 0) -> tuple:
    """(training entries, held-out entries): a seeded `fraction` of the groups (or videos), at
    least one, never all; the choice depends on the names only, not on their order. Nothing is
    held out when there is only one group."""
    keys = sorted({holdout_key(e) for e in entries})
    if len(keys) < 2 or fraction <= 0:
        return list(entries), []
    n = min(max(1, math.ceil(fraction * len(keys))), len(keys) - 1)
    ranked = sorted(keys, key=lambda k: hashlib.sha256(os.fsencode(f"holdout/{seed}/{k}")).hexdigest())
    held = set(ranked[:n])
    return [e for e in entries if holdout_key(e) not in held], [e for e in entries if holdout_key(e) in held]
