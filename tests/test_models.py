"""Model building for every option of the spec (methods.md §1)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from netdyn.layers import UnsupportedModelError, blocks, forward_layers
from netdyn.models import build


@pytest.mark.parametrize("activation", ["tanh", "relu", "linear", "sigmoid", "gelu"])
@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_layer_sequence_matches_the_spec(activation, batchnorm, dropout):
    model = build({"depth": 3, "width": 16, "activation": activation, "batchnorm": batchnorm, "dropout": dropout})
    kinds = [type(m).__name__ for m in model]
    per_block = ["Linear"] + (["BatchNorm1d"] if batchnorm else []) + ["ACT"] + (["Dropout"] if dropout else [])
    expected_act = {"tanh": "Tanh", "relu": "ReLU", "linear": "Identity", "sigmoid": "Sigmoid", "gelu": "GELU"}
    expected = [expected_act[activation] if k == "ACT" else k for k in per_block] * 3 + ["Linear"]
    assert kinds == expected
    assert len(blocks(model)) == 4
    assert model(torch.zeros(5, 784)).shape == (5, 10)


def test_widths_list_and_sizes():
    model = build({"widths": [20, 7], "input_size": 12, "classes": 3})
    shapes = [tuple(m.weight.shape) for m in model if isinstance(m, nn.Linear)]
    assert shapes == [(20, 12), (7, 20), (3, 7)]


def test_default_init_is_pytorch_kaiming_uniform_bound():
    model = build({"depth": 1, "width": 512}, generator_seed=0)
    first = model[0].weight
    bound = 1 / math.sqrt(784)
    assert first.abs().max() <= bound
    assert first.abs().max() > 0.95 * bound  # fills the range


def test_uniform_init_uses_the_fixed_range_for_every_weight_and_keeps_default_biases():
    model = build({"depth": 2, "width": 300, "init": "uniform", "init_range": 0.05}, generator_seed=0)
    for module in model:
        if isinstance(module, nn.Linear):
            assert module.weight.abs().max() <= 0.05
            assert module.weight.abs().max() > 0.049
    assert model[0].bias.abs().max() <= 1 / math.sqrt(784)


def test_alpha_scales_every_parameter_after_init():
    plain = build({"depth": 2, "width": 8, "batchnorm": True}, generator_seed=3)
    scaled = build({"depth": 2, "width": 8, "batchnorm": True, "alpha": 8.0}, generator_seed=3)
    for a, b in zip(plain.parameters(), scaled.parameters(), strict=True):
        torch.testing.assert_close(8.0 * a, b)


def test_same_seed_same_weights():
    a = build({"depth": 2, "width": 8}, generator_seed=1)
    b = build({"depth": 2, "width": 8}, generator_seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize(
    ("spec", "message"),
    [({"activation": "swish"}, "model.activation"), ({"init": "xavier"}, "model.init"), ({"depht": 2}, "depht")],
)
def test_bad_spec_is_rejected(spec, message):
    with pytest.raises(ValueError, match=message):
        build(spec)


def test_forward_layers_returns_fields_outputs_and_logits():
    model = build({"depth": 2, "width": 6, "activation": "tanh", "batchnorm": True}).eval()
    x = torch.randn(4, 784)
    hs, xs, logits = forward_layers(model, x)
    assert len(hs) == len(xs) == 2
    torch.testing.assert_close(xs[0], torch.tanh(hs[0]))
    torch.testing.assert_close(logits, model(x))


@pytest.mark.parametrize(
    ("model", "culprit"),
    [
        (nn.Sequential(nn.Linear(4, 4), nn.Conv1d(1, 1, 1), nn.Linear(4, 2)), "Conv1d"),
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.LayerNorm(4), nn.Linear(4, 2)), "LayerNorm"),
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU()), "must end with an nn.Linear"),
        (nn.Linear(4, 2), "expected an nn.Sequential"),
    ],
)
def test_unsupported_models_name_the_first_bad_module(model, culprit):
    with pytest.raises(UnsupportedModelError, match=culprit):
        blocks(model)
