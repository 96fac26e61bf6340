"""The one definition of the degradations the GAN learns to undo: blur -> noise -> boxes.

Training, `vrestore degrade` and evaluation all take their numbers from `DegradationSpec`. In
training, DALI blurs (on the GPU when training on one; tests/test_degradations.py proves its blur
equal to `gaussian_blur` here at per-frame sigmas) and torch adds the noise and the boxes with
`add_noise` and `add_boxes` below, on the training device. The real preset (real_world.py) builds
its blur and noise on the same `gaussian_kernel` and `gaussian_noise`. Images are float tensors
on the 0..255 scale, NCHW; every seed step rounds to whole levels, as an 8-bit video of the
degraded frames would hold.
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from vrestore.pipeline.options import option


@dataclass(frozen=True)
class DegradationSpec:
    # 1.4: what OpenCV picks for a 7x7 window, 0.3*((7-1)*0.5-1)+0.8
    blur_window: int = option(7, "Gaussian blur window, pixels (odd).")
    blur_sigma: float = option(1.4, "Blur sigma (the lower end of the range when --blur-sigma-max is set).")
    blur_sigma_max: Optional[float] = option(None, "Draw sigma per frame from [blur-sigma, this].")
    noise_std: float = option(15.0, "Additive Gaussian noise std on the 0-255 scale (clipped).")
    noise_std_max: Optional[float] = option(None, "Draw the std per frame from [noise-std, this].")
    boxes_min: int = option(1, "Fewest occlusion boxes per frame.")
    boxes_max: int = option(3, "Most occlusion boxes per frame.")
    box_min_frac: float = option(0.10, "Smallest box side, as a fraction of the frame side.")
    box_max_frac: float = option(0.25, "Largest box side, as a fraction of the frame side.")
    box_value: int = option(128, "Gray level of the boxes.")

    def __post_init__(self):
        checks = [
            (self.blur_window >= 1 and self.blur_window % 2 == 1, f"--blur-window {self.blur_window}: must be odd and >= 1"),
            (self.blur_sigma > 0, f"--blur-sigma {self.blur_sigma}: must be > 0"),
            (self.blur_sigma_max is None or self.blur_sigma_max >= self.blur_sigma, f"--blur-sigma-max {self.blur_sigma_max}: must be >= --blur-sigma {self.blur_sigma}"),
            (self.noise_std >= 0, f"--noise-std {self.noise_std}: must be >= 0"),
            (self.noise_std_max is None or self.noise_std_max >= self.noise_std, f"--noise-std-max {self.noise_std_max}: must be >= --noise-std {self.noise_std}"),
            (0 <= self.boxes_min <= self.boxes_max, f"--boxes-min {self.boxes_min} / --boxes-max {self.boxes_max}: need 0 <= min <= max"),
            (0 < self.box_min_frac <= self.box_max_frac <= 1, f"--box-min-frac {self.box_min_frac} / --box-max-frac {self.box_max_frac}: need 0 < min <= max <= 1"),
            (0 <= self.box_value <= 255, f"--box-value {self.box_value}: must be in 0..255"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def draw_uniform(low: float, high: Optional[float], n: int, generator, device) -> torch.Tensor:
    if high is None or high == low:
        return torch.full((n,), float(low), device=device)
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def gaussian_kernel1d(window: int, sigma: torch.Tensor) -> torch.Tensor:
    """(N, window) normalised Gaussian taps, one row per sigma: the sampled Gaussian, as DALI's
    gaussian_blur and OpenCV build it."""
    x = torch.arange(window, dtype=torch.float32, device=sigma.device) - (window - 1) / 2
    k = torch.exp(-(x[None, :] ** 2) / (2 * sigma[:, None].float() ** 2))
    return k / k.sum(dim=1, keepdim=True)


def gaussian_kernel(window: int, sigma_y: float, sigma_x: float, angle: float = 0.0) -> torch.Tensor:
    """(window, window) Gaussian summing to 1, sigmas along axes rotated by `angle` (radians).
    Isotropic: exactly the outer product of the separable taps `gaussian_blur` uses."""
    if sigma_y == sigma_x:
        k = gaussian_kernel1d(window, torch.tensor([float(sigma_y)]))[0]
        return torch.outer(k, k)
    r = torch.arange(window, dtype=torch.float64) - window // 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    k = torch.exp(-(u**2 / (2 * sigma_x**2) + v**2 / (2 * sigma_y**2)))
    return (k / k.sum()).float()


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, window: int) -> torch.Tensor:
    """Separable Gaussian blur, one sigma per image ((N,) tensor), mirrored borders (reflect-101,
    DALI's and OpenCV's default); float out, unrounded."""
    n, c, h, w = images.shape
    k = gaussian_kernel1d(window, sigma).repeat_interleave(c, dim=0)  # (N*C, K)
    r = window // 2
    # reflect needs the frame larger than the blur's radius; a frame of a few pixels (no
    # training crop is that small) repeats its edge instead of failing
    x = F.pad(images.float().reshape(1, n * c, h, w), (r, r, r, r), mode="reflect" if min(h, w) > r else "replicate")
    x = F.conv2d(x, k[:, None, :, None], groups=n * c)  # vertical
    x = F.conv2d(x, k[:, None, None, :], groups=n * c)  # horizontal
    return x.reshape(n, c, h, w)


def blur(images: torch.Tensor, spec: DegradationSpec, generator=None) -> torch.Tensor:
    """The seed preset's blur: a sigma per image from the spec, whole levels out."""
    sigma = draw_uniform(spec.blur_sigma, spec.blur_sigma_max, images.shape[0], generator, images.device)
    return gaussian_blur(images, sigma, spec.blur_window).round_().clamp_(0, 255)


def gaussian_noise(shape, std, generator=None, device="cpu") -> torch.Tensor:
    """Zero-mean Gaussian noise of `shape`; `std` a number or a tensor broadcasting to it (per
    image, or per pixel for shot noise)."""
    return torch.randn(shape, generator=generator, device=device) * std


def add_noise(images: torch.Tensor, spec: DegradationSpec, generator=None) -> torch.Tensor:
    n = images.shape[0]
    std = draw_uniform(spec.noise_std, spec.noise_std_max, n, generator, images.device)
    noise = gaussian_noise(images.shape, std.view(n, 1, 1, 1), generator, images.device)
    return (images.float() + noise).round_().clamp_(0, 255)


def box_mask(n: int, h: int, w: int, spec: DegradationSpec, generator=None, device="cpu", frame_hw=None) -> torch.Tensor:
    """(N, 1, H, W) bool: True inside 1..3 boxes per frame, all frames drawn at once.

    `frame_hw` ((N, 2) sizes): the images are H x W crops of frames of these sizes. Boxes are
    then sized and placed on the whole frame and the crop window is put at a random place in
    it, so a training crop carries exactly what a crop of a `degrade`d frame would: boxes
    scaled to the frame, some cut by the crop's edge, some outside it.
    """
    m = spec.boxes_max
    if m == 0:
        return torch.zeros(n, 1, h, w, dtype=torch.bool, device=device)
    rand = lambda *shape: torch.rand(*shape, generator=generator, device=device)
    if frame_hw is None:
        fh, fw = torch.full((n, 1), float(h), device=device), torch.full((n, 1), float(w), device=device)
    else:
        fh, fw = frame_hw[:, :1].to(device).float(), frame_hw[:, 1:2].to(device).float()
    count = spec.boxes_min + (rand(n) * (m - spec.boxes_min + 1)).long().clamp_(max=m - spec.boxes_min)
    frac = lambda: spec.box_min_frac + (spec.box_max_frac - spec.box_min_frac) * rand(n, m)
    bh, bw = (frac() * fh).round().clamp_(min=1), (frac() * fw).round().clamp_(min=1)
    y0, x0 = (rand(n, m) * (fh - bh + 1)).floor(), (rand(n, m) * (fw - bw + 1)).floor()
    if frame_hw is not None:  # into the crop window's coordinates
        y0 -= (rand(n, 1) * (fh - h + 1)).floor()
        x0 -= (rand(n, 1) * (fw - w + 1)).floor()
    active = torch.arange(m, device=device)[None, :] < count[:, None]  # (N, M)
    ys = torch.arange(h, device=device).view(1, 1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, 1, w)
    inside = (
        (ys >= y0[..., None, None]) & (ys < (y0 + bh)[..., None, None])
        & (xs >= x0[..., None, None]) & (xs < (x0 + bw)[..., None, None])
        & active[..., None, None]
    )  # (N, M, H, W)
    return inside.any(dim=1, keepdim=True)


def add_boxes(images: torch.Tensor, spec: DegradationSpec, generator=None, frame_hw=None):
    """Flat gray boxes; returns (images, mask). `frame_hw`: see `box_mask`."""
    n, _, h, w = images.shape
    mask = box_mask(n, h, w, spec, generator, images.device, frame_hw)
    return images.masked_fill(mask, float(spec.box_value)), mask


def degrade(images: torch.Tensor, spec: DegradationSpec, generator=None):
    """blur -> noise -> boxes on 0..255 NCHW frames; returns (degraded, box mask)."""
    return add_boxes(add_noise(blur(images, spec, generator), spec, generator), spec, generator)

