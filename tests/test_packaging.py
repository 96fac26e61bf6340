"""What `pip install .` puts into site-packages: one import name, vrestore, holding every folder."""
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
