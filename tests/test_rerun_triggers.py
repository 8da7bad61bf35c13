"""Rerun triggers derived from the code (netdyn/rerun_triggers.py): the static import closure on constructed packages
with known answers, checked against what Python really imports, and every rule's code inputs in a dry run."""

from __future__ import annotations

import importlib
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from netdyn.rerun_triggers import closure, script_dependencies
from netdyn.stages import STAGES
from tests.conftest import ROOT
from tests.test_workflow import TINY, copy_workflow, snakemake


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def names(files: list[Path], root: Path) -> set[str]:
    return {str(f.relative_to(root)) for f in files}


def test_closure_follows_every_kind_of_import_and_nothing_else(tmp_path):
    root = write_package(
        tmp_path,
        {
            "netdyn/__init__.py": "",
            "netdyn/a.py": "import os\nfrom netdyn import b\n",
            "netdyn/b.py": "def late():\n    from netdyn.c import thing\n",  # inside a function: still followed
            "netdyn/c.py": "from . import d\nthing = 1\n",  # relative
            "netdyn/d.py": "import netdyn.e\nfrom netdyn.a import x\n",  # a cycle back to a
            "netdyn/e.py": "",
            "netdyn/unused.py": "import netdyn.a\n",
            "netdyn/sub/__init__.py": "",
            "netdyn/sub/f.py": "from ..e import y\n",
            "script.py": "import numpy\nfrom netdyn.a import x\nfrom netdyn.sub import f\n",
        },
    )
    found = names(closure(root / "script.py", root), root)
    expected = {"__init__", "a", "b", "c", "d", "e", "sub/__init__", "sub/f"}
    assert found == {f"netdyn/{name}.py" for name in expected}


def test_lazy_package_attributes_are_followed_only_where_asked_for(tmp_path):
    root = write_package(
        tmp_path,
        {
            "netdyn/__init__.py": (
                "def __getattr__(name):\n"
                "    if name == 'analyze':\n"
                "        from netdyn.heavy import analyze\n"
                "        return analyze\n"
                "    raise AttributeError(name)\n"
            ),
            "netdyn/heavy.py": "from netdyn import light\n",
            "netdyn/light.py": "",
            "plain.py": "from netdyn import light\n",
            "asks.py": "from netdyn import analyze\n",
        },
    )
    assert names(closure(root / "plain.py", root), root) == {"netdyn/__init__.py", "netdyn/light.py"}
    assert names(closure(root / "asks.py", root), root) == {"netdyn/__init__.py", "netdyn/heavy.py", "netdyn/light.py"}


def test_dynamic_modules_add_their_closure(tmp_path, monkeypatch):
    root = write_package(
        tmp_path,
        {
            "netdyn/__init__.py": "",
            "netdyn/figures/__init__.py": "",
            "netdyn/figures/fig3.py": "from netdyn.figures import common\n",
            "netdyn/figures/common.py": "",
            "script.py": "import importlib\n",
        },
    )
    monkeypatch.chdir(root)
    assert script_dependencies("script.py", root) == []
    assert script_dependencies("script.py", root, "netdyn.figures.fig3") == [
        "netdyn/__init__.py",
        "netdyn/figures/__init__.py",
        "netdyn/figures/common.py",
        "netdyn/figures/fig3.py",
    ]
    with pytest.raises(ValueError, match="no module netdyn.figures.fig10"):
        script_dependencies("script.py", root, "netdyn.figures.fig10")


def netdyn_modules() -> list[str]:
    package = ROOT / "netdyn"
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in package.rglob("*.py")
    )


def test_the_static_closure_holds_everything_python_really_imports():
    """Import each netdyn module in a clean slate of netdyn modules: whatever Python loads must be in its closure."""
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "netdyn"}
    try:
        for module in netdyn_modules():
            for name in [n for n in sys.modules if n.split(".")[0] == "netdyn"]:
                del sys.modules[name]
            importlib.import_module(module)
            loaded = {n for n in sys.modules if n.split(".")[0] == "netdyn"}
            path = Path(importlib.util.find_spec(module).origin)
            static = {
                ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                for f in closure(path, ROOT)
            }
            assert loaded <= static, f"{module} imports {sorted(loaded - static)} the closure missed"
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "netdyn"]:
            del sys.modules[name]
        sys.modules.update(saved)


def jobs_of(dry_run: str) -> list[tuple[str, list[str], dict[str, str]]]:
    """``(rule, inputs, wildcards)`` of every job a dry run lists."""
    found = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run):
        rule = re.match(r"\s*(?:local)?rule (\w+):", block)
        inputs = re.search(r"^\s+input: (.*)$", block, re.M)
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        if rule and rule.group(1) != "all":
            pairs = [item.split("=", 1) for item in wildcards.group(1).split(", ")] if wildcards else []
            found.append((rule.group(1), inputs.group(1).split(", ") if inputs else [], dict(pairs)))
    return found


def script_of(rule: str, wildcards: dict[str, str]) -> tuple[str, list[str]]:
    """The workflow script of a rule and the modules it imports by name (a stage, a figure)."""
    rule = rule.split("__")[0]  # a stack group's rule <rule>__<experiment>__stack<k> runs <rule>'s script
    if rule.startswith("analyse_"):
        return "analyse", [f"netdyn.stages.{rule.removeprefix('analyse_')}"]
    if rule == "figure":
        return "figure", [f"netdyn.figures.{wildcards['figure']}"]
    if rule == "train" and "run" not in wildcards:
        return "train_stack", []
    return rule, []


@pytest.mark.slow
def test_every_rule_has_its_scripts_whole_closure_as_inputs(tmp_path):
    workdir = copy_workflow(tmp_path / "w")
    config = yaml.safe_load(TINY.read_text())
    checkpoints = tmp_path / "mine"
    checkpoints.mkdir()
    for step in (0, 10):
        (checkpoints / f"step{step:06d}.pt").write_bytes(b"")  # a dry run never opens them
    config["experiments"]["imported"] = {
        "external": {"runs": {"mine": str(checkpoints)}},
        "analysis": {"run": ["rpd", "hessian", "collapse"]},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = jobs_of(snakemake(workdir, "-n", "-F", "--cores", "1").stdout)
    used = {script_of(rule, wildcards)[0] for rule, _, wildcards in jobs}
    scripts = {path.stem for path in (ROOT / "workflow_scripts").glob("*.py")}
    assert used == scripts, f"scripts without a dry-run job: {sorted(scripts - used)}"
    assert {rule.split("__")[0] for rule, _, _ in jobs} >= {f"analyse_{name}" for name in STAGES}
    for rule, inputs, wildcards in jobs:
        script, modules = script_of(rule, wildcards)
        wanted = script_dependencies(workdir / "workflow_scripts" / f"{script}.py", workdir, *modules)
        wanted = [str(Path(path).resolve().relative_to(workdir.resolve())) for path in wanted]
        missing = sorted(set(wanted) - set(inputs))
        assert not missing, f"rule {rule}: code inputs miss {missing}"
    shutil.rmtree(workdir / ".snakemake", ignore_errors=True)
