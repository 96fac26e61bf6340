"""`vrestore export`: the ONNX file (through onnxruntime) and the TorchScript file restore what
the torch generator restores, for other batch sizes and frame sizes than the export saw."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vrestore.models import GeneratorConfig, build_generator
from vrestore.models.weights import load_network, save_weights


ARCHS = {
    "unet": dict(ngf=4, depth=5),
    "nafnet-early": dict(arch="nafnet", ngf=4, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1)),
    "nafnet-shift": dict(arch="nafnet", ngf=4, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1), temporal="shift"),
}


def tiny_generator(arch: str, frames: int = 3, seed: int = 0):
    """A small generator of each architecture; NAFNet's block scales (0 at init, which makes every
    block the identity) are drawn at random so every block does something."""
    torch.manual_seed(seed)
    G = build_generator(GeneratorConfig(frames=frames, **ARCHS[arch]))
    for name, p in G.named_parameters():
        if name.endswith(("beta", "gamma")):
            torch.nn.init.normal_(p, 0, 0.5)
    return G


@pytest.fixture(scope="module", params=list(ARCHS))
def three_frame_weights(tmp_path_factory, request):
    path = tmp_path_factory.mktemp("w") / "g3.pth"
    save_weights(path, tiny_generator(request.param))
    return path


def inputs():
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, shape).astype(np.float32) for shape in ((1, 9, 32, 32), (3, 9, 64, 96))]


def reference(weights, x):
    with torch.no_grad():
        return load_network(weights).eval()(torch.from_numpy(x)).numpy()


def export(weights, out, fmt):
    r = subprocess.run([str(Path(sys.executable).with_name("vrestore")), "export", str(weights), str(out), "--format", fmt],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "input (N, 9, H, W)" in r.stdout and out.is_file()


@pytest.mark.slow
# the shift variant's ops are a superset of the early-fusion one's (about 20 s an export here)
@pytest.mark.parametrize("three_frame_weights", ["unet", "nafnet-shift"], indirect=True)
def test_onnx_export_runs_in_onnxruntime(three_frame_weights, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import onnx

    export(three_frame_weights, tmp_path / "g.onnx", "onnx")
    # one self-contained file: no external-data files beside it, no temporary file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in onnx.load(str(tmp_path / "g.onnx")).graph.initializer)
    session = ort.InferenceSession(str(tmp_path / "g.onnx"))
    for x in inputs():
        y = session.run(None, {"frames": x})[0]
        assert y.shape == (x.shape[0], 3, *x.shape[2:])
        np.testing.assert_allclose(y, reference(three_frame_weights, x), atol=1e-4)
    refused_as_weights(tmp_path / "g.onnx", "an ONNX export")


def refused_as_weights(exported, words):
    """An exported file given to restore as weights: one line saying what it is (torch.load's
    own complaint was a warning with a source path and a page on weights_only)."""
    from cli_helpers import cli_run, one_line_error

    one_line_error(cli_run("vrestore", "restore", exported, "--weights", exported, "--output-dir", exported.parent / "out"),
                   words, "takes the generator.pth")


@pytest.mark.slow
def test_torchscript_export_loads_without_this_package(three_frame_weights, tmp_path):
    export(three_frame_weights, tmp_path / "g.pt", "torchscript")
    scripted = torch.jit.load(str(tmp_path / "g.pt"))
    for x in inputs():
        with torch.no_grad():
            y = scripted(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(y, reference(three_frame_weights, x), atol=1e-4)
    refused_as_weights(tmp_path / "g.pt", "a TorchScript export")


def test_export_refuses_a_discriminator(tmp_path):
    from vrestore.models import DiscriminatorConfig, build_discriminator

    save_weights(tmp_path / "d.pth", build_discriminator(DiscriminatorConfig(ndf=4)))
    r = subprocess.run([str(Path(sys.executable).with_name("vrestore")), "export", str(tmp_path / "d.pth"), str(tmp_path / "d.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path / 'd.pth'}: holds a discriminator, not a generator"
