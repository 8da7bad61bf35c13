"""The workflow on a real single-node SLURM cluster (tests/slurm/start.sh): every compute job goes through sbatch
with the slurm executor plugin and profiles/slurm-ci, and the results equal those of a local run.

Skips, printing why, only where the machine cannot run a cluster (not root, slurm-wlm/munge unavailable, a
foreign /etc/slurm/slurm.conf). Run alone with `make test-slurm` (pytest -rs prints the skip reason)."""

from __future__ import annotations

import concurrent.futures
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from netdyn.snapshots import load_snapshot
from tests.conftest import ROOT
from tests.test_workflow import copy_workflow, snakemake

pytestmark = pytest.mark.slow
SLURM = ROOT / "tests" / "slurm"
CONFIG = SLURM / "ci.yaml"
RUN = Path("results/runs/net/base")
# The rules that must run as SLURM jobs (every rule but the localrules the config's DAG uses).
ANALYSES = {"analyse_rpd", "analyse_pruning", "analyse_geometry", "analyse_basins", "analyse_projection"}
COMPUTE_RULES = {"train", "dump_activations", "analyse_bn_modes", *ANALYSES}
LOCAL_RULES = {"prepare_data", "collect__net", "all"}  # collect: one local job per experiment
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/")


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm-state")
    started = subprocess.run(["bash", str(SLURM / "start.sh"), str(state)], capture_output=True, text=True)
    if started.returncode == 3:
        reason = started.stdout.strip().splitlines()[-1]
        print(reason, file=sys.stderr)
        pytest.skip(reason)
    try:
        assert started.returncode == 0, f"start.sh failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}"
        yield state
    finally:
        stopped = subprocess.run(["bash", str(SLURM / "stop.sh"), str(state)], capture_output=True, text=True)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        # A leftover config with no controller makes every later snakemake start wait ~9 s (stop.sh explains).
        controller_left = subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0
        conf = Path("/etc/slurm/slurm.conf")
        assert controller_left or not conf.exists() or not conf.read_text().startswith("# netdyn-ci"), stopped.stdout


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    """The same config run through SLURM and locally: (slurm workdir, its snakemake output, local workdir)."""
    folders = {}
    for name in ("slurm", "local"):
        folders[name] = copy_workflow(tmp_path_factory.mktemp(name))
        shutil.copy(CONFIG, folders[name] / "config.yaml")
    # The local run goes alongside: the SLURM run mostly waits on job status checks.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        local = pool.submit(snakemake, folders["local"], "--cores", "1")
        result = snakemake(folders["slurm"], "--workflow-profile", str(folders["slurm"] / "profiles" / "slurm-ci"))
        local.result()
    return folders["slurm"], result.stdout + result.stderr, folders["local"]


def gpu_rules() -> set[str]:
    """The rules whose definition in rules/*.smk asks for a GPU (``gpu=1`` under ``resources:``)."""
    text = "\n".join(path.read_text() for path in sorted((ROOT / "rules").glob("*.smk")))
    return {match.group(1) for match in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.M)
            if re.search(r"^\s+resources:\n\s+gpu=1", match.group(2), re.M)}  # fmt: skip


def job_rules(output: str) -> dict[int, tuple[str, bool]]:
    """``{snakemake job id: (rule, ran locally)}`` of every job in a run's output."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        header = re.match(r"\s*(local)?rule (\w+):", block)
        jobid = re.search(r"^\s+jobid: (\d+)", block, re.M)
        if header and jobid:
            jobs[int(jobid.group(1))] = (header.group(2), header.group(1) is not None)
    return jobs


def slurm_job_field(slurm_jobid: str, field: str) -> str | None:
    shown = subprocess.run(["scontrol", "show", "job", slurm_jobid], capture_output=True, text=True, check=True)
    match = re.search(rf"\b{field}=(\S+)", shown.stdout)
    return match.group(1) if match else None


def test_every_compute_job_went_through_sbatch(runs):
    _, output, _ = runs
    jobs = job_rules(output)
    submitted = {int(job): (slurm_id, rule) for job, slurm_id, rule in SUBMITTED.findall(output)}
    remote = {job for job, (_, local) in jobs.items() if not local}
    assert {rule for job, (rule, local) in jobs.items() if not local} == COMPUTE_RULES
    assert {rule for job, (rule, local) in jobs.items() if local} == LOCAL_RULES
    assert set(submitted) == remote, "a compute job ran without sbatch, or a local job was submitted"
    gpu = gpu_rules()
    assert "train" in gpu and "analyse_geometry" not in gpu
    for job, (slurm_id, rule) in submitted.items():
        assert rule == jobs[job][0]
        assert slurm_job_field(slurm_id, "JobState") == "COMPLETED", (rule, slurm_id)
        # The gpu resource reached SLURM as a GPU request, and only for the rules that declare it: as --gpus
        # (TresPerJob), or for train as --gres (TresPerNode), the route of sites without select/cons_tres.
        per_job, per_node = (slurm_job_field(slurm_id, field) for field in ("TresPerJob", "TresPerNode"))
        if rule == "train":
            assert (per_job, per_node) == (None, "gres:gpu:1"), (rule, slurm_id, per_job, per_node)
        else:
            assert per_job == ("gres:gpu:1" if rule in gpu else None) and per_node is None, (rule, slurm_id)


@pytest.mark.parametrize("table", ["history.csv", "metrics.csv", "rpd.csv", "basins.csv", "geometry.csv",
                                   "projection.csv", "../../../tables/net.csv"])  # fmt: skip
def test_slurm_results_equal_local_results(runs, table):
    slurm, _, local = runs
    on_slurm, at_home = (pd.read_csv(folder / RUN / table) for folder in (slurm, local))
    assert len(at_home) > 0
    clock = [column for column in at_home.columns if column == "wall_time"]  # the only non-deterministic column
    pd.testing.assert_frame_equal(on_slurm.drop(columns=clock), at_home.drop(columns=clock), check_exact=True)


def test_slurm_snapshots_are_bit_identical_to_local_ones(runs):
    slurm, _, local = runs
    names = sorted(path.name for path in (local / RUN / "snapshots").glob("step*.pt"))
    assert names == sorted(path.name for path in (slurm / RUN / "snapshots").glob("step*.pt")) and names
    for name in names:
        mine, theirs = (load_snapshot(folder / RUN / "snapshots" / name)[0].state_dict() for folder in (slurm, local))
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[key], theirs[key]) for key in mine), name
