"""The cluster profile a site will use (profiles/slurm), placeholders filled, loads with the pinned Snakemake and
SLURM plugin and dry-runs a paper preset (paper-core: the paper's shapes, stack groups included): an unknown key or a
renamed plugin flag fails here, and every job, a stack group's included, gets its rule's partition, GPU model and
limits. Nothing is submitted."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_workflow import copy_workflow, snakemake

pytestmark = pytest.mark.slow
SITE = {"<cpu-partition>": "cpuq", "<gpu-partition>": "gpuq", "<gpu-model>": "h100", "<account>": "lab"}


def job_resources(output: str) -> dict[str, list[str]]:
    """rule -> the ``resources:`` line of each of its cluster jobs in a dry run's job list (local rules left out)."""
    found: dict[str, list[str]] = {}
    for job in re.split(r"\n(?=(?:local)?rule \S+:)", output):
        rule = re.match(r"\s*rule (\S+):", job)
        resources = re.search(r"^\s+resources: (.*)$", job, re.M)
        if rule and resources:
            found.setdefault(rule.group(1), []).append(resources.group(1))
    return found


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> str:
    workdir = copy_workflow(tmp_path_factory.mktemp("profile"))
    shutil.copytree(ROOT / "presets", workdir / "presets")
    text = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    for placeholder, value in SITE.items():
        text = text.replace(placeholder, value)
    text = text.replace("# slurm_account: lab", "slurm_account: lab")
    settings = [line.split(" #")[0] for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not re.findall(r"<[a-z-]+>", "\n".join(settings)), "a placeholder the test does not know"
    site = workdir / "site-profile"
    site.mkdir()
    (site / "config.yaml").write_text(text)
    result = snakemake(workdir, "--workflow-profile", str(site), "-n", config=Path("presets/paper-core.yaml"))
    return result.stdout


def test_the_site_profile_loads_and_gives_every_job_its_rules_resources(dry_run):
    jobs = job_resources(dry_run)
    assert any(rule.startswith("train__") for rule in jobs), "the preset has stack groups"
    for rule, lines in jobs.items():
        base = rule.split("__")[0]
        for line in lines:
            if base in ("train", "dump_activations") or base in (
                "analyse_rpd", "analyse_pruning", "analyse_basins", "analyse_projection", "analyse_bn_modes",
                "analyse_hessian",
            ):  # fmt: skip
                assert "slurm_partition=gpuq" in line and "gpu_model=h100" in line and "gpu=1" in line, (rule, line)
            else:
                assert "slurm_partition=cpuq" in line and "gpu_model" not in line, (rule, line)
            assert "slurm_account=lab" in line, (rule, line)
    train_group = next(lines[0] for rule, lines in jobs.items() if rule.startswith("train__"))
    assert "runtime=240" in train_group and "mem_mb=16000" in train_group  # the train rule's limits, not the default
    collect = next(lines[0] for rule, lines in jobs.items() if rule.startswith("collect__"))
    assert "mem_mb=8000" in collect and "runtime=60" in collect and "gpu" not in collect  # the profile's defaults
