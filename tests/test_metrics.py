"""PSNR and SSIM (torchmetrics underneath) against independent computations: numpy and
scikit-image, within 1e-4 dB and 1e-6 SSIM, on frames small enough that borders matter."""
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from vrestore.pipeline.evaluation.metrics import psnr, ssim


def images(seed=0, n=3, h=40, w=56):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, (n, h, w, 3)).astype(np.float64)
    clean = (clean + np.roll(clean, 1, axis=1) + np.roll(clean, 1, axis=2)) / 3  # some structure
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).round()
    return clean.round(), noisy


def nchw(a):
    return torch.from_numpy(a).permute(0, 3, 1, 2).float()


def test_psnr_matches_numpy():
    clean, noisy = images()
    expected = [10 * np.log10(255**2 / np.mean((c - x) ** 2)) for c, x in zip(clean, noisy)]
    np.testing.assert_allclose(psnr(nchw(noisy), nchw(clean)).numpy(), expected, atol=1e-4)
    assert psnr(nchw(clean), nchw(clean)).tolist() == [100.0] * 3  # capped, not infinite


def test_ssim_matches_scikit_image():
    clean, noisy = images()
    expected = [
        structural_similarity(c, x, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for c, x in zip(clean, noisy)
    ]
    got = ssim(nchw(noisy), nchw(clean)).numpy()
    # ours runs in float32, scikit-image in float64: the variance E[x^2] - mu^2 of values near
    # 255^2 keeps about 1e-5 of relative precision per pixel, which averaging over 6,720 values
    # shrinks; 1e-5 leaves room for kernels that round another way, a wrong window moves SSIM 1e-3
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert ssim(nchw(clean), nchw(clean)).numpy() == pytest.approx(1.0)
    assert got.max() < 0.99  # the noisy images are measurably worse
