"""Which frames a multi-frame generator sees around frame t: t-k .. t+k (T = 2k + 1; with a
spacing s: t-ks .. t+ks in steps of s), mirrored
at the ends (BasicSR's 'reflection' padding): for T = 5, frame 0 sees [2, 1, 0, 1, 2] and the
last frame n-1 sees [n-3, n-2, n-1, n-2, n-3]. One rule for restore (every frame of a video)
and for training (every frame of a stored run is the centre of a window), so the ends of a
video look the same to the model in both."""
from typing import Optional


def window_index(i: int, n: Optional[int]) -> int:
    """Frame index i (possibly outside 0..n-1) mirrored into a video of n frames; n None: the
    end is not known yet (only the start mirrors)."""
    i = -i if i < 0 else i
    if n is None:
        return i
    i = 2 * (n - 1) - i if i > n - 1 else i
    return min(max(i, 0), n - 1)  # a video shorter than the window: as near as it has


def window_indices(t: int, n: Optional[int], frames: int, spacing: int = 1) -> list:
    """`spacing`: frames between neighbours (a model trained on shards of --frame-stride S sees
    neighbours S source frames apart; restore gives it the same)."""
    k = frames // 2
    return [window_index(t + d * spacing, n) for d in range(-k, k + 1)]
