"""Faults the workflow survives: the whole Snakemake process tree killed (SIGKILL) during a stack group's training and
during its analysis, corrupted snapshot / activation / dataset files, and a diverging run inside a sweep.

Each fault runs on a private copy of the workflow (tests/test_workflow.py's helpers) with tests/configs/faults.yaml,
and every table is compared with that of one uninterrupted run of the same config."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from netdyn.unlock import lock_files
from tests.conftest import ROOT
from tests.test_workflow import copy_workflow, snakemake

pytestmark = pytest.mark.slow
FAULTS = ROOT / "tests" / "configs" / "faults.yaml"
GOOD, DIVERGING = "sweep/lr0.05", "sweep/lr1e+06"
GROUP = "sweep__stack1"  # the two runs' stack group: its jobs are rules <rule>__sweep__stack1
RUN_TABLES = ("history.csv", "metrics.csv", "rpd.csv", "basins.csv", "run.json", "events.json")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted run of the fault config: the tables every faulty run must end with."""
    workdir = copy_workflow(tmp_path_factory.mktemp("reference"))
    shutil.copy(FAULTS, workdir / "config.yaml")
    snakemake(workdir, "--cores", "2")
    return workdir


def fresh_copy(reference: Path, target: Path, with_results: bool) -> Path:
    """A copy of the reference workflow, with (mtimes kept, so nothing reruns) or without its results."""
    ignore = shutil.ignore_patterns("__pycache__", ".snakemake") if with_results else None
    if not with_results:
        ignore = shutil.ignore_patterns("__pycache__", ".snakemake", "results")
    shutil.copytree(reference, target, ignore=ignore, symlinks=True)
    if not with_results:  # the prepared dataset is not under test here and costs seconds to remake
        shutil.copytree(reference / "results" / "data", target / "results" / "data")
    return target


def without_clock(record: object) -> object:
    """A JSON record less its wall-clock times, and the step a resumed run resumed from (results are the same)."""
    if isinstance(record, dict):
        return {
            key: without_clock(value)
            for key, value in record.items()
            if "wall_time" not in key and key != "resumed_from"
        }
    return [without_clock(value) for value in record] if isinstance(record, list) else record


def read_table(path: Path) -> pd.DataFrame | dict:
    if path.suffix == ".json":
        return without_clock(json.loads(path.read_text()))
    return pd.read_csv(path).drop(columns=["wall_time"], errors="ignore")


def assert_same_tables(workdir: Path, reference: Path) -> None:
    """Every run table and experiment table equals the reference one (wall-clock columns aside)."""
    paths = [Path("results/runs") / run / name for run in (GOOD, DIVERGING) for name in RUN_TABLES]
    paths.append(Path("results/tables/sweep.csv"))
    for path in paths:
        mine, theirs = read_table(workdir / path), read_table(reference / path)
        if isinstance(theirs, dict):
            assert mine == theirs, path
        else:
            assert len(theirs) > 0 or path.name in ("rpd.csv", "basins.csv"), path
            pd.testing.assert_frame_equal(mine, theirs, check_exact=True, obj=str(path))


def kill_when(workdir: Path, ready: Callable[[], bool], *extra: str, timeout: float = 120) -> None:
    """Run the workflow in its own session and SIGKILL that whole process group as soon as ``ready()``."""
    command = [sys.executable, "-m", "snakemake", "--directory", str(workdir), "--configfile", "config.yaml"]
    command += ["--cores", "2", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, "the workflow ended before the moment to kill it"
            assert time.monotonic() < deadline, "the moment to kill the workflow never came"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the process group of the snakemake process started above
        process.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # its jobs die with it; wait until none is left (as after a real crash)
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


def release_stale_lock(workdir: Path) -> None:
    """What ``make run`` does first after a crash: netdyn.unlock finds no live Snakemake process in the folder and
    releases the lock the killed run left."""
    assert lock_files(workdir), "a killed run leaves its lock"
    unlocked = subprocess.run(
        [sys.executable, "-m", "netdyn.unlock", str(workdir)], capture_output=True, text=True, check=True
    )
    assert "released a stale Snakemake lock" in unlocked.stderr, unlocked.stderr
    assert not lock_files(workdir)


def rerun(workdir: Path) -> subprocess.CompletedProcess:
    """A user's rerun after a crash: the stale lock released, then --rerun-incomplete."""
    release_stale_lock(workdir)
    return snakemake(workdir, "--cores", "2", "--rerun-incomplete")


def test_sigkill_during_training_then_during_an_analysis_then_rerun_gives_the_uninterrupted_tables(reference, tmp_path):
    workdir = fresh_copy(reference, tmp_path / "w", with_results=False)
    run = workdir / "results" / "runs" / GOOD

    def training_half_done() -> bool:  # a resumable snapshot exists, the run is not finished
        return any((run / ".train-resume").glob("step*.pt")) and not (run / "run.json").exists()

    def analysing() -> bool:  # the activations are dumped, an analysis runs, the run is not collected yet
        return (run / "activations").is_dir() and (workdir / f"results/logs/stacks/analyse_rpd__{GROUP}.log").exists()

    kill_when(workdir, training_half_done)
    assert not (run / "run.json").exists()
    release_stale_lock(workdir)
    kill_when(workdir, analysing, "--rerun-incomplete")  # the rerun is killed too, now while it analyses
    assert (run / "run.json").exists() and not (run / "metrics.csv").exists()
    rerun(workdir)
    assert_same_tables(workdir, reference)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def scramble(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def final_file(folder: Path) -> Path:
    return sorted(folder.glob("step*"))[-1]


# (what is damaged, the rule that reads it, the output to delete so that it is regenerated)
CORRUPTIONS = {
    "snapshot": (
        lambda w: final_file(w / "results/runs" / GOOD / "snapshots"),
        f"analyse_basins__{GROUP}",
        "snapshots",
    ),
    "activations": (
        lambda w: final_file(w / "results/runs" / GOOD / "activations"),
        f"analyse_rpd__{GROUP}",
        "activations",
    ),
    "dataset": (lambda w: w / "results/data/mnist5k.h5", f"train__{GROUP}", "dataset"),
}


# Each file kind once, each kind of damage at least once (every pair would double the slowest test of the suite).
@pytest.mark.parametrize(
    ("kind", "damage"),
    [("snapshot", truncate), ("activations", scramble), ("dataset", scramble)],
    ids=["snapshot-truncated", "activations-random-bytes", "dataset-random-bytes"],
)
def test_a_corrupted_file_fails_its_job_naming_it_and_is_regenerated_once_deleted(reference, tmp_path, kind, damage):
    workdir = fresh_copy(reference, tmp_path / "w", with_results=True)
    locate, reader, output = CORRUPTIONS[kind]
    damaged = locate(workdir)
    damage(damaged)
    command = ("--cores", "2", "--forcerun", reader)  # as if the damage had happened before the reader ran
    failed = snakemake(workdir, *command, check=False)
    assert failed.returncode != 0
    assert str(damaged.relative_to(workdir)) in failed.stderr, failed.stderr[-3000:]
    # The error names the file; its rule's output goes (a whole folder for snapshots and dumps), and the same
    # command run again regenerates it.
    target = damaged if output == "dataset" else damaged.parent
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    snakemake(workdir, *command)
    assert damaged.exists()
    assert_same_tables(workdir, reference)


def test_a_diverging_run_in_a_sweep_is_marked_and_the_sweep_completes(reference):
    table = pd.read_csv(reference / "results" / "tables" / "sweep.csv")
    status = table.groupby("run")["status"].unique()
    assert status[GOOD].tolist() == ["completed"] and status[DIVERGING].tolist() == ["diverged"]
    assert table.loc[table["run"] == DIVERGING, "diverged_at"].notna().all()
    assert json.loads((reference / "results/runs" / DIVERGING / "run.json").read_text())["status"] == "diverged"
    good = pd.read_csv(reference / "results/runs" / GOOD / "metrics.csv")
    assert {"rpd_gradient", "basin_input"} <= set(good["metric"])  # the sound run was analysed in full
