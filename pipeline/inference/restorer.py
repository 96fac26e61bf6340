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
from vrestore.pipeline.devices import amp_dtype, resolve_device
from vrestore.pipeline.evaluation.metrics import to_255
from vrestore.pipeline.evaluation.pictures import hwc_uint8
from vrestore.pipeline.inference.frame_windows import sliding_windows
from vrestore.pipeline.inference.memory_cap import budget_bytes, bytes_per_pixel, check_max_memory, tile_for, windows_per_pass


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
        self.plans = {}  # (H, W) -> (windows per pass, tile or None)
        self.notes = {}  # (H, W) -> the plan in words (restore says it once per frame size, the report keeps it)
        self._reach = None  # pixels of context a tile's seam needs: measured at the first tiled plan

    def plan(self, h: int, w: int) -> tuple:
        """Windows per forward pass and the tile side (None: whole frames) for H x W frames."""
        if (h, w) not in self.plans:
            tile = self.tile if self.tile and (h > self.tile or w > self.tile) else None
            ph, pw = (-(-h // self.multiple) * self.multiple, -(-w // self.multiple) * self.multiple) if tile is None else (tile, tile)
            n = windows_per_pass(self.per_pixel, ph, pw, self.budget)
            cap_unmet = False
            if n == 0 and tile is None:  # not one whole frame fits: tiles that do
                tile = tile_for(self.per_pixel, self.budget, self.multiple)
                n = windows_per_pass(self.per_pixel, tile, tile, self.budget)
                cap_unmet = n == 0  # not even the smallest tile fits
            self.plans[(h, w)] = (max(n, 1), tile)
            self.notes[(h, w)] = self._describe(h, w, max(n, 1), tile, cap_unmet)
        return self.plans[(h, w)]

    def _describe(self, h: int, w: int, per_pass: int, tile, cap_unmet: bool) -> str:
        passes = f"up to {per_pass} window{'s' * (per_pass > 1)} per pass"
        if tile is None:
            return f"{w}x{h}: whole frames, {passes}"
        overlap, reach = self.overlap(tile), self.reach()
        words = f"{w}x{h}: tiles of {tile} px overlapping by {overlap} px, {passes}"
        if overlap < reach:
            words += (f"; the generator reaches {reach} px, more than a {tile}-px tile leaves around its centre, "
                      "so seams may show (a larger --tile or --max-memory avoids it)")
        else:
            words += f" (the generator reaches {reach} px: tiled frames match whole ones)"
        if cap_unmet:
            words += (f"; --max-memory cannot be met: even one {tile}-px window needs "
                      f"{self.per_pixel * tile * tile / 2**30:.3g} GiB, used anyway (slow)")
        return words

    def reach(self) -> int:
        """How far (pixels) context changes this generator's output by half a level or more,
        measured once (a strip of m x 8m pixels, m the multiple): restored whole and cut in half, compared beside the cut; rounded
        up to 8, plus 8. A seam needs this much overlap on each side to match whole frames."""
        if self._reach is None:
            rows, cols = self.multiple, 8 * self.multiple  # as many pixels as a tile of 2.8 multiples
            strip = torch.rand(1, 3 * self.frames, rows, cols, generator=torch.Generator().manual_seed(0), device="cpu")
            # smooth, picture-like content with edges: coarse noise scaled up, in [-1, 1]
            coarse = torch.nn.functional.interpolate(strip[..., ::8, ::8], size=(rows, cols), mode="bilinear", align_corners=False)
            x = (coarse * 2 - 1).to(self.device)
            cut = cols // 2
            with torch.no_grad():
                whole, half = self._forward(x)[..., :cut], self._forward(x[..., :cut])
            beyond = ((whole - half).abs() * 127.5 > 0.5).flatten(0, 2).any(0).nonzero()
            far = cut - int(beyond.min()) if len(beyond) else 0
            self._reach = -(-far // 8) * 8 + 8  # and a margin: pictures are not this probe
        return self._reach

    def overlap(self, tile: int) -> int:
        """Each tile's context on every side: the generator's reach, rounded up to its multiple
        (2^depth) so every tile starts on the whole frame's grid (strided convolutions are not
        shift-invariant: a tile off that grid differs everywhere), as far as a tile leaves a
        centre of at least one multiple."""
        m = self.multiple
        return min(-(-self.reach() // m) * m, (tile - m) // 2 // m * m)

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
        """Overlapping tiles of the frame as the whole-frame pass sees it: mirror-padded to the
        generator's multiple (pad_to_multiple's centred padding), each tile cut on that padded
        frame's grid and gathered by index (no padded or float copy of the whole frame is made;
        memory: the tile's, see plan). Each keeps only its centre, where it saw `overlap` pixels
        of context on every side, as the whole frame gives it."""
        n, _, h, w, _ = part.shape
        m, overlap = self.multiple, self.overlap(tile)
        step = tile - 2 * overlap
        ph, pw = -h % m, -w % m
        top, left = ph // 2, pw // 2
        reflect = ph < h and pw < w  # pad_to_multiple's rule: reflect, or replicate for tiny frames

        def source(start, stop, pad_before, size):  # padded coordinates -> the frame's rows or columns
            i = np.arange(start, stop) - pad_before
            if reflect:
                i = np.abs(i)
                return np.where(i >= size, 2 * (size - 1) - i, i)
            return np.clip(i, 0, size - 1)

        out = np.empty((n, h, w, 3), np.uint8)
        for y0 in range(0, h + ph, step):
            for x0 in range(0, w + pw, step):
                y1, x1 = min(y0 + step, h + ph), min(x0 + step, w + pw)
                ya, xa, yb, xb = max(y0 - overlap, 0), max(x0 - overlap, 0), min(y1 + overlap, h + ph), min(x1 + overlap, w + pw)
                rows, cols = source(ya, yb, top, h), source(xa, xb, left, w)
                y = self._forward(self._to_input(part[:, :, rows][:, :, :, cols]))
                # the centre, less the padding: frame rows y0-top .. y1-top (clipped to the frame)
                fy0, fy1, fx0, fx1 = max(y0 - top, 0), min(y1 - top, h), max(x0 - left, 0), min(x1 - left, w)
                if fy0 < fy1 and fx0 < fx1:
                    out[:, fy0:fy1, fx0:fx1] = hwc_uint8(to_255(y[..., fy0 + top - ya : fy1 + top - ya, fx0 + left - xa : fx1 + left - xa]))
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
