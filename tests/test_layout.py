"""The house rules a reader relies on: one import name, imports that run one way
(cli -> trainer -> pipeline -> models), and pipeline/ subpackages that import only what their
docstrings allow. Checked on the source (every import statement, function-level ones too)."""
import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
# repository folder -> the import name it installs as (setup.cfg package_dir)
FOLDERS = {"vrestore": "vrestore", "trainer": "vrestore.trainer", "pipeline": "vrestore.pipeline", "models": "vrestore.models"}
FLOORS = ["vrestore.cli", "vrestore.trainer", "vrestore.pipeline", "vrestore.models"]  # top to bottom
# what each pipeline subpackage may import of the other subpackages (the root modules: always)
PIPELINE_ALLOWED = {
    "host": set(),
    "media": {"host"},
    "cluster": {"host"},
    "dataset": {"host", "media", "cluster", "degrade"},  # degrade: make-shards --preset real
    "degrade": {"host", "media", "cluster"},
    "evaluation": set(),
    "inference": {"host", "media", "evaluation", "degrade", "cluster"},
}
# pipeline/'s root: modules several rooms (and the trainer) use; the rest lives in its room
PIPELINE_ROOT = {"__init__.py", "atomic.py", "devices.py", "options.py"}


def our_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def modules():
    for folder, name in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield path, ".".join([name, *parts])


def floor(module: str) -> int:
    for i, f in enumerate(FLOORS):
        if module == f or module.startswith(f + "."):
            return i
    return 0  # vrestore itself, vrestore.__main__: the CLI


def test_every_import_of_ours_goes_through_vrestore():
    for path, _ in modules():
        for name in our_imports(path):
            assert name.split(".")[0] not in {"pipeline", "trainer", "models"}, f"{path}: import {name}"


def test_imports_run_one_way():
    for path, module in modules():
        for name in our_imports(path):
            if name.startswith("vrestore"):
                assert floor(name) >= floor(module), f"{path} ({module}) imports {name}, a floor above it"


def test_pipeline_subpackages_import_what_they_say():
    for path, module in modules():
        parts = module.split(".")
        if parts[:2] != ["vrestore", "pipeline"] or len(parts) < 4:
            continue
        group = parts[2]
        for name in our_imports(path):
            target = name.split(".")
            if target[:2] == ["vrestore", "pipeline"] and len(target) >= 4 and target[2] != group:
                assert target[2] in PIPELINE_ALLOWED[group], f"{path}: pipeline/{group} imports pipeline/{target[2]}"


def test_pipeline_root_holds_only_the_shared_modules():
    loose = {p.name for p in (ROOT / "pipeline").glob("*.py")}
    assert loose == PIPELINE_ROOT, f"pipeline/ root: {sorted(loose - PIPELINE_ROOT)} belong in a room"
    for name in PIPELINE_ROOT - {"__init__.py"}:
        module = f"vrestore.pipeline.{name[:-3]}"
        users = {m.split(".")[2] if m.startswith("vrestore.pipeline.") else m.split(".")[1]
                 for path, m in modules() if m != module and module in set(our_imports(path)) and m.count(".") >= 2}
        assert len(users) >= 2, f"{name} is used by {sorted(users)} only: move it into that room"


def test_no_module_is_over_400_lines():
    """Small modules with one job each: a module past 400 lines holds two."""
    for path, module in modules():
        n = len(path.read_text().splitlines())
        assert n <= 400, f"{path}: {n} lines; split it by what its parts do"


def test_every_package_folder_is_installed():
    """setup.cfg lists the packages one by one: a new subpackage must be added there."""
    listed = ROOT.joinpath("setup.cfg").read_text()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            package = ".".join([name, *rel.parts])
            assert f"\n    {package}\n" in listed, f"{package} is not in setup.cfg's packages"
            assert ast.get_docstring(ast.parse(init.read_text())), f"{init}: no docstring saying what it holds"
