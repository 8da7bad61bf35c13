"""Training: the update rule, determinism, resume after SIGKILL, divergence handling, snapshots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from netdyn import data as datasets
from netdyn.snapshots import DivergedSnapshotError, SnapshotError, load_snapshot, read
from netdyn.train import batch_indices, train_run
from tests.conftest import ROOT, tiny_spec


def run(spec: dict, h5: Path, out: Path) -> dict:
    return train_run(spec, h5, out / "snapshots", out / "history.csv", out / "run.json", log=lambda _: None)


def states(out: Path, step: int) -> dict[str, torch.Tensor]:
    return read(out / "snapshots" / f"step{step:06d}.pt")["state_dict"]


def test_one_sgd_step_matches_a_hand_computed_update(synthetic_h5, tmp_path):
    spec = tiny_spec(optimizer="sgd", lr=0.5, steps=1, batch_size=16, loss="ce")
    spec["model"].update(depth=1, width=5, activation="tanh")
    spec["snapshots"] = [0, 1]
    run(spec, synthetic_h5, tmp_path)
    before = {k: v.double().numpy() for k, v in states(tmp_path, 0).items()}
    after = {k: v.double().numpy() for k, v in states(tmp_path, 1).items()}

    data = datasets.load(synthetic_h5, dtype=torch.float64)
    index = batch_indices(0, len(data.train_y), 16, seed=0).numpy()
    x, y = data.train_x.numpy()[index], data.train_y.numpy()[index]
    w1, b1, w2, b2 = before["0.weight"], before["0.bias"], before["2.weight"], before["2.bias"]
    hidden = np.tanh(x @ w1.T + b1)
    logits = hidden @ w2.T + b2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    d_logits = (probs - np.eye(10)[y]) / len(y)
    d_hidden = (d_logits @ w2) * (1 - hidden**2)
    expected = {
        "0.weight": w1 - 0.5 * d_hidden.T @ x,
        "0.bias": b1 - 0.5 * d_hidden.sum(0),
        "2.weight": w2 - 0.5 * d_logits.T @ hidden,
        "2.bias": b2 - 0.5 * d_logits.sum(0),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(after[name], value, rtol=1e-5, atol=1e-6)


def test_same_seed_gives_identical_snapshots_and_another_seed_does_not(synthetic_h5, tmp_path):
    spec = tiny_spec(n_train=200)
    spec["model"].update(batchnorm=True, dropout=0.2)
    run(spec, synthetic_h5, tmp_path / "a")
    run(spec, synthetic_h5, tmp_path / "b")
    run(tiny_spec(n_train=200, seed=1) | {"model": spec["model"]}, synthetic_h5, tmp_path / "c")
    for step in spec["snapshots"]:
        a, b = states(tmp_path / "a", step), states(tmp_path / "b", step)
        assert all(torch.equal(a[k], b[k]) for k in a)
    c = states(tmp_path / "c", 40)
    assert not torch.equal(c["0.weight"], states(tmp_path / "a", 40)["0.weight"])


def test_outputs_history_and_run_record(synthetic_h5, tmp_path):
    spec = tiny_spec()
    spec["model"]["batchnorm"] = True
    record = run(spec, synthetic_h5, tmp_path)
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["step"].tolist() == spec["snapshots"]
    assert history["train_acc"].iloc[-1] > 0.5  # the synthetic classes are easy
    for column in ("train_loss_bntrain", "train_acc_bntrain", "test_acc_bntrain"):
        assert history[column].notna().all(), column
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["status"] == record["status"] == "completed"
    assert saved["versions"]["torch"] == torch.__version__
    model, meta = load_snapshot(tmp_path / "snapshots" / "step000040.pt")
    assert not model.training and meta["step"] == 40
    assert not (tmp_path / ".train-resume").exists()
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [f"step{s:06d}.pt" for s in spec["snapshots"]]


def test_divergence_stops_the_run_and_writes_markers_not_weights(synthetic_h5, tmp_path):
    spec = tiny_spec(optimizer="sgd", lr=1e6, steps=30)
    spec["snapshots"] = [0, 1, 10, 20, 30]
    record = run(spec, synthetic_h5, tmp_path)
    assert record["status"] == "diverged"
    diverged_at = record["diverged_at"]
    assert 0 < diverged_at <= 30
    for step in spec["snapshots"]:
        path = tmp_path / "snapshots" / f"step{step:06d}.pt"
        if step < diverged_at:
            model, _ = load_snapshot(path)
            assert all(torch.isfinite(p).all() for p in model.parameters())
        else:
            with pytest.raises(DivergedSnapshotError, match=f"diverged at step {diverged_at}"):
                load_snapshot(path)
    history = pd.read_csv(tmp_path / "history.csv")
    assert (history["step"] < diverged_at).all()
    # Known answer: the first step whose loss is not finite in a plain loop over the same model and batches (the
    # trainer records it on the device and reads it back only at snapshots).
    from netdyn.evaluate import loss_value
    from netdyn.models import build
    from netdyn.train import make_optimizer

    data = datasets.load(synthetic_h5)
    model = build(spec["model"], generator_seed=0)
    optimizer = make_optimizer(model.parameters(), spec["train"])
    for step in range(30):
        index = batch_indices(step, len(data.train_y), spec["train"]["batch_size"], 0)
        loss = loss_value(model(data.train_x[index]), data.train_y[index], spec["train"]["loss"])
        if not torch.isfinite(loss):
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert step == diverged_at


def test_corrupt_snapshot_is_named_in_the_error(tmp_path):
    path = tmp_path / "step000001.pt"
    path.write_bytes(os.urandom(100))
    with pytest.raises(SnapshotError, match=str(path)):
        load_snapshot(path)


TRAINER = """
import sys, json
from netdyn.train import train_run
spec = json.loads(sys.argv[1])
out = sys.argv[3]
train_run(spec, sys.argv[2], out + "/snapshots", out + "/history.csv", out + "/run.json", log=print)
"""


def kill_during_training(spec: dict, h5: Path, out: Path, resume_state: str) -> None:
    """Train ``spec`` in a child process and SIGKILL it once a resume state matching ``resume_state`` exists."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NETDYN_RESUME_EVERY_S": "0"}
    process = subprocess.Popen([sys.executable, "-c", TRAINER, json.dumps(spec), str(h5), str(out)], env=env)
    deadline = time.time() + 120
    while not list((out / ".train-resume").glob(resume_state)) and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "run.json").exists(), "the run finished before it could be killed; make it longer"


def test_resume_after_sigkill_equals_the_uninterrupted_run(synthetic_h5, tmp_path):
    spec = tiny_spec(steps=600, batch_size=64)
    spec["model"].update(depth=3, width=256, batchnorm=True, dropout=0.1)
    spec["snapshots"] = list(range(0, 601, 50))
    out = tmp_path / "killed"
    kill_during_training(spec, synthetic_h5, out, "resume0001[05]0.pt")
    assert not list(out.rglob("*.tmp*"))  # atomic writes: no half file survives

    record = run(spec, synthetic_h5, out)
    assert record["resumed_from"] and record["resumed_from"] >= 100
    run(spec, synthetic_h5, tmp_path / "straight")
    for step in spec["snapshots"]:
        a, b = states(out, step), states(tmp_path / "straight", step)
        assert all(torch.equal(a[k], b[k]) for k in a), step
    killed = pd.read_csv(out / "history.csv").drop(columns="wall_time")
    straight = pd.read_csv(tmp_path / "straight" / "history.csv").drop(columns="wall_time")
    pd.testing.assert_frame_equal(killed, straight)


def test_a_stale_resume_cache_from_another_spec_is_ignored(synthetic_h5, tmp_path):
    run(tiny_spec(lr=0.01), synthetic_h5, tmp_path / "a")
    spec = tiny_spec(lr=0.002)
    cache = tmp_path / "b" / ".train-resume"
    cache.mkdir(parents=True)
    final = tmp_path / "a" / "snapshots" / "step000040.pt"  # the final snapshot holds a whole resume state
    (cache / "resume000040.pt").write_bytes(final.read_bytes())
    assert read(final)["optimizer"] and read(final)["rng"]
    record = run(spec, synthetic_h5, tmp_path / "b")
    assert record["resumed_from"] is None
    run(spec, synthetic_h5, tmp_path / "c")
    assert torch.equal(states(tmp_path / "b", 40)["0.weight"], states(tmp_path / "c", 40)["0.weight"])


def test_cuda_requested_without_a_gpu_is_a_clear_error(synthetic_h5, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="train.device: 'cuda' was requested"):
        run(tiny_spec(device="cuda"), synthetic_h5, tmp_path)


def test_auto_device_falls_back_to_cpu_with_a_warning(synthetic_h5, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.warns(UserWarning, match="computing on the CPU"):
        record = run(tiny_spec(device="auto", steps=2), synthetic_h5, tmp_path)
    assert record["status"] == "completed"


def test_training_never_imports_torch_dynamo_and_matches_the_plain_optimizer_step(synthetic_h5, tmp_path):
    """netdyn.train skips torch.optim's dynamo wrappers (seconds of start-up per job): same weights as step()."""
    import subprocess
    import sys

    script = """
import sys, torch
from netdyn.train import make_optimizer, optimizer_step
from netdyn.models import build
from tests.conftest import tiny_spec
def train(name, plain):
    spec = tiny_spec(optimizer=name)
    model = build(spec["model"], generator_seed=0)
    optimizer = make_optimizer(model.parameters(), spec["train"])
    for step in range(3):
        model(torch.ones(4, 784)).square().mean().backward()
        optimizer.step() if plain else optimizer_step(optimizer)
        optimizer.zero_grad()
    return model[0].weight.detach().clone()
names = ("adam", "adamw", "sgd")
ours = [train(name, plain=False) for name in names]
assert "torch._dynamo" not in sys.modules, "a training step imported torch._dynamo"
for name, weights in zip(names, ours):
    assert torch.equal(weights, train(name, plain=True)), name
"""
    # One process for the three optimizers (each process pays seconds for torch and torch._dynamo).
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_run_keeps_the_weights_of_its_weights_steps_and_the_history_of_every_step(synthetic_h5, tmp_path):
    spec = tiny_spec()
    spec["weights"] = [5, 40]
    run(spec, synthetic_h5, tmp_path / "kept")
    assert sorted(p.name for p in (tmp_path / "kept" / "snapshots").iterdir()) == ["step000005.pt", "step000040.pt"]
    history = pd.read_csv(tmp_path / "kept" / "history.csv")
    assert history["step"].tolist() == spec["snapshots"]
    full = tiny_spec()
    run(full, synthetic_h5, tmp_path / "full")
    for step in spec["weights"]:  # the same weights as a run that keeps them all
        a, b = states(tmp_path / "kept", step), states(tmp_path / "full", step)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert read(tmp_path / "full" / "snapshots" / "step000040.pt")["optimizer"]["state"]  # the final one can go on
    assert "optimizer" not in read(tmp_path / "full" / "snapshots" / "step000005.pt")  # the others hold weights


def test_resume_states_are_written_when_due_and_only_the_newest_is_kept(synthetic_h5, tmp_path, monkeypatch):
    import netdyn.snapshots
    import netdyn.train

    written = []
    real_save = netdyn.snapshots.save

    def save(path, payload):
        written.append(Path(path).name)
        if Path(path).name.startswith("resume"):
            assert not [p for p in Path(path).parent.glob("resume*.pt") if p.name < Path(path).name][1:]
        real_save(path, payload)

    monkeypatch.setattr(netdyn.snapshots, "save", save)
    monkeypatch.setattr(netdyn.train, "RESUME_EVERY_S", 0.0)
    run(tiny_spec(), synthetic_h5, tmp_path / "every")
    assert [n for n in written if n.startswith("resume")] == ["resume000001.pt", "resume000005.pt", "resume000020.pt"]
    written.clear()
    monkeypatch.setattr(netdyn.train, "RESUME_EVERY_S", 3600.0)
    run(tiny_spec(), synthetic_h5, tmp_path / "hourly")
    assert not [n for n in written if n.startswith("resume")]
    assert not (tmp_path / "hourly" / ".train-resume").exists()


def test_snapshots_that_would_not_fit_on_the_disk_stop_before_training(synthetic_h5, tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(RuntimeError, match=r"run test/base: its snapshots need about .* GB and .* has 0.0 GB free"):
        run(tiny_spec(), synthetic_h5, tmp_path)
    assert not (tmp_path / "snapshots").exists() and not (tmp_path / "history.csv").exists()


def test_training_leaves_the_callers_thread_count_as_it_was(synthetic_h5, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run(tiny_spec(), synthetic_h5, tmp_path)  # trains on 1 thread (train_run's default)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
