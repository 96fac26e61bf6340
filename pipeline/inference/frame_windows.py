"""The neighbours a multi-frame generator sees: frame t with t-k .. t+k (T = 2k + 1), streamed.

At the ends the window is mirrored, BasicSR's 'reflection' padding: for T = 5, frame 0 sees
frames [2, 1, 0, 1, 2] and the last frame n-1 sees [n-3, n-2, n-1, n-2, n-3]. Training never
needs it (make-shards' clips lie wholly inside a video); restore uses it for every frame.
"""
from typing import Optional

import numpy as np


def window_index(i: int, n: Optional[int]) -> int:
    """Frame index i (possibly outside 0..n-1) mirrored into a video of n frames; n None: the
    end is not known yet (only the start mirrors)."""
    i = -i if i < 0 else i
    if n is None:
        return i
    i = 2 * (n - 1) - i if i > n - 1 else i
    return min(max(i, 0), n - 1)  # a video shorter than the window: as near as it has


def window_indices(t: int, n: Optional[int], frames: int) -> list:
    k = frames // 2
    return [window_index(t + d, n) for d in range(-k, k + 1)]


def sliding_windows(batches, frames: int):
    """Yield (centre frames (m, H, W, 3), windows (m, T, H, W, 3)) from batches of consecutive
    frames, one output per input batch once enough neighbours have come (and the rest at the
    end). Memory holds a batch plus 2k frames, never the video."""
    k = frames // 2
    if k == 0:  # a single-frame generator: no neighbours to gather, no copy
        for batch in batches:
            yield batch, batch[:, None]
        return
    buf, first, t = [], 0, 0  # buf[j] is frame first + j; t: the next frame to emit

    def emit(upto: int, n=None):
        nonlocal t
        ts = range(t, upto)
        t = upto
        if not ts:
            return None
        windows = np.stack([np.stack([buf[i - first] for i in window_indices(s, n, frames)]) for s in ts])
        return windows[:, k], windows

    for batch in batches:
        buf.extend(batch)
        out = emit(max(t, first + len(buf) - k))  # frames whose right neighbours have all come
        if out is not None:
            yield out
        drop = max(0, min(t - k, first + len(buf)) - first)  # frames no later window reaches back to
        del buf[:drop]
        first += drop
    out = emit(first + len(buf), n=first + len(buf))
    if out is not None:
        yield out
