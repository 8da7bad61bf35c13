"""RPD against a brute-force scipy ranking, its invariances, reference shapes and the readout (methods.md §6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from netdyn.layers import forward_layers
from netdyn.models import build
from netdyn.rpd import (
    _compact_keys,
    ascending_average_ranks,
    bin_edges,
    lmap_readout,
    rank_positions,
    readout_signs,
    rpd,
    rpd_for_layers,
    rpd_gradient,
)


def brute_force_rho(h: np.ndarray, readout: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rank every (neuron, class) column of c_ik = h_i A_ik separately (descending, ties averaged), §6.2."""
    count, neurons = h.shape
    rho = np.full((count, neurons), np.nan)
    for i in range(neurons):
        for k in range(readout.shape[1]):
            descending = rankdata(-(h[:, i] * readout[i, k]), method="average")
            rows = labels == k
            rho[rows, i] = (descending[rows] - 1) / (count - 1)
    return rho


def brute_force_density(rho: np.ndarray, bins: int) -> np.ndarray:
    density, _ = np.histogram(rho.ravel(), bins=bin_edges(bins), density=True)
    return density


def random_case(seed: int, integer_fields: bool, count: int = 61, neurons: int = 7, classes: int = 4):
    rng = np.random.default_rng(seed)
    h = (
        rng.integers(-3, 4, size=(count, neurons)).astype(float)
        if integer_fields
        else rng.normal(size=(count, neurons))
    )
    readout = rng.normal(size=(neurons, classes))
    readout[0, 1] = 0.0  # a zero readout entry: all contributions tie
    readout[3, 2] = 0.0
    labels = rng.integers(0, classes, size=count)
    return h, readout, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("integer_fields", [False, True])
@pytest.mark.parametrize("chunk_elements", [2**22, 130])  # one chunk, and chunks of two neurons
def test_fast_rpd_equals_brute_force_ranking(seed, integer_fields, chunk_elements):
    h, readout, labels = random_case(seed, integer_fields)
    expected_rho = brute_force_rho(h, readout, labels)
    rho = rank_positions(torch.tensor(h), torch.tensor(readout), torch.tensor(labels), chunk_elements=chunk_elements)
    np.testing.assert_allclose(rho.numpy(), expected_rho, atol=1e-12, rtol=0)
    for bins in (10, 50):
        centers, density = rpd(h, readout, labels, bins, chunk_elements=chunk_elements)
        np.testing.assert_allclose(density, brute_force_density(expected_rho, bins), atol=1e-12, rtol=0)
        np.testing.assert_allclose(centers, (np.arange(bins) + 0.5) / bins)


def test_float32_fields_with_ties_match_brute_force():
    h, readout, labels = random_case(3, integer_fields=True, count=200, neurons=5, classes=10)
    expected = brute_force_rho(h, readout, labels)
    rho = rank_positions(torch.tensor(h, dtype=torch.float32), torch.tensor(readout), torch.tensor(labels))
    np.testing.assert_allclose(rho.numpy(), expected, atol=1e-12, rtol=0)
    _, density = rpd(torch.tensor(h, dtype=torch.float32), readout, labels, 10)
    np.testing.assert_allclose(density, brute_force_density(expected, 10), atol=1e-12, rtol=0)


def awkward_float32_fields(count: int = 300, neurons: int = 8) -> np.ndarray:
    """Float32 fields with ±0.0, ties, neighbouring floats, and magnitudes spanning more than 2^64 (neuron 4 only)."""
    rng = np.random.default_rng(11)
    h = rng.normal(size=(count, neurons)).astype(np.float32)
    h[::7, 0] = 0.0
    h[1::7, 0] = -0.0  # ties +0.0
    h[:, 1] = np.round(h[:, 1], 1)  # many ties
    h[:, 2] = np.nextafter(np.float32(1.0), np.float32(2.0), dtype=np.float32) * (rng.integers(0, 2, count) + 1)
    h[:, 3] = np.where(rng.random(count) < 0.5, 1.0, np.nextafter(np.float32(1.0), np.float32(0.0)))
    h[:5, 4] = [1e-38, -1e-38, 1e-45, 3e38, -3e38]  # range > 2^64: the general path
    h[:, 5] = 1.0  # all tied
    h[:, 6] *= 1e-20
    h[:4, 7] = [-0.0, 0.0, -0.0, 0.0]
    h[4:8, 7] = [2.0**-40, -(2.0**-41), 3.0, -3.0]  # the column spans 2^42
    return h


@pytest.mark.parametrize("chunk_elements", [2**22, 600])
def test_float32_fast_path_matches_brute_force_on_awkward_values(chunk_elements):
    h = awkward_float32_fields()
    rng = np.random.default_rng(12)
    readout = rng.normal(size=(h.shape[1], 4))
    readout[2, 1] = 0.0
    labels = rng.integers(0, 4, size=h.shape[0])
    expected = brute_force_rho(h.astype(np.float64), readout, labels)
    for bins in (7, 50):
        _, density = rpd(torch.from_numpy(h), readout, labels, bins, chunk_elements=chunk_elements)
        np.testing.assert_allclose(density, brute_force_density(expected, bins), atol=1e-12, rtol=0)
    rho = rank_positions(torch.from_numpy(h), readout, labels, chunk_elements=chunk_elements)
    np.testing.assert_allclose(rho.numpy(), expected, atol=1e-12, rtol=0)


def test_compact_keys_order_and_tie_like_the_floats():
    h = awkward_float32_fields().T.copy()
    keys, exact = _compact_keys(torch.from_numpy(h))
    assert exact.tolist() == [True, True, True, True, False, True, True, True]
    assert not bool((keys & 3).any())  # the payload bits are free
    for row in np.flatnonzero(exact.numpy()):
        codes = keys[row].numpy().astype(np.int64)
        # Same order and the same ties as the floats: comparing any two samples gives the same answer.
        np.testing.assert_array_equal(
            np.sign(codes[:, None] - codes[None, :]), np.sign(h[row][:, None] - h[row][None, :])
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_finite_fields_and_bad_labels_are_refused(dtype):
    h, readout, labels = random_case(0, integer_fields=False)
    for bad in (np.nan, np.inf, -np.inf):
        broken = torch.tensor(h, dtype=dtype)
        broken[5, 3] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            rpd(broken, readout, labels)
        with pytest.raises(ValueError, match="NaN or infinite"):
            rank_positions(broken, readout, labels)
    with pytest.raises(ValueError, match="class indices 0..3"):
        rpd(h, readout, np.where(labels == 0, 4, labels))


def test_ascending_average_ranks_equal_scipy_column_by_column():
    rng = np.random.default_rng(4)
    values = np.round(rng.normal(size=(97, 6)), 1)  # many ties
    ranks = ascending_average_ranks(torch.tensor(values)).numpy()
    np.testing.assert_array_equal(ranks, np.column_stack([rankdata(col, method="average") for col in values.T]))


def test_zero_readout_puts_every_sample_in_the_middle():
    h, _, labels = random_case(5, integer_fields=False)
    rho = rank_positions(torch.tensor(h), torch.zeros(h.shape[1], 4), torch.tensor(labels))
    assert torch.all(rho == 0.5)


def test_rpd_depends_only_on_the_sign_of_the_readout():
    rng = np.random.default_rng(6)
    h = rng.normal(size=(500, 12))
    readout = rng.normal(size=(12, 10))
    labels = rng.integers(0, 10, size=500)
    rescaled = readout * rng.uniform(0.01, 100, size=readout.shape)  # positive, entry by entry
    _, density = rpd(h, readout, labels)
    _, density_rescaled = rpd(h, rescaled, labels)
    assert np.array_equal(density, density_rescaled)
    rho = rank_positions(torch.tensor(h), torch.tensor(readout), torch.tensor(labels))
    assert torch.equal(rho, rank_positions(torch.tensor(h), torch.tensor(rescaled), torch.tensor(labels)))
    # Flipping every sign reverses each ordering: ρ -> 1 - ρ.
    flipped = rank_positions(torch.tensor(h), -torch.tensor(readout), torch.tensor(labels))
    torch.testing.assert_close(flipped, 1 - rho, atol=1e-12, rtol=0)


def test_density_is_normalized_so_flat_is_one():
    rng = np.random.default_rng(7)
    h = rng.normal(size=(400, 9))
    _, density = rpd(h, rng.normal(size=(9, 10)), rng.integers(0, 10, size=400), bins=20)
    assert density.mean() == pytest.approx(1.0)


def gaussian_classes(count: int = 5000, dim: int = 20, classes: int = 10, seed: int = 0):
    """The §6.2 toy data: ten Gaussian classes with random centres."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=count)
    centres = 1.5 * rng.normal(size=(classes, dim))
    return rng.normal(size=(count, dim)) + centres[labels], labels, rng


def test_random_projection_and_random_readout_give_a_flat_rpd():
    data, labels, rng = gaussian_classes()
    h = data @ rng.normal(size=(data.shape[1], 64))
    centers, density = rpd(h, rng.normal(size=(64, 10)), labels)
    gradient = rpd_gradient(centers, density)
    assert abs(gradient["G"]) < 0.15
    assert abs(gradient["contrast"]) < 0.25
    assert 0.85 < density[0] < 1.15


def test_class_aligned_neurons_with_matching_readout_give_a_steep_rpd():
    """The §6.2 toy: neuron i fires for class i mod 10 and reads out +1 to it, −1 to the others.

    Its own-class samples (10% of P) fill ρ ∈ [0, 0.1]; every other sample ranks by −h, above the own-class block,
    so it spreads over [0, 0.9]. The ideal density is 2 on [0, 0.1], 1 on [0.1, 0.9] and 0 above (G ≈ 1.08).
    """
    _, labels, rng = gaussian_classes()
    neurons = 64
    preferred = np.arange(neurons) % 10
    h = 8.0 * (labels[:, None] == preferred[None, :]) + rng.normal(size=(len(labels), neurons))
    readout = np.where(preferred[:, None] == np.arange(10)[None, :], 1.0, -1.0)
    centers, density = rpd(h, readout, labels)
    ideal = np.where(centers < 0.1, 2.0, np.where(centers > 0.9, 0.0, 1.0))
    assert np.abs(density - ideal).max() < 0.15  # class shares are only about 10%
    gradient = rpd_gradient(centers, density)
    assert gradient["G"] == pytest.approx(rpd_gradient(centers, ideal)["G"], abs=0.03)
    assert gradient["G"] > 1.0
    assert density[0] > 1.9
    # Random signs towards the other classes still leave a clearly steep RPD.
    readout = readout * np.where(preferred[:, None] == np.arange(10)[None, :], 1.0, rng.choice([-1.0, 1.0], (64, 10)))
    assert rpd_gradient(*rpd(h, readout, labels))["G"] > 0.3
    # Reading out negatively to the own class pushes those samples to the bottom instead.
    readout[np.arange(neurons), preferred] *= -1
    assert rpd_gradient(*rpd(h, readout, labels))["G"] < -0.3


def test_rpd_gradient_known_answers():
    centers = (np.arange(50) + 0.5) / 50
    linear = 1.8 - 1.6 * centers
    gradient = rpd_gradient(centers, linear)
    assert gradient["G"] == pytest.approx(1.6)
    assert gradient["G_half"] == pytest.approx(1.6)
    expected_contrast = linear[centers < 0.1].mean() - linear[centers > 0.9].mean()
    assert gradient["contrast"] == pytest.approx(expected_contrast)
    assert rpd_gradient(centers, np.ones(50))["G"] == pytest.approx(0.0, abs=1e-12)
    # Exponential density: the log variant recovers the rate; zero bins are left out of it.
    exponential = 3.0 * np.exp(-2.5 * centers)
    exponential[-5:] = 0.0
    assert rpd_gradient(centers, exponential)["G_log"] == pytest.approx(2.5)
    # Only the first half steep: G_half sees the steep part only.
    kinked = np.where(centers <= 0.5, 2.0 - 2.0 * centers, 1.0)
    assert rpd_gradient(centers, kinked)["G_half"] == pytest.approx(2.0)


def linear_bn_model(depth: int = 3) -> torch.nn.Sequential:
    model = build(
        {"input_size": 10, "classes": 4, "widths": [8] * depth, "activation": "linear", "batchnorm": True},
        generator_seed=0,
    )
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.copy_(torch.randn(8, generator=generator))
                module.running_var.copy_(torch.rand(8, generator=generator) + 0.3)
                module.weight.copy_(torch.randn(8, generator=generator))  # some negative gammas
                module.bias.copy_(torch.randn(8, generator=generator))
    return model.eval()


def test_readout_maps_a_layer_field_to_the_logits_of_a_linear_bn_network():
    """A^{(m)} is d logits / d h^{(m)}: for identity activations, logits = h^{(m)} A^{(m)} + const (BN folded)."""
    model = linear_bn_model()
    inputs = torch.randn(50, 10, generator=torch.Generator().manual_seed(12))
    hs, _, logits = forward_layers(model, inputs)
    for layer in (1, 2, 3):
        readout = lmap_readout(model, layer)
        assert readout.shape == (8, 4)
        residual = logits.double() - hs[layer - 1].double() @ readout
        torch.testing.assert_close(residual, residual[:1].expand_as(residual), atol=1e-5, rtol=0)
        assert torch.equal(readout_signs(model, layer), torch.sign(readout).to(torch.int8))


def test_readout_of_a_shallow_network_is_the_output_weight():
    model = build({"input_size": 10, "classes": 4, "widths": [6], "activation": "tanh"})
    torch.testing.assert_close(lmap_readout(model, 1), model[-1].weight.detach().double().T, atol=0, rtol=0)
    with pytest.raises(ValueError, match="hidden layer"):
        lmap_readout(model, 2)


def test_rpd_for_layers_uses_each_layers_readout():
    model = linear_bn_model()
    generator = torch.Generator().manual_seed(13)
    inputs = torch.randn(120, 10, generator=generator)
    labels = torch.randint(0, 4, (120,), generator=generator)
    hs, _, _ = forward_layers(model, inputs)
    results = rpd_for_layers(model, hs, labels, bins=12)
    assert [result["layer"] for result in results] == [1, 2, 3]
    for result, h in zip(results, hs, strict=True):
        readout = lmap_readout(model, result["layer"]).numpy()
        expected = brute_force_density(brute_force_rho(h.double().numpy(), readout, labels.numpy()), 12)
        np.testing.assert_allclose(result["density"], expected, atol=1e-12, rtol=0)
        assert set(result) >= {"bin_centers", "density", "G", "G_half", "G_log", "contrast"}
