"""Neuron modes (netdyn.modes) against brute force: scipy ranks, explicit label shuffles, constructed neurons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from netdyn.modes import classify, mean_rank_positions, null_z
from netdyn.rpd import rank_positions, rpd, rpd_with_neurons


def brute_mean_rho(h: np.ndarray, readout: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean over samples of ρ = (descending average rank of h_i A_{i,y} within column y − 1)/(P − 1), per neuron."""
    count, neurons = h.shape
    out = np.empty(neurons)
    for i in range(neurons):
        rho = np.empty(count)
        for k in np.unique(labels):
            contribution = h[:, i] * readout[i, k]
            descending = rankdata(-contribution, method="average")
            rho[labels == k] = (descending[labels == k] - 1) / (count - 1)
        out[i] = rho.mean()
    return out


def test_neuron_sums_give_each_neurons_mean_rank_position_exactly_with_ties():
    rng = np.random.default_rng(0)
    h = np.round(rng.standard_normal((60, 7)), 1).astype(np.float32)  # many ties
    h[:, 3] = 0.5  # a constant neuron
    readout = rng.standard_normal((7, 3))
    readout[5] = 0.0  # a neuron with no readout at all
    labels = rng.integers(0, 3, 60)
    _, _, ranks = rpd_with_neurons(h, readout, labels, bins=10)
    np.testing.assert_allclose(mean_rank_positions(ranks), brute_mean_rho(h, readout, labels), atol=1e-12)
    rho = rank_positions(torch.as_tensor(h), torch.as_tensor(readout), torch.as_tensor(labels))
    np.testing.assert_allclose(mean_rank_positions(ranks), rho.mean(0).numpy(), atol=1e-12)
    z = null_z(ranks)
    assert np.isnan(z[3]) and np.isnan(z[5]) and np.isfinite(np.delete(z, [3, 5])).all()
    # The single sort serves both: the histogram is rpd()'s.
    np.testing.assert_array_equal(rpd_with_neurons(h, readout, labels, 10)[1], rpd(h, readout, labels, 10)[1])


def test_general_sort_path_gives_the_same_neuron_sums():
    rng = np.random.default_rng(1)
    h = rng.standard_normal((50, 4))  # float64 that float32 cannot hold exactly: the general path
    readout, labels = rng.standard_normal((4, 3)), rng.integers(0, 3, 50)
    _, _, ranks = rpd_with_neurons(h, readout, labels, bins=10)
    _, _, single = rpd_with_neurons(h.astype(np.float32), readout, labels, bins=10)
    np.testing.assert_allclose(mean_rank_positions(ranks), brute_mean_rho(h, readout, labels), atol=1e-12)
    assert not np.allclose(mean_rank_positions(single), 0.5)


def test_the_null_moments_are_those_of_explicit_label_shuffles():
    rng = np.random.default_rng(2)
    count = 40
    h = np.round(rng.standard_normal((count, 3)), 1).astype(np.float32)
    readout = np.array([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, 0.0], [-2.0, 1.0, 1.0, 1.0]])
    labels = rng.integers(0, 4, count)
    _, _, ranks = rpd_with_neurons(h, readout, labels, bins=10)
    shuffled = np.array([brute_mean_rho(h, readout, rng.permutation(labels)) for _ in range(3000)])
    # mean rho = 1/2 + T/(2P(P-1)): the exact permutation mean is 1/2 and the variance Var(T)/(2P(P-1))^2.
    variance = ranks.sign_spread.numpy() * ranks.rank_square.numpy() / (count - 1) / (2.0 * count * (count - 1)) ** 2
    assert (np.abs(shuffled.mean(0) - 0.5) <= 4 * np.sqrt(variance / 3000)).all()
    np.testing.assert_allclose(shuffled.var(0), variance, rtol=0.1)


def class_aligned_layer(count: int, neurons: int, classes: int, separation: float, seed: int):
    """Neuron i prefers class i % C: its field is higher for that class; its readout excites that class only."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    preferred = np.arange(neurons) % classes
    h = rng.standard_normal((count, neurons)) + separation * (labels[:, None] == preferred[None, :])
    readout = -np.ones((neurons, classes))
    readout[np.arange(neurons), preferred] = 1.0
    return h.astype(np.float32), readout * rng.uniform(0.5, 2.0, (neurons, 1)), labels


def test_constructed_class_aligned_neurons_are_order_preserving():
    h, readout, labels = class_aligned_layer(2000, 40, 10, separation=1.5, seed=3)
    _, _, ranks = rpd_with_neurons(h, readout, labels)
    modes = classify(ranks)
    assert modes["opm"].all() and modes["opm_fraction"] == 1.0
    assert (modes["z"] > 5).all() and (modes["score"] > 0.1).all()
    # Reversing every readout sign makes the same neurons anti-ordered: NPM, with negative z.
    flipped = classify(rpd_with_neurons(h, -readout, labels)[2])
    assert not flipped["opm"].any() and (flipped["z"] < -5).all()
    # A minimum score on top of the test.
    assert not classify(ranks, min_score=0.9)["opm"].any()


@pytest.mark.parametrize("alpha", [0.01, 0.05])
def test_random_neurons_are_called_order_preserving_at_the_rate_alpha(alpha):
    rng = np.random.default_rng(4)
    neurons = 4000
    h = rng.standard_normal((500, neurons)).astype(np.float32)
    readout = rng.standard_normal((neurons, 10))
    labels = rng.integers(0, 10, 500)
    modes = classify(rpd_with_neurons(h, readout, labels)[2], alpha=alpha)
    expected, sd = alpha * neurons, np.sqrt(neurons * alpha * (1 - alpha))
    assert abs(modes["opm"].sum() - expected) <= 4 * sd
    assert modes["threshold"] == pytest.approx({0.01: 2.3263, 0.05: 1.6449}[alpha], abs=1e-4)
    assert abs(np.nanmean(modes["z"])) < 0.1 and np.nanstd(modes["z"]) == pytest.approx(1.0, abs=0.05)


def test_classify_refuses_a_meaningless_alpha():
    _, _, ranks = rpd_with_neurons(np.random.default_rng(0).standard_normal((20, 2)), np.ones((2, 2)), [0, 1] * 10)
    with pytest.raises(ValueError, match="alpha"):
        classify(ranks, alpha=1.5)
