"""The pins in requirements.lock, pyproject.toml and envs/*.yaml agree; the quick start stays two commands."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import ROOT


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def normalized(name: str) -> str:
    return re.split(r"[<>=!\[ ;]", name, maxsplit=1)[0].lower().replace("_", "-")


def test_every_dependency_is_pinned_in_the_lock_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    missing = sorted({normalized(d) for d in wanted} - set(lock_pins()))
    assert not missing, f"not pinned in requirements.lock: {missing}"
    assert lock_pins()["torch"] == "2.14.1" and lock_pins()["torchvision"] == "0.29.1"


def test_conda_envs_match_the_lock_file():
    pins = lock_pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {normalized(d) for d in project["dependencies"]}
    for env_file in sorted((ROOT / "envs").glob("*.yaml")):
        env = yaml.safe_load(env_file.read_text())
        pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        env_pins = {}
        for entry in pip_section:
            if "==" in entry:
                name, _, version = entry.partition("==")
                env_pins[normalized(name)] = version
        for name, version in env_pins.items():
            assert pins.get(name) == version, f"{env_file.name}: {name}=={version}, lock has {pins.get(name)}"
        assert runtime <= set(env_pins), f"{env_file.name} lacks {sorted(runtime - set(env_pins))}"


def test_every_rule_has_log_conda_and_compute_rules_a_benchmark():
    for path in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule )", path.read_text())[1:]:
            name = block.split(":")[0].removeprefix("rule ").strip()
            assert "    log:" in block and "    conda:" in block, f"{path.name}: rule {name}"
            local = name in path.read_text().split("rule ")[0] or "localrule: True" in block
            if not local:
                assert "    benchmark:" in block, f"{path.name}: rule {name} has no benchmark"


def test_ci_runs_make_test_and_readme_shows_the_two_commands():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_licence_citation_and_changelog_agree_with_the_package():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert citation["cff-version"] == "1.2.0" and citation["version"] == version and citation["license"] == "MIT"
    paper = citation["preferred-citation"]
    assert {"type": "other", "value": "arXiv:2501.02436"} in paper["identifiers"]
    assert [author["family-names"] for author in paper["authors"]] == ["Lin", "Feng", "Zhang", "Zhao"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    headings = re.findall(r"^## .*$", changelog, re.M)
    assert headings[0] == "## [Unreleased]"
    assert all(re.fullmatch(r"## \[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", h) for h in headings[1:]), headings
