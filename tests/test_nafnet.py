"""The NAFNet-style generator (models/nafnet.py): any frame size through restore, neighbours
actually used, the sync-free step, weights that rebuild themselves."""
import numpy as np
import pytest
import torch

from test_export import ARCHS, tiny_generator
from vrestore.models import pad_to_multiple
from vrestore.models.nafnet import temporal_shift
from vrestore.models.weights import load_network, save_weights
from vrestore.pipeline.inference.restorer import Restorer


@pytest.mark.parametrize("arch", list(ARCHS))
def test_restore_pads_any_frame_size_and_crops_back(arch, tmp_path):
    G = tiny_generator(arch, frames=5)
    save_weights(tmp_path / "g.pth", G)
    assert load_network(tmp_path / "g.pth").cfg == G.cfg  # arch and block counts come back from the file
    windows = np.random.default_rng(0).integers(0, 256, (2, 5, 30, 46, 3), dtype=np.uint8)  # 30, 46: no multiple of 4 or 32
    out = Restorer(tmp_path / "g.pth", "cpu")(windows)
    assert out.shape == (2, 30, 46, 3)
    x = torch.from_numpy(windows).permute(0, 2, 3, 1, 4).reshape(2, 30, 46, 15).permute(0, 3, 1, 2).float() / 127.5 - 1
    padded, crop = pad_to_multiple(x, G.cfg.multiple)
    with torch.no_grad():
        ref = ((crop(G.eval()(padded)).clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    assert np.abs(out.astype(float) - ref).max() <= 1


@pytest.mark.parametrize("arch", ["nafnet-early", "nafnet-shift"])
def test_output_changes_when_a_neighbouring_frame_changes(arch):
    G = tiny_generator(arch, frames=5).eval()
    x = torch.rand(1, 15, 16, 16) * 2 - 1
    y = x.clone()
    y[:, 3 * 3 : 3 * 4] = torch.rand(1, 3, 16, 16) * 2 - 1  # frame t+1 only
    with torch.no_grad():
        assert not torch.allclose(G(x), G(y))


def test_the_shift_mixes_frames_inside_the_network():
    """Before the frames are fused, the centre frame's own features already depend on frame t+1
    (a shift variant) and do not without the shift (early fusion has no per-frame features)."""
    G = tiny_generator("nafnet-shift", frames=5).eval()
    features = {}
    G.encoders[0].register_forward_hook(lambda m, i, o: features.__setitem__("level1", o))
    x = torch.rand(1, 15, 16, 16) * 2 - 1
    y = x.clone()
    y[:, 9:12] += 0.5
    with torch.no_grad():
        G(x)
        a = features["level1"].view(1, 5, -1, 16, 16)[:, 2].clone()
        G(y)
        b = features["level1"].view(1, 5, -1, 16, 16)[:, 2]
    assert not torch.allclose(a, b)
    # the shift itself: channels [0, k) from t-1, [k, 2k) from t+1, zeros past the ends
    f = torch.arange(5.0).view(1, 5, 1, 1, 1).expand(1, 5, 8, 1, 1).reshape(5, 8, 1, 1)
    s = temporal_shift(f, 5).view(5, 8)
    assert s[2, :2].tolist() == [1, 1] and s[2, 2:4].tolist() == [3, 3] and s[2, 4:].tolist() == [2] * 4
    assert s[0, :2].tolist() == [0, 0] and s[4, 2:4].tolist() == [0, 0]
