"""netdyn plan (netdyn/plan.py): hand-counted FLOP, the stacking groups, the job list of a dry run, every preset."""

from __future__ import annotations

import subprocess
import sys

import pytest

from netdyn.config import load_config, stack_key
from netdyn.plan import CPU, model_macs, plan, run_cost, snapshot_bytes
from tests.conftest import ROOT
from tests.test_presets import SCHEMA

PRESETS = ["config.yaml", "presets/fashion.yaml", "presets/paper.yaml"]


def tiny_config(**train) -> dict:
    return {
        "defaults": {"dataset": "mnist5k", "train": {"steps": 60, "batch_size": 64, "n_train": 1000, **train}},
        "experiments": {
            "one": {"model": {"depth": 1, "width": 10}, "analysis": {"run": ["basins"], "steps": "final"}},
            "seeds": {"model": {"depth": 2, "width": 16}, "seeds": 3, "sweep": {"model.width": [16, 32]}},
        },
    }


def test_flop_and_jobs_of_a_hand_counted_run():
    runs = load_config(tiny_config(), SCHEMA)
    run = runs["one/base"]
    macs, layers = model_macs(run["model"])
    assert macs == 784 * 10 + 10 * 10 and layers == [7840, 100]
    cost = run_cost(run, CPU, {})
    assert cost["train_flop"] == 6 * macs * 64 * 60
    assert cost["jobs"] == {"train": 1, "analyse_basins": 1}  # collect: one job per experiment, in plan()
    assert cost["steps"] == 60 and cost["snapshots"] == len(run["snapshots"])
    assert cost["seconds"] > 2 * CPU["startup_s"]  # two torch jobs, however small


def test_seed_replicates_stack_and_other_shapes_do_not():
    runs = load_config(tiny_config(), SCHEMA)
    keys = {run: stack_key(spec) for run, spec in runs.items() if spec["experiment"] == "seeds"}
    by_width = {}
    for run, key in keys.items():
        by_width.setdefault(runs[run]["model"]["width"], set()).add(key)
    assert all(len(group) == 1 for group in by_width.values())  # the 3 seeds of a width share one group
    assert by_width[16] != by_width[32]
    experiments = {row["experiment"]: row for row in plan(tiny_config())["experiments"]}
    assert experiments["seeds"]["runs"] == 6 and experiments["seeds"]["groups"] == 2
    # A group pays one job's start-up and loop: its second and third members cost their compute only.
    first, member = (run_cost(runs["seeds/w16_s00"], CPU, {}, role) for role in ("first", "member"))
    assert first["jobs"]["train"] == first["jobs"]["analyse_basins"] == 1
    assert member["jobs"]["train"] == member["jobs"]["analyse_basins"] == 0
    assert first["seconds"] - member["seconds"] >= 2 * CPU["startup_s"]


@pytest.mark.parametrize("preset", PRESETS)
def test_netdyn_plan_runs_on_every_preset(preset):
    result = subprocess.run(
        [sys.executable, "-m", "netdyn.cli", "plan", "--configfile", str(ROOT / preset)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and "claims its design can settle" in result.stdout
    assert "torch" not in result.stderr


def test_a_bad_config_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiments: {x: {train: {lr: fast}}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "netdyn.cli", "plan", "--configfile", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "bad.yaml" in result.stderr and "lr" in result.stderr


@pytest.mark.parametrize("optimizer,moments", [("adam", 2), ("sgd", 1)])
def test_snapshot_bytes_are_the_state_dicts_of_the_steps_kept_and_the_final_optimizer(optimizer, moments):
    import torch

    from netdyn.models import build

    config = tiny_config(optimizer=optimizer)
    config["experiments"]["one"]["model"] = {"depth": 3, "width": 24, "batchnorm": True}
    config["experiments"]["one"]["snapshots"] = {"log": 10}
    run = load_config(config, SCHEMA)["one/base"]
    state = build(run["model"]).to(torch.float32).state_dict()
    weights = sum(t.numel() * t.element_size() for t in state.values() if t.dtype == torch.float32)
    assert snapshot_bytes(run) == weights * (len(run["snapshots"]) + moments)
    config["experiments"]["one"]["snapshots"]["weights"] = "analysed"  # basins at the final step only
    assert snapshot_bytes(load_config(config, SCHEMA)["one/base"]) == weights * (1 + moments)
