"""Linear CKA (netdyn.cka): invariances, identities and the debiased estimator against its n x n definition."""

from __future__ import annotations

import pytest
import torch

from netdyn.cka import cka_matrix, linear_cka


def features(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def unbiased_hsic_by_gram(x: torch.Tensor, y: torch.Tensor) -> float:
    """Song et al. (2012), eq. 5, with the n x n Gram matrices written out."""
    n = len(x)
    gram_x, gram_y = x @ x.T, y @ y.T
    gram_x.fill_diagonal_(0)
    gram_y.fill_diagonal_(0)
    ones = torch.ones(n, dtype=torch.float64)
    value = torch.trace(gram_x @ gram_y) + (ones @ gram_x @ ones) * (ones @ gram_y @ ones) / ((n - 1) * (n - 2))
    value -= 2.0 / (n - 2) * (ones @ gram_x @ gram_y @ ones)
    return float(value / (n * (n - 3)))


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_one_on_itself_and_invariant_to_rotation_scaling_and_shift(debiased):
    x = features(200, 30, 0)
    rotation, _ = torch.linalg.qr(features(30, 30, 1))
    assert linear_cka(x, x, debiased) == pytest.approx(1.0)
    y = features(200, 30, 2) + x @ features(30, 30, 3)  # related but not identical
    reference = linear_cka(x, y, debiased)
    assert linear_cka(x @ rotation * 3.5 + 2.0, y, debiased) == pytest.approx(reference, rel=1e-10)
    assert 0.0 < reference < 1.0


def test_independent_features_debiased_near_zero_where_the_biased_is_not():
    x, y = features(500, 100, 4), features(500, 100, 5)
    assert linear_cka(x, y) > 0.1  # about d / n: the biased estimator's floor
    assert abs(linear_cka(x, y, debiased=True)) < 0.02


def test_the_feature_space_estimator_equals_the_gram_definition():
    x, y = features(40, 7, 6), features(40, 5, 7)
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    by_gram = unbiased_hsic_by_gram(x, y) / (unbiased_hsic_by_gram(x, x) * unbiased_hsic_by_gram(y, y)) ** 0.5
    assert linear_cka(x, y, debiased=True) == pytest.approx(by_gram, rel=1e-10)
    matrix = cka_matrix([x, y, x], debiased=True)
    assert torch.allclose(matrix, matrix.T) and matrix[0, 2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(x, y[:10])
