"""Known-answer tests for netdyn.projection (methods.md §10): numpy SVD truncation, constructed SVDs, sign rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netdyn.projection import bottleneck, output_weight, project, projection_table


def random_weight(seed: int, c: int = 10, n: int = 30) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(c, n))


def orthonormal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(rows, cols)))
    return q


def test_readout_times_bottleneck_is_best_rank_two_approximation() -> None:
    w = random_weight(0)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    rank2 = (u[:, :2] * s[:2]) @ vt[:2]
    w_b, u2, singular = bottleneck(torch.tensor(w))
    assert w_b.shape == (2, 30) and u2.shape == (10, 2)
    np.testing.assert_allclose((u2 @ w_b).numpy(), rank2, atol=1e-10)
    np.testing.assert_allclose(singular.numpy(), s, rtol=1e-12)
    # Eckart-Young: the Frobenius error of the rank-2 truncation is the norm of the left-out singular values.
    assert np.linalg.norm(w - (u2 @ w_b).numpy()) == pytest.approx(np.sqrt((s[2:] ** 2).sum()), rel=1e-10)
    # U2 has orthonormal columns; W_b rows are orthogonal with norms sigma_1, sigma_2.
    np.testing.assert_allclose((u2.T @ u2).numpy(), np.eye(2), atol=1e-12)
    np.testing.assert_allclose((w_b @ w_b.T).numpy(), np.diag(s[:2] ** 2), atol=1e-10)


def test_constructed_svd_known_answer_with_sign_rule() -> None:
    rng = np.random.default_rng(1)
    u = orthonormal(rng, 10, 10)
    v = orthonormal(rng, 20, 10)
    s = np.array([9.0, 5.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.3, 0.2, 0.1])
    # Make the largest-|.| entry of v_1 negative and that of v_2 positive, so the rule must flip pair 1 only.
    for j, want in ((0, -1.0), (1, 1.0)):
        if np.sign(v[np.argmax(np.abs(v[:, j])), j]) != want:
            v[:, j] *= -1
            u[:, j] *= -1
    w = (u * s) @ v.T
    w_b, u2, _ = bottleneck(w)
    expected_w_b = np.stack([-s[0] * v[:, 0], s[1] * v[:, 1]])
    expected_u2 = np.stack([-u[:, 0], u[:, 1]], axis=1)
    np.testing.assert_allclose(w_b.numpy(), expected_w_b, atol=1e-10)
    np.testing.assert_allclose(u2.numpy(), expected_u2, atol=1e-10)


def test_sign_rule_makes_largest_entry_positive_and_is_deterministic() -> None:
    for seed in range(5):
        w = random_weight(seed, n=40)
        w_b = bottleneck(w).weight.numpy()
        for row in w_b:
            assert row[np.argmax(np.abs(row))] > 0
        # -W = (-U) S V^T: same right singular vectors, so the same coordinates; the readout flips instead.
        flipped = bottleneck(-w)
        np.testing.assert_allclose(flipped.weight.numpy(), w_b, atol=1e-10)
        np.testing.assert_allclose(flipped.readout.numpy(), -bottleneck(w).readout.numpy(), atol=1e-10)
        # Permuting W's input columns permutes W_b's columns (the convention does not depend on column order).
        perm = np.random.default_rng(seed).permutation(40)
        np.testing.assert_allclose(bottleneck(w[:, perm]).weight.numpy(), w_b[:, perm], atol=1e-10)


def test_project_is_w_b_times_x() -> None:
    rng = np.random.default_rng(2)
    w = random_weight(3)
    x = rng.normal(size=(50, 30)).astype(np.float32)
    w_b = bottleneck(w).weight
    coords = project(x, w_b)
    assert coords.shape == (50, 2) and coords.dtype == torch.float64
    expected = np.array([[w_b.numpy()[j] @ x[i].astype(np.float64) for j in range(2)] for i in range(50)])
    np.testing.assert_allclose(coords.numpy(), expected, atol=1e-10)


def test_bottleneck_network_reproduces_rank_two_logits() -> None:
    """Inserting the bottleneck without retraining: logits = U2 (W_b x) + b = W_rank2 x + b."""
    rng = np.random.default_rng(4)
    w, b = random_weight(5), rng.normal(size=10)
    x = rng.normal(size=(8, 30))
    w_b, u2, _ = bottleneck(w)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    logits = project(x, w_b).numpy() @ u2.numpy().T + b
    np.testing.assert_allclose(logits, x @ ((u[:, :2] * s[:2]) @ vt[:2]).T + b, atol=1e-10)


def test_output_weight_folds_output_batchnorm() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3), nn.BatchNorm1d(3))
    bn = model[3]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(7, 5)
    weight = output_weight(model)
    # The folded map is affine in x: its linear part equals the finite difference of the eval-mode output.
    with torch.no_grad():
        linear_part = model[2:](x) - model[2:](torch.zeros(1, 5))
    torch.testing.assert_close(x @ weight.T, linear_part, atol=1e-5, rtol=1e-5)
    plain = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    torch.testing.assert_close(output_weight(plain), plain[2].weight.detach())


def test_projection_table_rows_and_columns() -> None:
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 10, size=400)
    indices = np.sort(rng.choice(10_000, size=400, replace=False))
    x = rng.normal(size=(400, 30))
    w = random_weight(7)
    table = projection_table(torch.tensor(x), labels, indices, torch.tensor(w), digits=[5, 0, 1], max_per_digit=7)
    assert list(table.columns) == ["split", "index", "label", "h1", "h2"]
    positions = [[i for i in range(400) if labels[i] == d][:7] for d in (5, 0, 1)]
    chosen = [i for group in positions for i in group]
    assert table["label"].tolist() == [5] * 7 + [0] * 7 + [1] * 7
    assert table["index"].tolist() == indices[chosen].tolist()
    assert (table["split"] == "train").all()
    w_b = bottleneck(w).weight.numpy()
    np.testing.assert_allclose(table[["h1", "h2"]].to_numpy(), x[chosen] @ w_b.T, atol=1e-10)
    test_table = projection_table(x, labels, indices, w, digits=[0], max_per_digit=10_000, split="test", step=42)
    assert list(test_table.columns) == ["step", "split", "index", "label", "h1", "h2"]
    assert len(test_table) == int((labels == 0).sum()) and (test_table["step"] == 42).all()


def test_rejects_degenerate_weight_and_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="C, N >= 2"):
        bottleneck(np.ones((1, 5)))
    with pytest.raises(ValueError, match="same number"):
        projection_table(np.ones((3, 4)), [0, 1, 2], [0, 1], np.ones((3, 4)), digits=[0])
