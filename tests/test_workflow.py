"""End to end: the tiny config through Snakemake, rerun triggers, and config errors before any job runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


WORKFLOW_PARTS = ("Snakefile", "rules", "workflow_scripts", "schemas", "profiles", "envs", "netdyn")


def copy_workflow(target: Path) -> Path:
    """A private copy of the workflow, so a test can edit its code and results without touching the repo."""
    target.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / part)
    return target


def snakemake(workdir: Path, *args: str, config: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--directory", str(workdir)]
    command += ["--configfile", str(config or workdir / "config.yaml"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def planned_runs(dry_run_output: str, rule: str) -> set[str]:
    """Run ids of the ``rule`` jobs in a dry run's job list."""
    jobs = re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output)
    return {
        match.group(1)
        for job in jobs
        if job.lstrip().startswith((f"rule {rule}:", f"localrule {rule}:"))
        for match in [re.search(r"wildcards: run=(\S+)", job)]
        if match
    }


@pytest.fixture(scope="module")
def tiny_workflow(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"))
    shutil.copy(TINY, workdir / "config.yaml")
    snakemake(workdir, "--cores", "2")
    return workdir


def test_tiny_workflow_produces_every_run(tiny_workflow):
    runs = tiny_workflow / "results" / "runs"
    for run in ("shallow/tanh", "shallow/linear", "deep/base"):
        record = json.loads((runs / run / "run.json").read_text())
        assert record["status"] == "completed"
        history = pd.read_csv(runs / run / "history.csv")
        assert history["step"].iloc[0] == 0 and history["step"].iloc[-1] == 60
        assert len(list((runs / run / "snapshots").glob("step*.pt"))) == len(history)
    assert pd.read_csv(runs / "deep/base/history.csv")["test_acc_bntrain"].notna().all()
    assert (tiny_workflow / "results" / "logs" / "train" / "deep" / "base.log").read_text().strip()


def test_nothing_reruns_without_a_change(tiny_workflow):
    assert "Nothing to be done" in snakemake(tiny_workflow, "-n", "--cores", "1").stdout


def test_changing_one_runs_lr_reruns_only_that_run(tiny_workflow):
    config = yaml.safe_load(TINY.read_text())
    config["experiments"]["deep"]["train"]["lr"] = 0.003
    changed = tiny_workflow / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    output = snakemake(tiny_workflow, "-n", "--cores", "1", config=changed).stdout
    assert planned_runs(output, "train") == {"deep/base"}


def test_editing_the_training_code_reruns_every_training(tiny_workflow):
    source = tiny_workflow / "netdyn" / "train.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# an edit\n")
        output = snakemake(tiny_workflow, "-n", "--cores", "1").stdout
    finally:
        source.write_text(original)
    assert planned_runs(output, "train") == {"shallow/tanh", "shallow/linear", "deep/base"}


def test_a_bad_config_stops_before_any_job_and_names_the_key(tmp_path):
    copy_workflow(tmp_path)
    config = yaml.safe_load(TINY.read_text())
    config["experiments"]["deep"]["train"]["lr"] = "fast"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--cores", "1", check=False)
    assert result.returncode != 0
    assert "config error: experiments.deep.train.lr: 'fast' is not of type number" in result.stderr
    assert not (tmp_path / "results").exists()
