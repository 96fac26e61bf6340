"""The docs cannot rot: every `vrestore ...` and `make-shards ...` command written in README.md
and docs/*.md names a subcommand and options the CLI has (read from the click objects), and
every relative link resolves."""
import re
import shlex
from pathlib import Path

import click

from vrestore.cli import cli, make_shards_cmd

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def option_names(command: click.Command) -> set:
    names = {"--help", "-h"}
    for p in command.params:
        if isinstance(p, click.Option):
            names |= set(p.opts) | set(p.secondary_opts)
    return names


def commands_in(text: str):
    """(line, words after the program name) for each command in code blocks and inline code."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    lines = [ln for b in blocks for ln in b.replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    for line in lines:
        line = line.split(" #")[0].strip()
        if "`" in line:  # prose inside a code block (a layout tree), not a command
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        for i, w in enumerate(words):
            program = Path(w).name
            # the program as a command: first on the line (after VAR=value), or after -m, srun, &&
            starts = all("=" in x for x in words[:i]) or words[i - 1] in ("-m", "srun", "exec", "&&", "|", "--wrap")
            if program in ("vrestore", "make-shards") and starts:
                yield line, program, words[i + 1 :]
                break


def check(program: str, rest: list) -> list:
    """What in `rest` the CLI does not know ([] when all is known)."""
    if program == "vrestore":
        if not rest or rest[0].startswith("-"):
            return [o for o in rest if o.startswith("--") and o.split("=")[0] not in option_names(cli)]
        if rest[0] not in cli.commands:
            return [f"subcommand {rest[0]}"]
        command, rest = cli.commands[rest[0]], rest[1:]
    else:
        command = make_shards_cmd
    known = option_names(command)
    return [w.split("=")[0] for w in rest if w.startswith("--") and w.split("=")[0] not in known]


def test_every_documented_command_names_real_options():
    bad, seen = [], 0
    for doc in DOCS:
        for line, program, rest in commands_in(doc.read_text()):
            seen += 1
            if unknown := check(program, rest):
                bad.append(f"{doc.relative_to(ROOT)}: {line!r}: unknown {', '.join(unknown)}")
    assert seen > 30, seen  # the docs do hold commands: the parser found them
    assert not bad, "\n".join(bad)


def test_every_relative_link_resolves():
    bad = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+://|#|mailto:", target):
                continue
            if not (doc.parent / target.split("#")[0]).exists():
                bad.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not bad, "\n".join(bad)


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_the_slurm_scripts_in_the_docs_are_the_tested_files():
    """docs/cluster.md shows scripts/slurm/*.sbatch whole, as tests/test_preemption.py runs them."""
    text = (ROOT / "docs" / "cluster.md").read_text()
    scripts = sorted((ROOT / "scripts" / "slurm").glob("*.sbatch"))
    assert len(scripts) == 2
    for script in scripts:
        assert f"```bash\n{script.read_text()}```" in text, script.name
