"""Convolutional nets in the workflow (model.arch: cnn, docs/config.md): the config keys, the builder, training with
resume after SIGKILL, and a tiny CNN config through every stage."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from netdyn.config import CNN_DEFAULTS, ConfigError, conv_plan, expand_runs, hidden_widths, stack_groups
from netdyn.layerview import AnalysedNet, view
from netdyn.models import build
from netdyn.plan import model_macs, parameter_count
from netdyn.snapshots import load_snapshot
from tests.conftest import ROOT, tiny_spec
from tests.test_train import kill_during_training, run, states

SCHEMA = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())


def cnn_spec(**model) -> dict:
    spec = tiny_spec(steps=30, batch_size=32)
    spec["model"] = {**CNN_DEFAULTS, "depth": 3, "width": 4, "head_widths": [8], **model}
    return spec


def test_the_builder_makes_the_layers_the_spec_names():
    model = build({"arch": "cnn", "depth": 3, "width": 6, "batchnorm": True, "pool_every": 2, "head_widths": [12]})
    assert isinstance(model, AnalysedNet) and model.input_shape == (1, 28, 28)
    kinds = [type(module).__name__ for module in model.net]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d",
                     "BatchNorm2d", "ReLU", "Flatten", "Linear", "BatchNorm1d", "ReLU", "Linear"]  # fmt: skip
    assert model.net[11].in_features == 6 * 14 * 14  # one pooling: 28 -> 14
    assert [(layer.kind, layer.units) for layer in view(model).layers] == [("conv", 6)] * 3 + [("linear", 12)]
    assert model(torch.rand(5, 784)).shape == (5, 10)
    assert conv_plan({**CNN_DEFAULTS, "channels": [2, 3, 4, 5, 6, 7], "pool_every": 1}) == [
        (2, 14, True),
        (3, 7, True),
        (4, 3, True),
        (5, 1, True),
        (6, 1, False),
        (7, 1, False),
    ]  # fmt: skip  (no pooling below 2 pixels)
    torch.manual_seed(3)
    first = build({"arch": "cnn"}, generator_seed=5).state_dict()
    second = build({"arch": "cnn"}, generator_seed=5).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    with pytest.raises(ValueError, match="model.kernel: 4 is even"):
        build({"arch": "cnn", "kernel": 4})


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"arch": "cnn", "widths": [3]}, "experiments.c.model.widths: not a key of model.arch cnn"),
        ({"kernel": 3}, "experiments.c.model.kernel: not a key of model.arch mlp"),
    ],
)
def test_keys_of_the_other_architecture_are_named(model, message):
    config = {"experiments": {"c": {"model": model, "train": {"steps": 5}}}}
    with pytest.raises(ConfigError, match=message):
        expand_runs(config, SCHEMA)


def test_schema_checks_cnn_keys_with_their_path():
    from netdyn.config import load_config

    config = {"experiments": {"c": {"model": {"arch": "cnn", "pool_every": -1}, "train": {"steps": 5}}}}
    with pytest.raises(ConfigError, match="pool_every"):
        load_config(config, ROOT / "schemas" / "config.schema.yaml")


def test_cnn_runs_train_alone_and_the_planner_counts_their_convolutions():
    config = {"experiments": {"c": {"model": {"arch": "cnn", "depth": 2, "width": 8, "head_widths": []},
                                    "train": {"steps": 5}, "seeds": 3}}}  # fmt: skip
    runs = expand_runs(config, SCHEMA)
    assert len(runs) == 3 and stack_groups(runs) == {}
    model = next(iter(runs.values()))["model"]
    macs, layers = model_macs(model)
    # 3x3 convs at 28x28: 1->8 and 8->8, pooled once (pool_every 2) after the second; Linear 8*14*14 -> 10
    expected = [9 * 1 * 8 * 28 * 28, 9 * 8 * 8 * 28 * 28, 8 * 14 * 14 * 10]
    assert layers == expected and macs == sum(expected)
    parameters = 9 * 8 + 8 + 9 * 64 + 8 + 8 * 14 * 14 * 10 + 10
    assert sum(p.numel() for p in build(model).parameters()) == parameters == parameter_count(model)
    assert hidden_widths(model) == [8, 8]  # the analysed layers' units: what a dump holds


def test_a_cnn_trains_and_resumes_after_sigkill_bit_for_bit(synthetic_h5, tmp_path):
    spec = cnn_spec(batchnorm=True, dropout=0.1)
    spec["train"]["steps"] = 300
    spec["snapshots"] = list(range(0, 301, 25))
    out = tmp_path / "killed"
    kill_during_training(spec, synthetic_h5, out, "resume0000[57]5.pt")
    record = run(spec, synthetic_h5, out)
    assert record["resumed_from"] and record["resumed_from"] >= 50
    run(spec, synthetic_h5, tmp_path / "straight")
    for step in spec["snapshots"]:
        a, b = states(out, step), states(tmp_path / "straight", step)
        assert all(torch.equal(a[k], b[k]) for k in a), step
    history = pd.read_csv(out / "history.csv")
    assert history["test_acc"].iloc[-1] > 0.5  # the synthetic classes are easy
    model, _ = load_snapshot(out / "snapshots" / "step000300.pt")
    assert isinstance(model, AnalysedNet) and isinstance(model.net[1], nn.BatchNorm2d)


@pytest.mark.slow
def test_a_tiny_cnn_config_goes_through_every_stage(tmp_path):
    config = yaml.safe_load((ROOT / "tests" / "configs" / "tiny_cnn.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
    command += ["--configfile", str(tmp_path / "config.yaml"), "--cores", "2"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "results" / "runs" / "cnn" / "base"
    metrics = pd.read_csv(folder / "metrics.csv")
    final = metrics[metrics["step"] == metrics["step"].max()]
    assert final.query("metric == 'opm_fraction'")["layer"].tolist() == [1, 2, 3, 4]  # three conv layers, the head
    assert sorted(final.query("metric == 'lmap_acc'")["layer"]) == [1, 2, 3, 4, 5]
    for name in ("basin_input", "basin_weight", "center_similarity", "test_acc_bnbatch", "hessian_max", "nc1"):
        assert name in set(final["metric"]), name
    assert final.query("metric == 'test_acc'")["value"].item() > 0.5
    for table in ("rpd", "neurons", "basins", "geometry", "projection", "hessian", "cka"):
        assert len(pd.read_csv(folder / f"{table}.csv")) > 0, table
    # Fig. S3's cnn role reaches the scorecard: one run gives its rows a value, and no interval.
    assert (tmp_path / "results" / "figures" / "figS3.png").exists()
    card = pd.read_csv(tmp_path / "results" / "claims.csv").set_index("claim")
    assert (card.loc[[13, 14, 15], "scale"] == "beyond paper").all()
    assert card.loc[[13, 14], "estimate"].notna().all() and (card.loc[[13, 14], "verdict"] == "inconclusive").all()
    assert "no interval" in card.loc[13, "reason"] and "no width with >= 4 depths" in card.loc[15, "reason"]
