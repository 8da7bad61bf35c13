"""Known-answer tests for netdyn.geometry (methods.md §9): constructed clusters and a scipy brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cosine as scipy_cosine_distance

from netdyn import geometry
from netdyn.geometry import center_distances, center_similarity, class_centers, layer_geometry


def brute_centers(x: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.full((n_classes, x.shape[1]), np.nan)
    for k in range(n_classes):
        rows = [x[i] for i in range(len(x)) if labels[i] == k]
        if rows:
            out[k] = np.mean(rows, axis=0)
    return out


def brute_similarity(centers: np.ndarray) -> float:
    present = [c for c in centers if not np.isnan(c).any()]
    values = [1.0 - scipy_cosine_distance(a, b) for i, a in enumerate(present) for j, b in enumerate(present) if i != j]
    return float(np.mean(values))


def random_layer(seed: int, p: int = 200, n: int = 17, c: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=p)
    x = rng.normal(size=(p, n)) + 0.7 * rng.normal(size=(c, n))[labels]
    return x, labels


def test_random_data_matches_scipy_brute_force() -> None:
    x, labels = random_layer(0)
    centers = class_centers(torch.tensor(x), torch.tensor(labels), 10)
    expected_centers = brute_centers(x, labels, 10)
    np.testing.assert_allclose(centers.numpy(), expected_centers, rtol=1e-12, atol=1e-12)
    distances = center_distances(torch.tensor(x), torch.tensor(labels), centers).numpy()
    expected = [scipy_cosine_distance(x[i], expected_centers[labels[i]]) for i in range(len(x))]
    np.testing.assert_allclose(distances, expected, rtol=1e-10, atol=1e-12)
    assert center_similarity(centers) == pytest.approx(brute_similarity(expected_centers), abs=1e-12)


def test_numpy_and_float32_inputs_agree_with_float64_tensor() -> None:
    x, labels = random_layer(1)
    reference = center_distances(torch.tensor(x), torch.tensor(labels), class_centers(torch.tensor(x), labels, 10))
    x32 = x.astype(np.float32)
    from_numpy = center_distances(x32, labels, class_centers(x32, labels, 10))
    assert from_numpy.dtype == torch.float64
    np.testing.assert_allclose(from_numpy.numpy(), reference.numpy(), atol=1e-5)


def test_orthogonal_clusters_have_zero_similarity() -> None:
    rng = np.random.default_rng(2)
    n_classes, block = 4, 5
    labels = np.repeat(np.arange(n_classes), 30)
    x = np.zeros((len(labels), n_classes * block))
    for i, k in enumerate(labels):
        x[i, k * block : (k + 1) * block] = rng.uniform(0.1, 2.0, size=block)  # non-negative, like ReLU outputs
    centers = class_centers(x, labels, n_classes)
    assert center_similarity(centers) == pytest.approx(0.0, abs=1e-15)
    # A sample's distance to a foreign centre would be 1; to its own centre it is strictly between 0 and 1.
    d = center_distances(x, labels, centers).numpy()
    assert np.all((d > 0) & (d < 1))


def test_samples_equal_to_their_centre_have_zero_distance() -> None:
    rng = np.random.default_rng(3)
    prototypes = rng.normal(size=(10, 12))
    labels = np.tile(np.arange(10), 7)
    # Positive rescaling does not change a direction, so each class's samples all point at its centre.
    x = prototypes[labels] * rng.uniform(0.5, 3.0, size=(len(labels), 1))
    d = center_distances(x, labels, class_centers(x, labels, 10)).numpy()
    np.testing.assert_allclose(d, 0.0, atol=1e-12)


def test_hand_computed_two_class_case() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-3.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    centers = class_centers(x, labels, 2)
    np.testing.assert_allclose(centers.numpy(), [[0.5, 0.5], [-2.0, 0.0]])
    d = center_distances(x, labels, centers).numpy()
    np.testing.assert_allclose(d, [1 - 1 / math.sqrt(2), 1 - 1 / math.sqrt(2), 0.0, 0.0], atol=1e-15)
    assert center_similarity(centers) == pytest.approx(-1 / math.sqrt(2))


def test_zero_vectors_give_distance_one_and_no_nan() -> None:
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])  # class 1 is all zeros: a dead layer's output
    centers = class_centers(x, labels, 2)
    d = center_distances(x, labels, centers).numpy()
    np.testing.assert_allclose(d, [1.0, 0.0, 1.0, 1.0], atol=1e-15)
    assert center_similarity(centers) == 0.0


def test_empty_class_has_nan_centre_and_is_left_out_of_similarity() -> None:
    x, labels = random_layer(4, c=10)
    labels = np.where(labels == 7, 3, labels)  # no sample of class 7
    centers = class_centers(x, labels, 10)
    assert torch.isnan(centers[7]).all() and not torch.isnan(centers[:7]).any()
    assert center_similarity(centers) == pytest.approx(brute_similarity(brute_centers(x, labels, 10)), abs=1e-12)
    assert not torch.isnan(center_distances(x, labels, centers)).any()
    assert math.isnan(center_similarity(centers[:1]))


def test_labels_out_of_range_are_rejected() -> None:
    with pytest.raises(ValueError, match="labels must lie"):
        class_centers(np.ones((3, 2)), np.array([0, 1, 2]), 2)


def test_chunked_computation_matches_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    x, labels = random_layer(5, p=103)
    whole_centers = class_centers(x, labels, 10)
    whole = center_distances(x, labels, whole_centers)
    monkeypatch.setattr(geometry, "CHUNK_ELEMENTS", 17 * 4)  # 4 rows per chunk, last chunk partial
    np.testing.assert_allclose(class_centers(x, labels, 10).numpy(), whole_centers.numpy(), rtol=1e-13)
    np.testing.assert_allclose(center_distances(x, labels, whole_centers).numpy(), whole.numpy(), rtol=1e-13)


def test_layer_geometry_tables() -> None:
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 10, size=300)
    xs = [random_layer(seed, p=300)[0] for seed in (10, 11, 12)]
    xs[1] = np.maximum(xs[1], 0.0)  # ReLU-like layer
    indices = np.sort(rng.choice(5000, size=300, replace=False))
    result = layer_geometry(xs, labels, digit=5, n_first=20, indices=indices)
    summary, digit = result.summary, result.digit
    assert list(summary.columns) == [
        "layer",
        "center_distance",
        "center_similarity",
        "digit_distance_mean",
        "digit_distance_std",
        "n_digit",
    ]
    assert list(digit.columns) == ["layer", "sample_index", "distance"]
    assert summary["layer"].tolist() == [0, 1, 2]
    first_fives = [i for i in range(300) if labels[i] == 5][:20]
    for layer, x in enumerate(xs):
        centers = brute_centers(x, labels, 10)
        d_all = np.array([scipy_cosine_distance(x[i], centers[labels[i]]) for i in range(300)])
        row = summary.iloc[layer]
        assert row["center_distance"] == pytest.approx(d_all.mean(), abs=1e-12)
        assert row["center_similarity"] == pytest.approx(brute_similarity(centers), abs=1e-12)
        assert row["digit_distance_mean"] == pytest.approx(d_all[first_fives].mean(), abs=1e-12)
        assert row["digit_distance_std"] == pytest.approx(d_all[first_fives].std(), abs=1e-12)
        assert row["n_digit"] == 20
        lines = digit[digit["layer"] == layer]
        assert lines["sample_index"].tolist() == indices[first_fives].tolist()
        np.testing.assert_allclose(lines["distance"].to_numpy(), d_all[first_fives], atol=1e-12)


def test_layer_geometry_few_digit_samples_and_custom_layer_numbers() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-3.0, 0.0]])
    labels = torch.tensor([0, 5, 5, 0])
    result = layer_geometry([x, x], labels, digit=5, n_first=100, layers=[3, 4])
    assert result.summary["layer"].tolist() == [3, 4]
    assert result.summary["n_digit"].tolist() == [2, 2]
    assert result.digit["sample_index"].tolist() == [1, 2, 1, 2]  # positions without ``indices``
    missing = layer_geometry([x], labels, digit=9)
    assert missing.digit.empty and math.isnan(missing.summary["digit_distance_mean"].iloc[0])
