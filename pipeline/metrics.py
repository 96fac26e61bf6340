"""Image quality figures shared by validation, `vrestore restore` and bench/quality.py.

Inputs are float tensors on the 0..255 scale, NCHW, already rounded as an 8-bit frame would be;
every function returns one value per image so callers can average over all frames of all
videos.
"""
import torch
import torch.nn.functional as F

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al. 2004


PSNR_CAP = 100.0  # dB for identical images, so one exact frame cannot make a mean infinite


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """(N,) dB, at most PSNR_CAP."""
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(peak**2 / mse)).clamp(max=PSNR_CAP)


def _gaussian_window(device) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=device) - SSIM_WINDOW // 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian over each channel, 'valid' region only (no padding artefacts)."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def ssim(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """(N,) mean SSIM over pixels and channels, Gaussian 11x11 window with sigma 1.5. Filtering
    runs in float32 (float64 convolutions are ~50x slower on the CPU); at 0..255 its rounding
    in the variance terms is ~1e-3, far below the constant c2 = 58.5 they are added to."""
    a, b = a.float(), b.float()
    g = _gaussian_window(a.device)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    # the five local moments in one grouped convolution
    mu_a, mu_b, aa, bb, ab = _filter(torch.cat([a, b, a * a, b * b, a * b], dim=1), g).chunk(5, dim=1)
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def to_255(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] network images to rounded 0..255 levels, as the written frame would hold."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round()
