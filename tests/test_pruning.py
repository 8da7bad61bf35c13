"""L-map and LP pruning against exact references (methods.md §4, §5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression, Ridge

from netdyn.layers import blocks, forward_layers
from netdyn.models import build
from netdyn.pruning import (
    accuracy,
    fit_lp,
    fit_lp_details,
    lmap,
    lmap_accuracy,
    lmap_all,
    lmap_logits,
    lp_predict,
    pruning_table,
)


def randomize_batchnorm(model: torch.nn.Sequential, seed: int = 7) -> torch.nn.Sequential:
    """Random running statistics and affine parameters for every BatchNorm, some gammas negative; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator))
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.2)
                module.weight.copy_(torch.randn(n, generator=generator))
                module.bias.copy_(torch.randn(n, generator=generator))
    assert any((m.weight < 0).any() for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)), (
        "the test needs negative gammas"
    )
    return model.eval()


def small_model(activation: str, batchnorm: bool, seed: int = 0) -> torch.nn.Sequential:
    model = build(
        {"input_size": 12, "classes": 5, "widths": [9, 7, 6], "activation": activation, "batchnorm": batchnorm},
        generator_seed=seed,
    )
    return randomize_batchnorm(model) if batchnorm else model.eval()


def layer_outputs(model: torch.nn.Sequential, inputs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``[x^{(0)}, ..., x^{(L-1)}]`` and the logits."""
    _, xs, logits = forward_layers(model, inputs)
    return [inputs, *xs], logits


@pytest.mark.parametrize("batchnorm", [False, True])
def test_lmap_of_a_linear_network_reproduces_its_logits_from_every_start_layer(batchnorm):
    model = small_model("linear", batchnorm)
    inputs = torch.randn(200, 12, generator=torch.Generator().manual_seed(1))
    xs, logits = layer_outputs(model, inputs)
    labels = logits.argmax(1)
    for start in range(1, len(blocks(model)) + 1):
        pruned = lmap_logits(model, start, xs[start - 1])
        assert pruned.dtype == torch.float64
        torch.testing.assert_close(pruned, logits.double(), atol=1e-5, rtol=0)
        assert lmap_accuracy(model, start, xs[start - 1], labels) == 1.0


def test_lmap_with_bn_trained_in_train_mode_then_eval():
    """Running statistics produced by real train-mode steps, not set by hand."""
    model = build({"input_size": 8, "classes": 4, "widths": [6, 5], "activation": "linear", "batchnorm": True})
    generator = torch.Generator().manual_seed(3)
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(3 * torch.randn(32, 8, generator=generator) + 1)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.weight.uniform_(-2, 2)
    model.eval()
    inputs = torch.randn(100, 8, generator=generator)
    xs, logits = layer_outputs(model, inputs)
    for start in (1, 2, 3):
        torch.testing.assert_close(lmap_logits(model, start, xs[start - 1]), logits.double(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_lmap_at_the_output_layer_is_the_network_itself(activation, batchnorm):
    model = small_model(activation, batchnorm)
    inputs = torch.randn(150, 12, generator=torch.Generator().manual_seed(2))
    xs, logits = layer_outputs(model, inputs)
    last = len(blocks(model))
    torch.testing.assert_close(lmap_logits(model, last, xs[-1]), logits.double(), atol=1e-5, rtol=0)
    assert lmap_accuracy(model, last, xs[-1], logits.argmax(1)) == 1.0


def test_lmap_of_a_nonlinear_network_differs_from_it():
    """Guard: linearizing ReLU layers must change the logits, so the tests above can fail."""
    model = small_model("relu", False)
    inputs = torch.randn(150, 12, generator=torch.Generator().manual_seed(2))
    xs, logits = layer_outputs(model, inputs)
    assert (lmap_logits(model, 1, xs[0]) - logits.double()).abs().max() > 1e-3


def test_weight_only_lmap_is_the_raw_weight_product():
    model = small_model("relu", True)
    weights = [m.weight.detach().double() for m in model if isinstance(m, torch.nn.Linear)]
    for start in range(1, 5):
        expected = weights[-1]
        for weight in reversed(weights[start - 1 : -1]):
            expected = expected @ weight
        matrix, shift = lmap(model, start, fold_bn=False, bias=False)
        swept, swept_shift = lmap_all(model, fold_bn=False, bias=False)[start - 1]
        assert torch.equal(swept, matrix) and torch.equal(swept_shift, shift)
        assert matrix.shape == (5, weights[start - 1].shape[1])
        torch.testing.assert_close(matrix, expected, atol=1e-12, rtol=0)
        assert torch.count_nonzero(shift) == 0


def test_bn_folding_by_hand_for_one_layer():
    """M(L-1) = W_L · diag(γ/√(σ²+ε)) · W_{L-1} and c = W_L b̃ + b_L, written out independently."""
    model = small_model("relu", True)
    linear, bn, out = model[-4], model[-3], model[-1]
    assert isinstance(linear, torch.nn.Linear) and isinstance(bn, torch.nn.BatchNorm1d)
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    folded_w = scale[:, None] * linear.weight.double()
    folded_b = scale * (linear.bias.double() - bn.running_mean.double()) + bn.bias.double()
    matrix, shift = lmap(model, 3)
    w_out = out.weight.double()
    torch.testing.assert_close(matrix, w_out @ folded_w.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(shift, (w_out @ folded_b + out.bias.double()).detach(), atol=1e-12, rtol=0)
    _, no_bias = lmap(model, 3, bias=False)
    assert torch.count_nonzero(no_bias) == 0


def test_lmap_rejects_out_of_range_start_layers():
    model = small_model("relu", False)
    for bad in (0, 5):
        with pytest.raises(ValueError, match="start_layer"):
            lmap(model, bad)


def test_fit_lp_matches_sklearn_linear_regression():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 20)) * rng.uniform(0.5, 3, size=20) + rng.normal(size=20) * 4
    features = features.astype(np.float32).astype(np.float64)  # exactly representable in the float32 input
    targets = features @ rng.normal(size=(20, 6)) + rng.normal(size=(500, 6)) + 2.0
    reference = LinearRegression().fit(features, targets)
    coefficients, info = fit_lp_details(torch.tensor(features, dtype=torch.float32), torch.tensor(targets))
    assert info["ridge_lambda"] == 0.0  # well conditioned: plain least squares
    assert coefficients.shape == (21, 6)
    np.testing.assert_allclose(coefficients[:-1].numpy(), reference.coef_.T, atol=1e-6, rtol=0)
    np.testing.assert_allclose(coefficients[-1].numpy(), reference.intercept_, atol=1e-6, rtol=0)
    predicted = lp_predict(coefficients, torch.tensor(features, dtype=torch.float32))
    np.testing.assert_allclose(predicted.numpy(), reference.predict(features), atol=1e-6, rtol=0)


def test_fit_lp_without_intercept_matches_sklearn():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 8)) + 1.0
    targets = rng.normal(size=(300, 3)) + 5.0
    reference = LinearRegression(fit_intercept=False).fit(features, targets)
    coefficients = fit_lp(torch.tensor(features), torch.tensor(targets), affine=False)
    assert coefficients.shape == (8, 3)
    np.testing.assert_allclose(coefficients.numpy(), reference.coef_.T, atol=1e-9, rtol=0)


def test_fit_lp_accepts_numpy_and_chunks_many_rows():
    """More rows than one chunk (8192): the chunked Gram accumulation must equal the one-shot solution."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(20000, 5)).astype(np.float32)
    targets = (features @ rng.normal(size=(5, 2)) + 0.1 * rng.normal(size=(20000, 2))).astype(np.float32)
    reference = LinearRegression().fit(features.astype(np.float64), targets.astype(np.float64))
    coefficients = fit_lp(features, targets)
    np.testing.assert_allclose(coefficients[:-1].numpy(), reference.coef_.T, atol=1e-6, rtol=0)


def test_lp_reproduces_targets_that_are_affine_in_the_features():
    rng = np.random.default_rng(3)
    features = torch.tensor(rng.normal(size=(400, 15)))
    mixing, offset = torch.tensor(rng.normal(size=(15, 10))), torch.tensor(rng.normal(size=10))
    targets = features @ mixing + offset
    coefficients = fit_lp(features, targets)
    torch.testing.assert_close(coefficients[:-1], mixing, atol=1e-8, rtol=0)
    torch.testing.assert_close(lp_predict(coefficients, features), targets, atol=1e-8, rtol=0)


def test_lp_is_perfect_on_linearly_separable_data():
    """Classes at the corners of a simplex with small noise: the LP to one-hot-like logits separates them."""
    generator = torch.Generator().manual_seed(4)
    labels = torch.arange(600) % 6
    centres = 5 * torch.eye(6, 30)
    features = centres[labels] + 0.3 * torch.randn(600, 30, generator=generator)
    logits = torch.nn.functional.one_hot(labels, 6).float() * 3 - 1
    coefficients = fit_lp(features[:400], logits[:400])
    assert accuracy(lp_predict(coefficients, features[400:]), labels[400:]) == 1.0
    assert accuracy(lp_predict(coefficients, features[:400]), labels[:400]) == 1.0


def test_rank_deficient_features_get_the_documented_ridge():
    """A dead (all-zero) feature and a duplicated one: λ = 1e-6·tr(XᵀX)/(N+1), intercept unpenalized (sklearn Ridge)."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(250, 4)) + 2.0
    features = np.column_stack([base, np.zeros(250), base[:, 0]])
    targets = base @ rng.normal(size=(4, 3)) + rng.normal(size=(250, 3))
    coefficients, info = fit_lp_details(torch.tensor(features), torch.tensor(targets))
    design = np.column_stack([features, np.ones(250)])
    expected_lambda = 1e-6 * np.trace(design.T @ design) / design.shape[1]
    assert math.isinf(info["condition_number"]) or info["condition_number"] > 1e10
    assert info["ridge_lambda"] == pytest.approx(expected_lambda, rel=1e-10)
    reference = Ridge(alpha=expected_lambda, solver="svd").fit(features, targets)
    np.testing.assert_allclose(coefficients[:-1].numpy(), reference.coef_.T, atol=1e-6, rtol=0)
    np.testing.assert_allclose(coefficients[-1].numpy(), reference.intercept_, atol=1e-6, rtol=0)
    # The fit still reproduces the least-squares predictions (the ridge is tiny).
    least_squares = LinearRegression().fit(base, targets)
    np.testing.assert_allclose(lp_predict(coefficients, features).numpy(), least_squares.predict(base), atol=1e-4)


def test_explicit_zero_ridge_gives_the_minimum_norm_least_squares_solution():
    rng = np.random.default_rng(6)
    base = rng.normal(size=(100, 3))
    features = np.column_stack([base, base[:, 1]])
    targets = base @ rng.normal(size=(3, 2))
    coefficients, info = fit_lp_details(torch.tensor(features), torch.tensor(targets), ridge=0.0)
    assert info["ridge_lambda"] == 0.0
    centred = features - features.mean(0)
    expected = np.linalg.pinv(centred) @ (targets - targets.mean(0))
    np.testing.assert_allclose(coefficients[:-1].numpy(), expected, atol=1e-9, rtol=0)


def test_pruning_table_on_a_linear_network_is_exact_everywhere():
    """With identity activations and affine targets, LP and L-map both recover the network at every start layer."""
    model = small_model("linear", True)
    generator = torch.Generator().manual_seed(8)
    train_in, test_in = torch.randn(300, 12, generator=generator), torch.randn(100, 12, generator=generator)
    train_xs, train_logits = layer_outputs(model, train_in)
    test_xs, test_logits = layer_outputs(model, test_in)
    rows = pruning_table(
        model,
        train_xs,
        train_logits,
        [x.numpy() for x in test_xs],  # numpy arrays as read from an activation dump
        test_logits.argmax(1).numpy(),
        train_logits.argmax(1),
    )
    assert [row["start_layer"] for row in rows] == [1, 2, 3, 4]
    for row in rows:
        assert row["lmap_acc"] == 1.0
        assert row["lp_test_acc"] == 1.0
        assert row["lp_train_acc"] == 1.0
        assert set(row) >= {"lp_test_acc", "lp_train_acc", "lmap_acc", "lmap_weights_only_acc"}


def test_pruning_table_on_a_relu_network_matches_direct_computation():
    model = small_model("relu", True, seed=1)
    generator = torch.Generator().manual_seed(9)
    train_in, test_in = torch.randn(400, 12, generator=generator), torch.randn(120, 12, generator=generator)
    train_xs, train_logits = layer_outputs(model, train_in)
    test_xs, test_logits = layer_outputs(model, test_in)
    test_hs, _, _ = forward_layers(model, test_in)
    labels = torch.randint(0, 5, (120,), generator=generator)
    rows = pruning_table(model, train_xs, train_logits, test_xs, labels, test_hs=test_hs)
    for row in rows:
        start = row["start_layer"]
        # Independent LP reference: sklearn on the same data (the features here are full rank).
        reference = LinearRegression().fit(train_xs[start - 1].double().numpy(), train_logits.double().numpy())
        expected_lp = float((reference.predict(test_xs[start - 1].double().numpy()).argmax(1) == labels.numpy()).mean())
        assert row["lp_test_acc"] == pytest.approx(expected_lp)
        assert math.isnan(row["lp_train_acc"])
        assert row["lmap_acc"] == lmap_accuracy(model, start, test_xs[start - 1], labels)
        weights_only = lmap_logits(model, start, test_xs[start - 1], fold_bn=False, bias=False)
        assert row["lmap_weights_only_acc"] == accuracy(weights_only, labels)
        field = test_in if start == 1 else test_hs[start - 2]
        assert row["lmap_field_acc"] == lmap_accuracy(model, start, field, labels)
    # Start layer L is the network itself.
    assert rows[-1]["lmap_acc"] == accuracy(test_logits, labels)
