"""The neighbours a multi-frame generator sees, streamed through a video: frame t with t-k ..
t+k (T = 2k + 1), mirrored at the ends by the rule in pipeline/media/neighbours.py (training's
windows use the same rule at the ends of a run of frames)."""
import numpy as np

from vrestore.pipeline.media.neighbours import window_indices


def sliding_windows(batches, frames: int, spacing: int = 1):
    """Yield (centre frames (m, H, W, 3), windows (m, T, H, W, 3)) from batches of consecutive
    frames, one output per input batch once enough neighbours have come (and the rest at the
    end); neighbours `spacing` frames apart (the model's training spacing). Memory holds a
    batch plus 2k * spacing frames, never the video."""
    k = frames // 2 * spacing  # how far a window reaches each way
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
        windows = np.stack([np.stack([buf[i - first] for i in window_indices(s, n, frames, spacing)]) for s in ts])
        return windows[:, frames // 2], windows

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
