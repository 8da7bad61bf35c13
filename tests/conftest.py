"""Shared fixtures: a small synthetic dataset in the netdyn HDF5 layout and tiny run specs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from netdyn.config import MODEL_DEFAULTS, TRAIN_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent

# One thread unless a numerics leg of `make test` asks for more (NETDYN_TEST_THREADS): results must not depend on it.
torch.set_num_threads(int(os.environ.get("NETDYN_TEST_THREADS", "1")))


def write_synthetic_dataset(path: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """Ten classes of 28x28 uint8 images: a class-specific bright block plus noise, so MLPs learn fast."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28))
        for k in range(10):
            rows = labels == k
            images[rows, 2 * k : 2 * k + 6, 4:24] += 150
        return images.clip(0, 255).astype(np.uint8), labels.astype(np.uint8)

    with h5py.File(path, "w") as handle:
        for name, n in (("train", n_train), ("test", n_test)):
            images, labels = split(n)
            handle[f"{name}/images"] = images
            handle[f"{name}/labels"] = labels
            handle.attrs[f"{name}_class_counts"] = json.dumps(np.bincount(labels, minlength=10).tolist())
        handle.attrs["source"] = "synthetic"
        handle.attrs["schema_version"] = 1
        handle.attrs["n_classes"] = 10
        handle.attrs["sha256"] = json.dumps({})
    return path


@pytest.fixture
def synthetic_h5(tmp_path: Path) -> Path:
    return write_synthetic_dataset(tmp_path / "synthetic.h5")


def tiny_spec(**train_overrides) -> dict:
    """A resolved run spec for a small MLP that trains in about a second."""
    model = {**MODEL_DEFAULTS, "depth": 2, "width": 32, "activation": "relu"}
    train = {**TRAIN_DEFAULTS, "steps": 40, "batch_size": 32, "device": "cpu", **train_overrides}
    steps = train["steps"]
    return {
        "run": "test/base",
        "experiment": "test",
        "dataset": "synthetic",
        "model": model,
        "train": train,
        "snapshots": sorted({0, 1, 5, steps // 2, steps}),
    }
