"""The generator on a device for restore: weights loaded in eval mode (dropout off, running
batch-norm statistics: in training mode each frame would get its own noise and statistics and the
video would flicker), frames padded to its 2^depth and cropped back, and the memory plan that
sizes each forward pass (whole frames, or overlapping tiles) to a budget fixed at start."""
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vrestore.models import pad_to_multiple
from vrestore.models.weights import load_network
from vrestore.pipeline.devices import resolve_device
from vrestore.pipeline.evaluation.metrics import to_255
from vrestore.pipeline.evaluation.pictures import hwc_uint8
from vrestore.pipeline.inference.frame_windows import sliding_windows
from vrestore.pipeline.inference.memory_cap import budget_bytes, bytes_per_pixel, check_max_memory, tile_for, windows_per_pass
from vrestore.pipeline.precision import amp_dtype


class Restorer:
    """The generator on a device: windows of frames in, (N, H, W, 3) uint8 frames out."""

    def __init__(self, weights: Path, device="auto", amp="auto", channels_last=True, tile: Optional[int] = None,
                 max_memory: Optional[float] = None, share: int = 1):
        self.device = resolve_device(device)
        self.G = load_network(weights, "generator").eval().to(self.device)
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.G = self.G.to(memory_format=self.fmt)
        self.multiple, self.frames = self.G.cfg.multiple, self.G.cfg.frames
        if tile is not None and (tile < self.multiple or tile % self.multiple):
            raise ValueError(f"--tile must be a multiple of {self.multiple} (this generator's 2^depth)")
        check_max_memory(max_memory)
        self.tile = tile
        self.dtype = amp_dtype(amp, self.device)
        # memory: one window's peak bytes per pixel, measured once; the budget is fixed at start
        self.budget = budget_bytes(self.device, max_memory, share if self.device.type == "cpu" else 1)
        self.per_pixel = bytes_per_pixel(self._forward, 3 * self.frames, self.multiple, self.device)
        self.plans = {}  # (H, W) -> (windows per pass, tile or None), said once per size

    def plan(self, h: int, w: int) -> tuple:
        """Windows per forward pass and the tile side (None: whole frames) for H x W frames."""
        if (h, w) not in self.plans:
            tile = self.tile if self.tile and (h > self.tile or w > self.tile) else None
            ph, pw = (-(-h // self.multiple) * self.multiple, -(-w // self.multiple) * self.multiple) if tile is None else (tile, tile)
            n = windows_per_pass(self.per_pixel, ph, pw, self.budget)
            if n == 0 and tile is None:  # not one whole frame fits: tiles that do
                tile = tile_for(self.per_pixel, self.budget, self.multiple)
                n = max(1, windows_per_pass(self.per_pixel, tile, tile, self.budget))
            self.plans[(h, w)] = (max(n, 1), tile)
        return self.plans[(h, w)]

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else nullcontext()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Any size: mirror-pad to the generator's multiple, run, crop back (never resize)."""
        padded, crop_back = pad_to_multiple(x, self.multiple)
        with self._autocast():
            return crop_back(self.G(padded.contiguous(memory_format=self.fmt))).float()

    def _window_pass(self, part: np.ndarray) -> np.ndarray:
        """(N, T, H, W, 3) uint8 windows -> (N, H, W, 3) uint8 frames, whole frames in one pass."""
        return hwc_uint8(to_255(self._forward(self._to_input(part))))

    def _to_input(self, part: np.ndarray) -> torch.Tensor:
        """(N, T, H, W, 3) uint8 -> (N, 3T, H, W) float in [-1, 1], frame-major as training stacks them."""
        n, t, h, w, _ = part.shape
        x = torch.from_numpy(part).to(self.device, non_blocking=True).permute(0, 2, 3, 1, 4).reshape(n, h, w, t * 3)
        return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1)

    def _tiled(self, part: np.ndarray, tile: int) -> np.ndarray:
        """Overlapping tiles; each keeps only its centre, so seams fall where both sides saw
        `overlap` pixels of context. Each tile is converted from and back to uint8 on its own,
        so no float copy of the whole frame is ever made (memory: the tile's, see plan)."""
        n, _, h, w, _ = part.shape
        overlap = min(32, tile // 4)
        step = tile - 2 * overlap
        out = np.empty((n, h, w, 3), np.uint8)
        for y0 in range(0, h, step):
            for x0 in range(0, w, step):
                y1, x1 = min(y0 + step, h), min(x0 + step, w)
                ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)
                y = self._forward(self._to_input(part[:, :, ya : min(y1 + overlap, h), xa : min(x1 + overlap, w)]))
                out[:, y0:y1, x0:x1] = hwc_uint8(to_255(y[..., y0 - ya : y1 - ya, x0 - xa : x1 - xa]))
        return out

    @torch.no_grad()
    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """(N, T, H, W, 3) uint8 windows (frames t-k .. t+k) -> (N, H, W, 3) restored frames t;
        a single-frame generator also takes (N, H, W, 3)."""
        if windows.ndim == 4:
            windows = windows[:, None]
        if not windows.flags.writeable:  # e.g. np.frombuffer over bytes: torch wants writable memory
            windows = windows.copy()
        n, _, h, w, _ = windows.shape
        per_pass, tile = self.plan(h, w)
        if per_pass >= n and tile is None:
            return self._window_pass(windows)
        out = np.empty((n, h, w, 3), np.uint8)  # filled pass by pass: no list of parts and concatenated copy
        for i in range(0, n, per_pass):  # a pass at a time: its float copy and activations bounded
            part = windows[i : i + per_pass]
            out[i : i + len(part)] = self._tiled(part, tile) if tile else self._window_pass(part)
        return out

    def stream(self, batches):
        """Yield (input frames, restored frames) for batches of consecutive frames of one video,
        each frame restored from its mirrored window of neighbours."""
        for centre, windows in sliding_windows(batches, self.frames, self.G.cfg.frame_spacing):
            yield centre, self(windows)
