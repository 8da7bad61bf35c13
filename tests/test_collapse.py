"""Neural-collapse measures (netdyn.collapse) on constructed features with known values."""

from __future__ import annotations

import pytest
import torch

from netdyn.collapse import nc1, nc2, nc3, nc4, simplex_etf_gram


def simplex_means(classes: int, dim: int, radius: float = 1.0, seed: int = 0) -> torch.Tensor:
    """``classes`` vectors of a simplex ETF of norm ``radius`` in ``dim`` dimensions, centred, randomly rotated."""
    centred = torch.eye(classes, dtype=torch.float64) - 1.0 / classes
    centred = centred / centred.norm(dim=1, keepdim=True) * radius
    rotation, _ = torch.linalg.qr(
        torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return torch.cat([centred, torch.zeros(classes, dim - classes, dtype=torch.float64)], dim=1) @ rotation.T


def test_an_exact_simplex_etf_is_fully_collapsed():
    classes, per_class = 10, 30
    means = simplex_means(classes, 32, radius=3.0) + 5.0  # a global offset changes nothing
    labels = torch.arange(classes).repeat_interleave(per_class)
    features = means[labels]
    assert nc1(features, labels) == pytest.approx(0.0, abs=1e-20)
    assert nc2(features, labels) == pytest.approx({"nc2_norm": 0.0, "nc2_angle": 0.0, "nc2_etf": 0.0}, abs=1e-12)
    classifier = (means - means.mean(dim=0)) * 0.7  # self-dual: the classifier rows are the centred means, scaled
    assert nc3(features, labels, classifier) == pytest.approx(0.0, abs=1e-20)
    assert nc4(features, labels, labels) == 0.0
    assert nc4(features, labels, (labels + 1) % classes) == 1.0


def test_isotropic_noise_around_a_simplex_gives_the_predicted_nc1():
    classes, dim, per_class, radius, sigma = 5, 20, 4000, 2.0, 0.5
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(classes).repeat_interleave(per_class)
    features = simplex_means(classes, dim, radius)[labels]
    features = features + sigma * torch.randn(features.shape, generator=generator, dtype=torch.float64)
    # Sigma_W = sigma^2 I; Sigma_B has C - 1 eigenvalues r^2 / (C - 1): NC1 = sigma^2 (C - 1)^2 / (r^2 C)
    predicted = sigma**2 * (classes - 1) ** 2 / (radius**2 * classes)
    assert nc1(features, labels) == pytest.approx(predicted, rel=0.05)
    assert nc2(features, labels)["nc2_norm"] < 0.02  # the noise barely moves the means


def test_unequal_norms_and_angles_register():
    labels = torch.arange(3).repeat_interleave(10)
    means = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-3.0, -3.0]], dtype=torch.float64)
    measured = nc2(means[labels], labels)
    assert measured["nc2_norm"] > 0.1 and measured["nc2_angle"] > 0.1 and measured["nc2_etf"] > 0.1
    assert torch.allclose(torch.diag(simplex_etf_gram(4)), torch.ones(4, dtype=torch.float64))
