"""The GPU windows of paper-core (benchmarks/window.py, benchmarks/gpu_window.sh): the split keeps every claim
settleable within two modelled windows, and the script runs each window's steps at tiny sizes on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from benchmarks.window import WINDOWS, only_experiments, shrink, trained_experiments, window_config
from netdyn.claims import CLAIMS
from netdyn.config import load_config, load_yaml
from netdyn.plan import plan
from tests.conftest import ROOT

PRESET = load_yaml(ROOT / "presets" / "paper-core.yaml")
WINDOW_MINUTES = 6  # what one device call leaves the workflow (issue 21)


def settleable(config: dict) -> set[int]:
    return {claim for claim, why in plan(config)["claims"].items() if why is None}


def test_the_windows_split_paper_core_and_settle_its_claims_within_their_modelled_time():
    configs = {window: window_config(PRESET, window) for window in WINDOWS}
    names = [name for config in configs.values() for name in config["experiments"]]
    assert sorted(names) == sorted(PRESET["experiments"])  # each experiment in exactly one window
    for window, config in configs.items():
        assert plan(config)["total"]["h200_s"] <= WINDOW_MINUTES * 60, window
        for name, spec in config["experiments"].items():
            assert spec == PRESET["experiments"][name]  # the preset's experiments, unchanged
        roles = [
            r
            for roles in config["figures"].values()
            for v in roles.values()
            for r in ([v] if isinstance(v, str) else v)
        ]
        assert set(roles) <= set(config["experiments"]) and set(roles) == set(config["experiments"])
    assert settleable(configs[1]) == {1, 7, 9, 11}
    assert settleable(configs[2]) == {2, 3, 4, 6, 10}
    assert settleable(configs[3]) == {5, 8, 12}
    assert set().union(*map(settleable, configs.values())) == settleable(PRESET) == set(range(1, 13))


def test_a_window_of_a_preset_without_its_experiments_is_an_error():
    with pytest.raises(ValueError, match="window 1: the preset has no experiment fig3_depth"):
        window_config({**PRESET, "experiments": {"fig2_shallow": PRESET["experiments"]["fig2_shallow"]}}, 1)


def test_smoke_sizes_keep_each_experiment_its_sweep_axes_and_analyses():
    for window in WINDOWS:
        full, small = window_config(PRESET, window), shrink(window_config(PRESET, window))
        assert small["experiments"].keys() == full["experiments"].keys() and small["figures"] == full["figures"]
        for name, spec in small["experiments"].items():
            original = full["experiments"][name]
            assert spec.get("sweep", {}).keys() == original.get("sweep", {}).keys()
            assert all(len(values) == 2 == len(set(values)) for values in spec.get("sweep", {}).values())
            assert spec.get("analysis", {}).get("run") == original.get("analysis", {}).get("run")
            assert spec["seeds"] == 2
        assert plan(small)["total"]["cpu_wall_s"] < 120


@pytest.mark.slow
@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_the_gpu_window_script_runs_its_steps_at_tiny_sizes(tmp_path, window):
    out = tmp_path / "out"
    env = {**os.environ, "WORKDIR": str(tmp_path / "work"), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_window.sh"), str(out), "--window", str(window), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,  # the workflow runs in another folder than the repository
    )
    log = out / "workflow.log"
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:] + (
        log.read_text()[-3000:] if log.exists() else ""
    )
    files = {path.name for path in out.iterdir()}
    assert files == {"machine.txt", "bench.json", "plan.txt", "workflow.log", "summary.json", "summary.md",
                     "claims.csv", "results.tar.gz"}  # fmt: skip
    assert len(files) <= 8  # what the device tool brings back from one folder
    assert "benchmark rows: exit 0" in (out / "machine.txt").read_text()
    assert all(row["agree"] for row in json.loads((out / "bench.json").read_text())["rows"])
    summary = json.loads((out / "summary.json").read_text())
    runs = plan(shrink(window_config(PRESET, window)))["total"]["runs"]
    assert summary["returncode"] == 0 and summary["runs_finished"] == summary["runs"] == runs
    assert {row["claim"] for row in summary["claims"]} == set(CLAIMS)
    assert summary["planned_s"]["h200"] > 0 and "predicted on this CPU" in (out / "plan.txt").read_text()
    with tarfile.open(out / "results.tar.gz") as archive:
        names = archive.getnames()
    assert {f"results/figures/{figure}.png" for figure in window_config(PRESET, window)["figures"]} <= set(names)
    assert "results/claims.md" in names or any(name.endswith("run.json") for name in names)


def test_a_stopped_window_keeps_the_experiments_that_finished_training(tmp_path):
    config = shrink(window_config(PRESET, 3))
    runs = load_config(config, ROOT / "schemas" / "config.schema.yaml")
    assert trained_experiments(config, tmp_path) == []
    for run, spec in runs.items():  # every fig8 run trained, and one fig2_shallow run of eight
        if spec["experiment"].startswith("fig8") or run == sorted(r for r in runs if r.startswith("fig2"))[0]:
            (tmp_path / "results/runs" / run).mkdir(parents=True)
            (tmp_path / "results/runs" / run / "run.json").write_text("{}")
    assert trained_experiments(config, tmp_path) == ["fig8_conditions", "fig8_lr"]
    kept = only_experiments(config, ["fig8_conditions", "fig8_lr"])
    assert list(kept["experiments"]) == ["fig8_conditions", "fig8_lr"] and "fig2" not in kept["figures"]
    assert kept["figures"] == {"fig8": {"conditions": ["fig8_conditions", "fig8_lr"]}}
