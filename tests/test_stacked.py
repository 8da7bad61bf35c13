"""Stacked-run training (netdyn.stacked) against the same runs trained alone: parameters, BatchNorm buffers, histories,
divergence of one member, resume after SIGKILL, and the group rule's rerun behaviour."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from netdyn import data as datasets
from netdyn.config import stack_groups, stack_key
from netdyn.models import build
from netdyn.snapshots import read
from netdyn.stacked import train_group
from netdyn.train import RunPaths, train_run
from tests.conftest import ROOT, tiny_spec

# The tolerance of issue 12 section 1: relative 1e-4 on every parameter after 200 steps, on the CPU.
RTOL = 1e-4


def member(label: str, steps: int = 200, model: dict | None = None, **train) -> dict:
    spec = tiny_spec(steps=steps, n_train=256, **train)
    spec["run"] = f"test/{label}"
    spec["model"].update(model or {})
    spec["snapshots"] = [0, 1, steps // 4, steps // 2, steps]
    return spec


def paths(root: Path, spec: dict) -> RunPaths:
    folder = root / spec["run"]
    return RunPaths(folder / "snapshots", folder / "history.csv", folder / "run.json")


def alone(spec: dict, h5: Path, root: Path) -> RunPaths:
    out = paths(root, spec)
    train_run(spec, h5, *out, log=lambda _: None)
    return out


def together(specs: list[dict], h5: Path, root: Path) -> list[RunPaths]:
    outs = [paths(root, spec) for spec in specs]
    train_group(specs, h5, outs, log=lambda _: None)
    return outs


def gauge_entries(state: dict) -> set[str]:
    """The biases of Linear layers followed by BatchNorm, and those BatchNorms' running means: BatchNorm subtracts the
    batch mean, so the loss does not depend on such a bias, its true gradient is zero and Adam turns the float
    rounding left in it into steps of size lr. Their values are rounding noise: two lone runs that differ only in
    their thread count differ there by 20 % (docs/design.md "Stacked training"), so no tolerance can apply to them;
    what they feed, the eval-mode network, is compared instead."""
    names = [name for name in state if name.endswith(".running_mean")]
    layers = {int(name.split(".")[0]) for name in names}
    return {f"{layer - 1}.bias" for layer in layers} | set(names)


def assert_same_state(a: dict, b: dict, rtol: float = RTOL) -> None:
    assert a.keys() == b.keys()
    for name in sorted(set(a) - gauge_entries(a)):
        if a[name].dtype == torch.long:
            assert torch.equal(a[name], b[name]), name
        else:
            scale = a[name].abs().max().clamp_min(1e-6)
            error = float((a[name] - b[name]).abs().max() / scale)
            assert error <= rtol, f"{name}: relative difference {error:.2e}"


def eval_logits(spec: dict, state: dict, h5: Path) -> torch.Tensor:
    model = build(spec["model"])
    model.load_state_dict(state)
    with torch.no_grad():
        return model.eval()(datasets.load(h5).test_x)


def snapshot_state(out: RunPaths, step: int) -> dict:
    return read(out.snapshots / f"step{step:06d}.pt")["state_dict"]


GROUP = [
    # BatchNorm + Dropout: seeds, learning rates, weight decay, dropout rates, init and alpha differ.
    member("bn_a", model={"batchnorm": True, "dropout": 0.2}, seed=0, lr=1e-3),
    member("bn_b", model={"batchnorm": True, "dropout": 0.5}, seed=1, lr=3e-3, weight_decay=1e-3),
    member("bn_c", model={"batchnorm": True, "dropout": 0.1, "init": "uniform", "alpha": 1.5}, seed=2, lr=5e-4),
]
PLAIN = [  # without BatchNorm every parameter is held to the tolerance
    member("drop_a", model={"dropout": 0.2}, seed=0),
    member("drop_b", model={"dropout": 0.5, "init": "uniform", "alpha": 1.5}, seed=1, lr=3e-3, weight_decay=1e-3),
]


@pytest.mark.parametrize("group", [GROUP, PLAIN], ids=["batchnorm", "plain"])
def test_a_stacked_group_matches_its_runs_trained_alone(group, synthetic_h5, tmp_path):
    assert len({stack_key(spec) for spec in group}) == 1
    stacked = together(group, synthetic_h5, tmp_path / "stacked")
    for spec, out in zip(group, stacked, strict=True):
        single = alone(spec, synthetic_h5, tmp_path / "alone")
        for step in spec["snapshots"]:
            a, b = snapshot_state(single, step), snapshot_state(out, step)
            assert_same_state(a, b)
            if group is PLAIN:
                assert not gauge_entries(a)
            logits, reference = eval_logits(spec, b, synthetic_h5), eval_logits(spec, a, synthetic_h5)
            # Two lone BatchNorm runs that differ only in their thread count differ by up to 3.1e-3 here (measured).
            assert float((logits - reference).abs().max() / reference.abs().max()) <= (5e-3 if group is GROUP else 1e-4)
        a, b = pd.read_csv(single.history), pd.read_csv(out.history)
        assert a["step"].tolist() == b["step"].tolist() == spec["snapshots"]
        metrics = ["train_acc", "test_acc", "train_acc_bntrain", "test_acc_bntrain"]
        # At most one prediction flipped by the rounding above: 1 / 100 of the test split (1 / 256 of the train one).
        pd.testing.assert_frame_equal(a[metrics], b[metrics], atol=1 / 100 + 1e-9)
        pd.testing.assert_series_equal(a["train_loss"], b["train_loss"], rtol=1e-3)
        record = json.loads(out.run_json.read_text())
        assert record["status"] == "completed" and record["stack"]["members"] == [s["run"] for s in group]
        # The lone run's snapshot format: the optimizer state has the same entries per parameter.
        last = f"step{spec['snapshots'][-1]:06d}.pt"
        stacked_state, single_state = (read(o.snapshots / last)["optimizer"]["state"] for o in (out, single))
        assert stacked_state.keys() == single_state.keys()
        assert all(stacked_state[k].keys() == single_state[k].keys() for k in single_state)


def test_sgd_with_momentum_and_mse_loss_match_too(synthetic_h5, tmp_path):
    specs = [
        member(f"sgd{i}", steps=100, optimizer="sgd", momentum=0.9, lr=lr, loss="mse", seed=i)
        for i, lr in enumerate([0.05, 0.1])
    ]
    for spec, out in zip(specs, together(specs, synthetic_h5, tmp_path / "stacked"), strict=True):
        single = alone(spec, synthetic_h5, tmp_path / "alone")
        assert_same_state(snapshot_state(single, 100), snapshot_state(out, 100))


def test_members_that_differ_in_shape_are_refused(synthetic_h5, tmp_path):
    wide = member("wide", model={"width": 64})
    with pytest.raises(ValueError, match="differ in what a group must share"):
        together([member("narrow"), wide], synthetic_h5, tmp_path)


def test_a_diverging_member_stops_alone(synthetic_h5, tmp_path):
    calm = member("calm", steps=60, seed=0, optimizer="sgd", lr=0.05)
    wild = member("wild", steps=60, seed=1, optimizer="sgd", lr=1e6)
    wild_alone = json.loads(alone(wild, synthetic_h5, tmp_path / "alone").run_json.read_text())
    calm_out, wild_out = together([calm, wild], synthetic_h5, tmp_path / "stacked")
    record = json.loads(wild_out.run_json.read_text())
    assert wild_alone["status"] == record["status"] == "diverged"
    assert record["diverged_at"] == wild_alone["diverged_at"]
    assert json.loads(calm_out.run_json.read_text())["status"] == "completed"
    for step in wild["snapshots"]:
        payload = read(wild_out.snapshots / f"step{step:06d}.pt")
        assert payload.get("diverged", False) == (step >= record["diverged_at"])
    calm_single = alone(calm, synthetic_h5, tmp_path / "alone")
    assert_same_state(snapshot_state(calm_single, 60), snapshot_state(calm_out, 60))


def test_a_group_that_crashes_after_a_member_diverged_resumes_to_the_uninterrupted_history(
    synthetic_h5, tmp_path, monkeypatch
):
    # The diverged member has no resume state, so the group starts afresh: the history rows of the first try must
    # not be appended a second time (CI caught that once in tests/test_faults.py, when groups resumed at step 0).
    import netdyn.stacked
    import netdyn.train

    monkeypatch.setattr(netdyn.train, "RESUME_EVERY_S", 0.0)  # the calm member's resume state at every snapshot

    specs = [
        member("calm", steps=60, seed=0, optimizer="sgd", lr=0.05),
        member("wild", steps=60, seed=1, optimizer="sgd", lr=1e6),
    ]
    for spec in specs:
        spec["snapshots"] = [0, 15, 30, 60]  # the wild member diverges before step 15
    reference = together(specs, synthetic_h5, tmp_path / "reference")
    calls, real_step = [0], netdyn.stacked.optimizer_step

    def crash_after_twenty_steps(optimizer):
        calls[0] += 1
        if calls[0] > 2 * 20:
            raise RuntimeError("simulated crash")
        real_step(optimizer)

    monkeypatch.setattr(netdyn.stacked, "optimizer_step", crash_after_twenty_steps)
    with pytest.raises(RuntimeError, match="simulated crash"):
        together(specs, synthetic_h5, tmp_path / "crashed")
    calm_cache, wild_cache = (paths(tmp_path / "crashed", spec).cache for spec in specs)
    assert [p.name for p in calm_cache.glob("resume*.pt")] == ["resume000015.pt"]
    assert list(wild_cache.glob("resume*.pt")) == []
    monkeypatch.setattr(netdyn.stacked, "optimizer_step", real_step)
    outs = together(specs, synthetic_h5, tmp_path / "crashed")
    for ref, out in zip(reference, outs, strict=True):
        mine, theirs = (pd.read_csv(p.history).drop(columns="wall_time") for p in (out, ref))
        pd.testing.assert_frame_equal(mine, theirs)
    assert json.loads(outs[0].run_json.read_text())["resumed_from"] is None


GROUP_SCRIPT = """
import json, sys
from netdyn.stacked import train_group
from netdyn.train import RunPaths
specs, root = json.loads(sys.argv[1]), sys.argv[3]
outs = [RunPaths(*(f"{root}/{s['run']}/{p}" for p in ("snapshots", "history.csv", "run.json"))) for s in specs]
train_group(specs, sys.argv[2], outs, log=print)
"""


def test_a_group_killed_mid_run_resumes_to_the_uninterrupted_result(synthetic_h5, tmp_path):
    specs = [member(f"r{i}", steps=1200, seed=i, lr=1e-3 * (i + 1)) for i in range(2)]
    for spec in specs:
        spec["snapshots"] = [0, 300, 600, 900, 1200]
    reference = together(specs, synthetic_h5, tmp_path / "reference")
    root = tmp_path / "killed"
    command = [sys.executable, "-c", GROUP_SCRIPT, json.dumps(specs), str(synthetic_h5), str(root)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NETDYN_RESUME_EVERY_S": "0"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caches = [paths(root, spec).cache for spec in specs]
    deadline = time.time() + 120
    while time.time() < deadline and not all((c / "resume000300.pt").exists() for c in caches):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert all((c / "resume000300.pt").exists() for c in caches), "the group never reached its first resume state"
    assert not any((c / "step001200.pt").exists() for c in caches), "the group finished before it was killed"
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert "resuming 2 stacked runs" in resumed.stdout
    for spec, ref, out in zip(specs, reference, [paths(root, s) for s in specs], strict=True):
        for step in spec["snapshots"]:
            a, b = snapshot_state(ref, step), snapshot_state(out, step)
            assert all(torch.equal(a[k], b[k]) for k in a), f"{spec['run']} step {step} differs after resume"
        assert json.loads(out.run_json.read_text())["resumed_from"] >= 300


def test_groups_form_per_experiment_from_runs_sharing_a_shape():
    def run(name, experiment="e", **changes):
        spec = copy.deepcopy(member(name))
        spec["experiment"] = experiment
        for key, value in changes.items():
            section, field = key.split("__")
            spec[section][field] = value
        return spec

    runs = {
        "e/s0": run("s0"),
        "e/s1": run("s1", train__seed=1, train__lr=0.1),
        "e/wide": run("wide", model__width=64),
        "e/alone": run("alone", train__stack=False),
        "f/s0": run("s0", experiment="f"),
        "f/s1": run("s1", experiment="f", train__seed=1),
        "f/drop": run("drop", experiment="f", model__dropout=0.5),
    }
    assert stack_groups(runs) == {"e__stack1": ["e/s0", "e/s1"], "f__stack1": ["f/s0", "f/s1"]}


def test_bf16_training_runs_stacked_and_alone_and_learns(synthetic_h5, tmp_path):
    specs = [member(f"p{i}", steps=60, seed=i, precision="bf16") for i in range(2)]
    stacked = together(specs, synthetic_h5, tmp_path / "stacked")
    single = alone(specs[0], synthetic_h5, tmp_path / "alone")
    fp32 = alone({**specs[0], "train": {**specs[0]["train"], "precision": "fp32"}}, synthetic_h5, tmp_path / "fp32")
    a, b, c = (snapshot_state(out, 60)["0.weight"] for out in (single, stacked[0], fp32))
    assert not torch.equal(a, c) and not torch.equal(b, c)  # bfloat16 matmuls really ran
    assert a.dtype == b.dtype == torch.float32  # the weights stay float32
    for out in (single, *stacked):
        history = pd.read_csv(out.history)
        assert history["train_acc"].iloc[-1] > 0.9 and history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
        assert json.loads(out.run_json.read_text())["spec"]["train"]["precision"] == "bf16"


def test_a_group_keeps_each_members_own_weights_steps_and_every_history_row(synthetic_h5, tmp_path):
    specs = [member("a", steps=40, seed=0), member("b", steps=40, seed=1)]
    for spec in specs:
        spec["snapshots"] = [0, 10, 20, 40]
    specs[0]["weights"], specs[1]["weights"] = [10, 40], [40]
    outs = together(specs, synthetic_h5, tmp_path)
    assert sorted(p.name for p in outs[0].snapshots.iterdir()) == ["step000010.pt", "step000040.pt"]
    assert sorted(p.name for p in outs[1].snapshots.iterdir()) == ["step000040.pt"]
    for out in outs:
        assert pd.read_csv(out.history)["step"].tolist() == [0, 10, 20, 40]
