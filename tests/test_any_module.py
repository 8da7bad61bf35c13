"""Any PyTorch network through every analysis (docs/external.md "Any network"): a plain-PyTorch CNN with BatchNorm2d
and pooling, trained elsewhere and saved as state dicts, through ``netdyn analyze --model`` and ``netdyn.analyze``;
torchvision's ResNet-18 through every stage; clear errors for what cannot be analysed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from torch import nn

import netdyn
from netdyn.data import _mnist5k
from netdyn.external import ExternalRunError, load_checkpoint
from netdyn.layerview import AnalysedNet
from netdyn.stages import DEFAULT_ANALYSES, RUN_TABLES, STAGES
from tests.conftest import ROOT

ANALYSIS = {
    "samples": 300,
    "test_samples": 500,
    "input_amplitudes": {"start": -2, "stop": 1, "num": 7},
    "weight_amplitudes": {"start": -2, "stop": 0.5, "num": 6},
    "input_repeats": 1,
    "weight_draws": 2,
    "tracked_input_amplitudes": [0.1],
    "projection_per_digit": 20,
    "hessian_iterations": 5,
    "hessian_probes": 4,
    "hessian_samples": 100,
    "geometry_digit": 1,
    "geometry_first": 10,
}
BUILDER = textwrap.dedent(
    """
    from torch import nn


    def build():
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10),
        )
    """
)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """Real MNIST digits as [N, 1, 28, 28] arrays, and state dicts of a CNN a plain script trained on them."""
    root = tmp_path_factory.mktemp("cnn")
    arrays, _ = _mnist5k({"source": "mnist5k"})
    rows = np.arange(1500)
    x = arrays["train_images"][rows, None].astype(np.float32) / 255
    y = arrays["train_labels"][rows].astype(np.int64)
    x_test = arrays["test_images"][:500, None].astype(np.float32) / 255
    y_test = arrays["test_labels"][:500].astype(np.int64)
    np.savez(root / "digits.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    (root / "mymodel.py").write_text(BUILDER)
    namespace: dict = {}
    exec(BUILDER, namespace)
    torch.manual_seed(0)
    model = namespace["build"]()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs, labels = torch.as_tensor(x), torch.as_tensor(y)
    (root / "ckpt").mkdir()
    for step in range(81):
        if step in (0, 20, 80):
            torch.save({"model_state_dict": model.state_dict(), "step": step}, root / "ckpt" / f"epoch_{step}.pt")
        index = torch.randint(0, len(inputs), (64,))
        loss = nn.functional.cross_entropy(model(inputs[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return root, namespace["build"]


def without_run(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["run"]).reset_index(drop=True)


@pytest.mark.slow
def test_a_plain_pytorch_cnn_goes_through_the_cli_and_the_api_with_every_default_stage(cnn_run, tmp_path):
    root, build = cnn_run
    out = tmp_path / "out"
    (tmp_path / "analysis.yaml").write_text(yaml.safe_dump(ANALYSIS))
    command = [sys.executable, "-m", "netdyn.cli", "analyze", "--snapshots", str(root / "ckpt"), "--data"]
    command += [str(root / "digits.npz"), "--model", f"{root / 'mymodel.py'}:build", "--out", str(out)]
    command += ["--cores", "2", "--analysis", str(tmp_path / "analysis.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = out / "results" / "runs" / "mine" / "run"
    import_log = (out / "results" / "logs" / "import_run" / "mine" / "run.log").read_text()
    assert "analysed layers: 2, 5, 9" in import_log

    api = netdyn.analyze(str(root / "ckpt"), str(root / "digits.npz"), DEFAULT_ANALYSES, analysis=ANALYSIS, model=build)
    for name in ("rpd", "neurons", "basins", "geometry", "projection"):
        workflow = pd.read_csv(folder / f"{name}.csv")
        assert len(workflow) > 0, name
        pd.testing.assert_frame_equal(without_run(workflow), without_run(api[name]), check_dtype=False)
    metrics = api["metrics"]
    assert sorted(metrics["step"].unique()) == [0, 20, 80]
    final = metrics.query("step == 80")
    assert final.query("metric == 'test_acc'")["value"].item() > 0.6  # it learned the digits (chance: 0.1)
    lmap = final.query("metric == 'lmap_acc'").set_index("layer")["value"]
    assert sorted(lmap.index) == [1, 2, 3, 4]
    # from start layer 4 only the output Linear is left: the L-map is the network, on the whole test split
    assert lmap[4] == pytest.approx(final.query("metric == 'test_acc'")["value"].item(), abs=1e-12)
    assert lmap[1] < lmap[4]  # the whole network linearised loses accuracy
    assert final.query("metric == 'opm_fraction'")["layer"].tolist() == [1, 2, 3]
    assert {"basin_input", "basin_weight", "center_similarity", "test_acc_bnbatch"} <= set(metrics["metric"])
    neurons = api["neurons"].query("step == 80")
    assert neurons.groupby("layer").size().tolist() == [8, 16, 32]  # channels, channels, units


def test_a_resnet18_goes_through_every_stage_and_says_which_calls_it_cannot_analyse():
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=10)
    resnet.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # one-channel 28x28 images
    rng = np.random.default_rng(0)
    arrays = (
        rng.random((240, 1, 28, 28), dtype=np.float32),
        np.arange(240) % 10,
        rng.random((120, 1, 28, 28), dtype=np.float32),
        np.arange(120) % 10,
    )
    lines: list[str] = []
    tables = netdyn.analyze({0: resnet}, arrays, list(STAGES), analysis=ANALYSIS, log=lines.append)
    for name in RUN_TABLES:
        if name != "projection":
            assert len(tables[name]) > 0, name
    assert "analysed layers: relu, layer1.0.relu, layer1.1.relu, layer2.0.relu" in "\n".join(lines)
    assert any(line.startswith("not analysed, its input is not the output of a Linear") and "layer1.0.relu#1" in line
               for line in lines)  # fmt: skip
    assert any("no projection: the last analysed layer layer4.1.relu is convolutional" in line for line in lines)
    metrics = tables["metrics"]
    nc3 = metrics.query("metric == 'nc3'")
    assert nc3["value"].isna().all() and nc3["note"].str.startswith("not applicable").all()
    assert sorted(metrics.query("metric == 'lmap_acc'")["layer"]) == list(range(1, 11))
    assert len(tables["neurons"]) == 64 * 3 + 128 * 2 + 256 * 2 + 512 * 2


def test_what_cannot_be_analysed_is_named(tmp_path, cnn_run):
    root, build = cnn_run
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(build()), scripted)
    with pytest.raises(ExternalRunError, match="TorchScript.*--model FILE.py:build"):
        load_checkpoint(str(scripted))
    state = tmp_path / "state.pt"
    torch.save(build().state_dict(), state)
    with pytest.raises(ExternalRunError, match="needs its model: a builder"):
        load_checkpoint(str(state))
    model, description = load_checkpoint(str(state), builder=f"{root / 'mymodel.py'}:build")
    assert isinstance(model, AnalysedNet) and description["module"] == {"builder": f"{root / 'mymodel.py'}:build"}
    other = tmp_path / "other.pt"
    torch.save(nn.Linear(3, 3).state_dict(), other)
    with pytest.raises(ExternalRunError, match="does not fit .*mymodel.py:build's module"):
        load_checkpoint(str(other), builder=f"{root / 'mymodel.py'}:build")
    wide = tmp_path / "wide.npz"
    rng = np.random.default_rng(0)
    np.savez(wide, x_train=rng.random((20, 1, 32, 32)), y_train=np.arange(20) % 10,
             x_test=rng.random((10, 1, 32, 32)), y_test=np.arange(10) % 10)  # fmt: skip
    with pytest.raises(ExternalRunError, match=r"cannot take the data's samples of shape \(1, 32, 32\)"):
        netdyn.analyze({0: build()}, str(wide), ["rpd"], workdir=tmp_path / "work")
    with pytest.raises(ExternalRunError, match="no analysable layer"):
        netdyn.analyze({0: nn.Sequential(nn.Flatten(), nn.Linear(1024, 10), nn.Softmax(dim=1))}, str(wide), ["rpd"])


def test_chosen_layers_in_their_order_and_another_conv_field(cnn_run):
    root, build = cnn_run
    settings = {**ANALYSIS, "layers": ["5", "2"], "conv_field": "center"}
    tables = netdyn.analyze(str(root / "ckpt"), str(root / "digits.npz"), ["rpd"], analysis=settings, model=build)
    neurons = tables["neurons"].query("step == 80")
    assert neurons.groupby("layer").size().to_dict() == {1: 16, 2: 8}  # the second conv layer first, as named
    mean = netdyn.analyze(str(root / "ckpt"), str(root / "digits.npz"), ["rpd"], analysis=ANALYSIS, model=build)
    centre = tables["metrics"].query("metric == 'rpd_gradient' and step == 80 and layer == 2")["value"].item()
    spatial_mean = mean["metrics"].query("metric == 'rpd_gradient' and step == 80 and layer == 1")["value"].item()
    assert centre != spatial_mean  # the same layer (the first conv) read through another reduction


def test_lp_on_flattened_conv_outputs_and_a_layer_too_large_for_it(cnn_run, monkeypatch):
    root, build = cnn_run
    from netdyn import layerview

    monkeypatch.setattr(layerview, "MAX_FLAT_FEATURES", 4000)  # the first conv layer has 8 x 28 x 28 = 6272
    settings = {**ANALYSIS, "lp_features": "flattened"}
    flat = netdyn.analyze(str(root / "ckpt"), str(root / "digits.npz"), ["pruning"], analysis=settings, model=build)
    pooled = netdyn.analyze(str(root / "ckpt"), str(root / "digits.npz"), ["pruning"], analysis=ANALYSIS, model=build)
    lp = flat["metrics"].query("metric == 'lp_acc' and step == 80").set_index("layer")
    assert np.isnan(lp.loc[2, "value"]) and lp.loc[2, "note"].startswith("not applicable: too many flattened")
    same = pooled["metrics"].query("metric == 'lp_acc' and step == 80").set_index("layer")
    assert lp.loc[1, "value"] == same.loc[1, "value"] and lp.loc[4, "value"] == same.loc[4, "value"]  # input, head
    assert np.isfinite(lp.loc[3, "value"]) and lp.loc[3, "value"] != same.loc[3, "value"]  # 16 x 14 x 14 features
    lmap = flat["metrics"].query("metric == 'lmap_acc'")["value"].to_numpy()
    np.testing.assert_array_equal(lmap, pooled["metrics"].query("metric == 'lmap_acc'")["value"].to_numpy())


def test_a_builder_named_by_its_file(cnn_run, tmp_path):
    root, build = cnn_run
    by_file = netdyn.analyze(
        str(root / "ckpt"), str(root / "digits.npz"), ["rpd"], analysis=ANALYSIS, model=str(root / "mymodel.py")
    )  # fmt: skip  (the function defaults to build)
    by_function = netdyn.analyze(str(root / "ckpt"), str(root / "digits.npz"), ["rpd"], analysis=ANALYSIS, model=build)
    pd.testing.assert_frame_equal(by_file["metrics"], by_function["metrics"])
    from netdyn.config import ConfigError

    with pytest.raises(ConfigError, match=r"model: '.*digits.npz:build' is not FILE.py:FUNCTION"):
        netdyn.analyze(str(root / "ckpt"), str(root / "digits.npz"), ["rpd"], model=f"{root / 'digits.npz'}:build")


def test_a_layer_name_that_is_not_an_analysed_layer_is_named_before_anything_runs(cnn_run, tmp_path):
    root, build = cnn_run
    settings = {**ANALYSIS, "layers": ["5", "7"]}  # 7 is the Flatten's neighbour, not an activation
    with pytest.raises(
        ExternalRunError, match=r"epoch_0.pt: analysis.layers: '7' cannot be analysed .*analysable: 2, 5, 9"
    ):
        netdyn.analyze(str(root / "ckpt"), str(root / "digits.npz"), ["rpd"], analysis=settings, model=build,
                       workdir=tmp_path / "work")  # fmt: skip
    assert not (tmp_path / "work" / "results").exists()


def test_collapse_of_a_network_whose_output_layer_has_no_bias():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3, bias=False))
    rng = np.random.default_rng(0)
    arrays = (rng.normal(size=(90, 20)).astype(np.float32), np.arange(90) % 3,
              rng.normal(size=(30, 20)).astype(np.float32), np.arange(30) % 3)  # fmt: skip
    tables = netdyn.analyze({0: network}, arrays, ["collapse"], analysis={"samples": 90})
    metrics = tables["metrics"]
    nc4 = metrics.query("metric == 'nc4'")
    assert nc4["layer"].tolist() == [2] and np.isfinite(nc4["value"]).all()  # mixed activations: the layer view
