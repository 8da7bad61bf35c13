"""Activation dumps: contents equal a direct forward pass; bad files are named in the error."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from netdyn.activations import ActivationFileError, read, write
from netdyn.models import build


@pytest.fixture
def dumped(tmp_path):
    model = build({"depth": 3, "width": 12, "activation": "tanh", "batchnorm": True, "dropout": 0.5}, generator_seed=0)
    model.train()
    model(torch.randn(64, 784))  # move BatchNorm running stats away from their initial values
    x_train, x_test = torch.rand(50, 784), torch.rand(20, 784)
    y_train, y_test = torch.arange(50) % 10, torch.arange(20) % 10
    path = tmp_path / "step000010.h5"
    splits = {"train": (np.arange(50) * 2, x_train, y_train), "test": (np.arange(20), x_test, y_test)}
    write(path, model, splits, attrs={"run": "a/base", "step": 10})
    return path, model, x_train, y_train


def test_dump_holds_fields_outputs_and_logits_of_an_eval_forward(dumped):
    path, model, x, y = dumped
    assert model.training  # dumping leaves the caller's mode alone
    dump = read(path, "train")
    model.eval()
    h = model[1](model[0](x))  # Linear -> BatchNorm
    np.testing.assert_allclose(dump["h"][0], h.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dump["x"][0], torch.tanh(h).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dump["logits"], model(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    assert len(dump["h"]) == 3
    np.testing.assert_array_equal(dump["labels"], y.numpy())
    np.testing.assert_array_equal(dump["indices"], np.arange(50) * 2)
    assert dump["attrs"]["run"] == "a/base" and dump["attrs"]["step"] == 10


def test_float16_dumps_are_smaller_and_close(dumped, tmp_path):
    path, model, x, y = dumped
    small = tmp_path / "half.h5"
    write(small, model, {"train": (np.arange(50), x, y)}, dtype="float16")
    half, full = read(small), read(path)
    assert half["h"][1].dtype == np.float16
    np.testing.assert_allclose(half["h"][1], full["h"][1], rtol=2e-3, atol=2e-3)


def test_truncated_foreign_and_missing_files_are_named(dumped, tmp_path):
    path, *_ = dumped
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["x"] = np.zeros(3)
    for bad in (truncated, foreign, tmp_path / "missing.h5"):
        with pytest.raises(ActivationFileError, match=str(bad)):
            read(bad)
