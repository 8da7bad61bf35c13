"""Linear centred kernel alignment between two representations of the same samples (Kornblith et al. 2019;
docs/methods.md §25).

CKA(X, Y) = HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y)) with linear kernels. The biased estimator centres the features
and is ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F). The debiased one uses the unbiased HSIC estimator of Song et al.
(2012), which removes the Gram matrices' diagonals; it is near 0 for independent features where the biased one is
not (for n samples of d features the biased CKA of independent noise is about d / n). Both are computed from the
features in O(n d^2), without the n x n Gram matrices.
"""

from __future__ import annotations

import torch


def _hsic_biased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (y.T @ x).square().sum()


def _hsic_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Song et al.'s unbiased HSIC with K = X X^T, L = Y Y^T, zero diagonals, from the features alone."""
    n = x.shape[0]
    kx, ky = x.square().sum(dim=1), y.square().sum(dim=1)  # diag K, diag L
    trace_kl = (y.T @ x).square().sum() - (kx * ky).sum()  # tr(K~ L~)
    k_row = x @ x.sum(dim=0) - kx  # K~ 1
    l_row = y @ y.sum(dim=0) - ky  # L~ 1
    total = trace_kl + k_row.sum() * l_row.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k_row @ l_row)
    return total / (n * (n - 3))


def linear_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = False) -> float:
    """Linear CKA of ``x`` [n, d1] and ``y`` [n, d2] (rows are the same samples), in float64."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same samples on both sides: {x.shape[0]} and {y.shape[0]} rows")
    if debiased and x.shape[0] < 4:
        raise ValueError("the debiased CKA needs at least 4 samples")
    x = x.double().flatten(1)
    y = y.double().flatten(1)
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    hsic = _hsic_unbiased if debiased else _hsic_biased
    denominator = torch.sqrt(hsic(x, x) * hsic(y, y))
    return float(hsic(x, y) / denominator) if denominator > 0 else float("nan")


def cka_matrix(representations: list[torch.Tensor], debiased: bool = False) -> torch.Tensor:
    """The symmetric matrix of CKA between every pair of ``representations``."""
    size = len(representations)
    matrix = torch.eye(size, dtype=torch.float64)
    for i in range(size):
        for j in range(i + 1, size):
            matrix[i, j] = matrix[j, i] = linear_cka(representations[i], representations[j], debiased)
    return matrix
