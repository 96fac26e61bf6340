"""Comparison pictures: images side by side with white gaps, as NHWC/HWC uint8 arrays, and PNG
files of them (Pillow: no ffmpeg process per picture, so training needs no ffmpeg binary)."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vrestore.pipeline.atomic import atomic_path

GAP = 4


def hwc_uint8(x: torch.Tensor) -> np.ndarray:
    """NCHW levels on the 0..255 scale (already rounded) -> NHWC uint8 on the host."""
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def image_grid(columns: list, gap: int = GAP) -> np.ndarray:
    """Rows of samples, one column per list entry (each (N, H, W, 3)), white gaps between."""
    n, h, w, _ = columns[0].shape
    grid = np.full((n * (h + gap) - gap, len(columns) * (w + gap) - gap, 3), 255, np.uint8)
    for c, images in enumerate(columns):
        for r in range(n):
            grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = images[r]
    return grid


def side_by_side(frames: list, gap: int = GAP) -> np.ndarray:
    """(N, H, W, 3) batches of the same frames -> (N, H, k*W + gaps, 3), left to right."""
    n, h, _, _ = frames[0].shape
    white = np.full((n, h, gap, 3), 255, np.uint8)
    parts = []
    for i, f in enumerate(frames):
        parts += [white, f] if i else [f]
    return np.concatenate(parts, axis=2)


def write_png(path, image: np.ndarray) -> None:
    """An (H, W, 3) uint8 image to a PNG file, written under a temporary name and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB").save(tmp, format="PNG")
