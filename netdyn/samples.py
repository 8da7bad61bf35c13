"""Which samples a run trains on and which ones its analyses use (methods.md §2, U8, U13).

A run trains on a class-stratified subset of ``n_train`` training images (all of them when ``n_train`` is
null). The analyses use a fixed class-stratified subset of that training set (default at most 10,000, as
methods.md proposes for the RPD and basins) and of the test split, so every snapshot of a run is analysed
on the same samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from netdyn.data import stratified_subset

if TYPE_CHECKING:
    import torch

    from netdyn.data import Dataset

ANALYSIS_SEED = 0


def training_indices(train_labels: np.ndarray, train_spec: Mapping[str, Any]) -> np.ndarray:
    """Rows of the dataset's training split that the run trains on, in dataset order."""
    n_train = train_spec.get("n_train")
    if not n_train or n_train >= len(train_labels):
        return np.arange(len(train_labels))
    return np.asarray(stratified_subset(train_labels, n_train, train_spec.get("subset_seed", 0)))


def analysis_indices(labels: np.ndarray, candidates: np.ndarray, size: int | None) -> np.ndarray:
    """A stratified subset of at most ``size`` of the ``candidates`` rows (all of them when size is None)."""
    if size is None or size >= len(candidates):
        return np.asarray(candidates)
    chosen = stratified_subset(labels[candidates], size, ANALYSIS_SEED)
    return np.asarray(candidates)[np.asarray(chosen)]


def analysis_rows(
    data: Dataset, train_spec: Mapping[str, Any], samples: int | None, split: str = "train"
) -> np.ndarray:
    """Rows of the analysis samples of ``split``: a class-stratified subset of at most ``samples`` of the run's own
    training set (``train``) or of the test split (``test``), the same for every snapshot and every stage."""
    if split == "train":
        labels = data.train_y.cpu().numpy()
        return analysis_indices(labels, training_indices(labels, train_spec), samples)
    labels = data.test_y.cpu().numpy()
    return analysis_indices(labels, np.arange(len(labels)), samples)


def analysis_samples(
    data: Dataset, train_spec: Mapping[str, Any], samples: int | None, split: str = "train"
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Rows, inputs and labels of the analysis samples (:func:`analysis_rows`)."""
    rows = analysis_rows(data, train_spec, samples, split)
    x, y = (data.train_x, data.train_y) if split == "train" else (data.test_x, data.test_y)
    return rows, x[rows], y[rows]
