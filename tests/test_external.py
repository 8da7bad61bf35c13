"""Runs trained by plain PyTorch: the config/CLI route and the Python API give the same tables."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

import netdyn
from netdyn.config import ConfigError
from netdyn.external import ExternalRunError, checkpoint_files, load_checkpoint
from netdyn.layerview import AnalysedNet, view
from netdyn.stages import STAGES
from tests.conftest import ROOT

ANALYSIS = {
    "samples": 200,
    "test_samples": 100,
    "input_amplitudes": {"start": -2, "stop": 2, "num": 9},
    "weight_amplitudes": {"start": -2, "stop": 1, "num": 7},
    "input_repeats": 1,
    "weight_draws": 2,
    "tracked_input_amplitudes": [0.1],
    "projection_per_digit": 30,
    "hessian_iterations": 20,
    "hessian_probes": 20,
    "geometry_digit": 1,
    "geometry_first": 10,
}


def features_dataset(path, seed=0):
    """20 features, 3 classes: Gaussian clusters, not images."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 20)) * 2

    def split(n):
        y = rng.integers(0, 3, n)
        return (centres[y] + rng.normal(size=(n, 20))).astype(np.float32), y

    x_train, y_train = split(600)
    x_test, y_test = split(300)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return x_train, y_train


def train_plainly(folder, x, y, *, whole_models=True):
    """A training script that knows nothing of netdyn; it saves checkpoints at a few steps."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(20, 32),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Linear(32, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    folder.mkdir(parents=True, exist_ok=True)
    for step in range(61):
        if step in (0, 5, 20, 60):
            model.eval()
            torch.save(model if whole_models else model.state_dict(), folder / f"ckpt_{step}.pt")
            model.train()
        index = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("external")
    x, y = features_dataset(root / "mine.npz")
    train_plainly(root / "whole", x, y)
    train_plainly(root / "state", x, y, whole_models=False)
    (root / "model.yaml").write_text(
        yaml.safe_dump({"input_size": 20, "classes": 3, "widths": [32, 16], "batchnorm": True})
    )
    return root


def without_run(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["run"]).reset_index(drop=True)


@pytest.mark.slow
def test_cli_config_route_and_api_route_give_identical_tables(plain_run, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "netdyn.cli", "analyze", "--snapshots", str(plain_run / "whole"), "--data"]
    (tmp_path / "analysis.yaml").write_text(yaml.safe_dump(ANALYSIS))
    command += [
        str(plain_run / "mine.npz"),
        "--out",
        str(out),
        "--cores",
        "2",
        "--analysis",
        str(tmp_path / "analysis.yaml"),
        "--analyses",
        ",".join(STAGES),  # the paper's six and the opt-in hessian, collapse, cka
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = out / "results" / "runs" / "mine" / "run"
    api = netdyn.analyze(str(plain_run / "whole"), str(plain_run / "mine.npz"), list(STAGES), analysis=ANALYSIS)
    for name in ("rpd", "basins", "geometry", "projection", "hessian", "cka"):
        workflow = pd.read_csv(folder / f"{name}.csv")
        assert len(workflow) > 0, name
        pd.testing.assert_frame_equal(without_run(workflow), without_run(api[name]), check_dtype=False)
    metrics = pd.read_csv(folder / "metrics.csv")
    metrics["note"] = metrics["note"].fillna("")  # an empty CSV field reads back as NaN
    pd.testing.assert_frame_equal(without_run(metrics), without_run(api["metrics"]), check_dtype=False)
    assert sorted(metrics["step"].unique()) == [0, 5, 20, 60]
    assert {"rpd_gradient", "lmap_acc", "basin_weight", "center_similarity", "test_acc_bnbatch"} <= set(
        metrics["metric"]
    )
    assert {"hessian_max", "hessian_trace", "nc1", "nc2_etf", "nc3", "nc4", "cka_to_final"} <= set(metrics["metric"])
    cka = pd.read_csv(folder / "cka.csv")
    assert cka.query("kind == 'to_final' and step == 60")["cka"].to_numpy() == pytest.approx(
        1.0
    )  # layers vs themselves
    assert len(cka.query("kind == 'layers'")) == 9  # the input and two hidden layers, every pair
    nc1 = metrics.query("metric == 'nc1'")
    assert nc1.query("step == 60")["value"].max() < nc1.query("step == 0")["value"].max()  # training collapses
    assert (out / "results" / "figures").exists() is False  # no figures configured: only per-run tables


def test_state_dict_with_a_yaml_description_equals_the_whole_pickled_model(plain_run):
    whole = netdyn.analyze(str(plain_run / "whole"), str(plain_run / "mine.npz"), ["rpd", "pruning"], analysis=ANALYSIS)
    state = netdyn.analyze(
        str(plain_run / "state"),
        str(plain_run / "mine.npz"),
        ["rpd", "pruning"],
        analysis=ANALYSIS,
        model_yaml=str(plain_run / "model.yaml"),
    )
    pd.testing.assert_frame_equal(whole["metrics"], state["metrics"])
    accuracy = whole["metrics"].query("metric == 'test_acc' and step == 60")["value"].item()
    assert accuracy > 0.9  # the plain script learned the three clusters


def test_api_accepts_models_in_memory_and_arrays(plain_run):
    x, y = features_dataset(plain_run / "again.npz")
    model = torch.load(plain_run / "whole" / "ckpt_60.pt", weights_only=False)
    arrays = tuple(np.load(plain_run / "mine.npz")[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    tables = netdyn.analyze({60: model}, arrays, ["pruning"], analysis=ANALYSIS)
    assert set(tables["metrics"]["step"]) == {60}
    lmap = tables["metrics"].query("metric == 'lmap_acc'")
    assert sorted(lmap["layer"]) == [1, 2, 3]


def test_api_names_a_data_file_that_does_not_exist(plain_run):
    with pytest.raises(FileNotFoundError, match="data: '/missing.npz' does not exist and is not a dataset name"):
        netdyn.analyze(str(plain_run / "whole"), "/missing.npz", ["rpd"])


def test_api_checks_a_data_files_arrays_before_anything_runs(plain_run, tmp_path):
    arrays = dict(np.load(plain_run / "mine.npz"))
    np.savez(tmp_path / "xy.npz", x=arrays["x_train"], y=arrays["y_train"])
    with pytest.raises(ConfigError, match=r"data: .*xy.npz: missing array\(s\) x_train, y_train, x_test, y_test"):
        netdyn.analyze(str(plain_run / "whole"), str(tmp_path / "xy.npz"), ["rpd"], workdir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_steps_come_from_file_names_or_a_csv(tmp_path):
    for name in ("a_step10.pt", "a_step2.pt", "a_step300.pt"):
        (tmp_path / name).write_bytes(b"")
    assert list(checkpoint_files(str(tmp_path))) == [2, 10, 300]
    (tmp_path / "steps.csv").write_text("file,step\na_step10.pt,1\na_step2.pt,0\na_step300.pt,7\n")
    assert list(checkpoint_files(str(tmp_path / "*.pt"), steps_csv=str(tmp_path / "steps.csv"))) == [0, 1, 7]
    with pytest.raises(ExternalRunError, match="no checkpoint files"):
        checkpoint_files(str(tmp_path / "nothing*.pt"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"0.weight": torch.zeros(8, 20)}, "needs its model"),
        ([1, 2, 3], "not a model or a state dict"),
    ],
)
def test_malformed_checkpoints_are_named(tmp_path, content, message):
    path = tmp_path / "ckpt_1.pt"
    torch.save(content, path)
    with pytest.raises(ExternalRunError, match=message) as error:
        load_checkpoint(str(path))
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    "module",
    [
        nn.Sequential(nn.Linear(20, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)),  # mixed activations
        nn.Sequential(nn.Linear(20, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)),
    ],
)
def test_an_mlp_that_is_no_netdyn_chain_is_analysed_through_its_layer_view(tmp_path, module):
    path = tmp_path / "ckpt_1.pt"
    torch.save(module, path)
    model, description = load_checkpoint(str(path), view={"input_shape": [20]})
    assert isinstance(model, AnalysedNet) and description["module"] == {"file": str(path)}
    assert [layer.units for layer in view(model).layers] == [8, 8]


def test_a_truncated_checkpoint_and_a_mismatched_state_dict(tmp_path):
    truncated = tmp_path / "ckpt_1.pt"
    torch.save(nn.Sequential(nn.Linear(20, 3)), truncated)
    truncated.write_bytes(truncated.read_bytes()[:50])
    with pytest.raises(ExternalRunError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(str(truncated))
    state = tmp_path / "ckpt_2.pt"
    torch.save(nn.Sequential(nn.Linear(20, 3)).state_dict(), state)
    with pytest.raises(ExternalRunError, match="does not fit the model spec"):
        load_checkpoint(str(state), {"input_size": 20, "classes": 3, "widths": [8]})
