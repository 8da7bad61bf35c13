"""The presets build their whole DAG (`snakemake -n`), with the job counts the docs promise."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from netdyn.config import load_config, load_yaml
from tests.conftest import ROOT

SCHEMA = ROOT / "schemas" / "config.schema.yaml"
GPU_RULES = {
    "train",
    "dump_activations",
    "analyse_rpd",
    "analyse_pruning",
    "analyse_basins",
    "analyse_projection",
    "analyse_bn_modes",
}


def job_counts(preset: str) -> dict[str, int]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--forceall",
            "--cores",
            "1",
            "--configfile",
            preset,
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "activation dumps at most" in result.stderr  # the disk estimate every dry run prints
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, re.M)}


@pytest.mark.parametrize("preset", ["config.yaml", "presets/paper.yaml", "presets/fashion.yaml"])
def test_preset_dag_builds_with_one_training_and_collect_per_run(preset):
    runs = load_config(load_yaml(ROOT / preset), SCHEMA)
    counts = job_counts(preset)
    assert counts["train"] == counts["collect"] == len(runs)
    assert counts["figure"] == 8 and counts["claims"] == 1
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_the_paper_preset_runs_151_trainings_as_docs_presets_md_says():
    runs = load_config(load_yaml(ROOT / "presets" / "paper.yaml"), SCHEMA)
    assert len(runs) == 151
    assert "151 runs" in (ROOT / "docs" / "presets.md").read_text()


def test_every_rule_that_runs_a_model_declares_a_gpu():
    text = "\n".join(path.read_text() for path in (ROOT / "rules").glob("*.smk"))
    for block in re.split(r"\n(?=rule )", text)[1:]:
        name = block.split(":")[0].removeprefix("rule ").strip()
        assert ("gpu=1" in block) == (name in GPU_RULES), name
