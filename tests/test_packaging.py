"""What `pip install .` puts into site-packages: one import name, vrestore, holding every folder."""
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_wheel_installs_one_import_name(tmp_path):
    # from a clean copy: setuptools would reuse files an earlier build left in build/lib
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "demo_output", "__pycache__", ".whl"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"vrestore"}
    dist_info = next(t for t in top if t.endswith(".dist-info"))
    # every repository module is in the wheel, under its folder's subpackage
    for folder, package in (("pipeline", "vrestore/pipeline"), ("trainer", "vrestore/trainer"), ("models", "vrestore/models")):
        for py in (ROOT / folder).rglob("*.py"):
            assert f"{package}/{py.relative_to(ROOT / folder).as_posix()}" in names, py
    # installed outside the repository, it imports as vrestore.*, and `models` is not ours
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True, capture_output=True)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import vrestore.models.networks as n, vrestore.pipeline.media.probe as p; "
            "print(n.__file__); print(p.__file__)\n"
            "try:\n    import models\nexcept ModuleNotFoundError:\n    print('no models')")
    out = subprocess.run([sys.executable, "-I", "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith(str(target)) and out[1].startswith(str(target)) and out[2:] == ["no", "models"]
    assert "vrestore" in zipfile.ZipFile(wheel).read(f"{dist_info}/top_level.txt").decode().split()


# What each extra brings (setup.cfg). matplotlib is left out here: torchmetrics probes for it with
# find_spec, which a module blocked in sys.modules does not fool; a real core-only install has it
# absent and torchmetrics skips it (checked by hand in a fresh venv, docs/architecture.md).
EXTRAS_MODULES = ["nvidia", "nvidia.dali", "webdataset", "wds2idx", "skimage", "skvideo", "ray", "onnx", "onnxscript", "onnxruntime"]
WITHOUT_EXTRAS = """import json, sys
for m in {mods!r}:
    sys.modules[m] = None  # as if not installed: importing it raises ImportError
from click.testing import CliRunner
from vrestore import cli
results = []
for argv in {argvs!r}:  # each command as its script runs it, in this one interpreter
    r = CliRunner().invoke(cli.make_shards_cmd if argv[0] == "make-shards" else cli.cli, argv[1:])
    results.append([r.exit_code, r.stderr])
print(json.dumps(results))
"""


def without_extras(argvs, cwd) -> list:
    """[exit code, stderr] of each command, run with the extras' modules missing."""
    code = WITHOUT_EXTRAS.format(mods=EXTRAS_MODULES, argvs=[[str(a) for a in argv] for argv in argvs])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_core_restores_and_each_journey_names_its_missing_extra(tmp_path, weights):
    """restore, degrade and TorchScript export run on the core alone; train, preview,
    make-shards, ONNX export and --engine ray each say in one line which extra to install."""
    src = tmp_path / "in"
    src.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=1", "-c:v", "mpeg4",
                    str(src / "a.avi")], check=True)
    work = [["vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "r", "--quiet"],
            ["vrestore", "degrade", src, tmp_path / "d", "--quiet"],
            ["vrestore", "export", weights, tmp_path / "g.pt", "--format", "torchscript"]]
    refused = [(["vrestore", "train", "--shards", tmp_path], "train"), (["vrestore", "preview", tmp_path], "train"),
               (["make-shards", src, tmp_path / "s"], "train"), (["vrestore", "export", weights, tmp_path / "g.onnx"], "export"),
               (["vrestore", "degrade", src, tmp_path / "d2", "--engine", "ray"], "cluster"),
               (["vrestore", "restore", src, "--weights", weights, "--output-dir", tmp_path / "r2", "--engine", "ray"], "cluster"),
               (["make-shards", src, tmp_path / "s2", "--engine", "ray"], "cluster")]
    results = without_extras(work + [argv for argv, _ in refused], tmp_path)
    for argv, (code, err) in zip(work, results):
        assert code == 0, (argv, err)
    for (argv, extra), (code, err) in zip(refused, results[len(work):]):
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and f"video-restoration-gan[{extra}]" in lines[0], (argv, err)
    for refused_out in ("d2", "r2", "s", "s2"):  # said before any output folder was made
        assert not (tmp_path / refused_out).exists(), refused_out
