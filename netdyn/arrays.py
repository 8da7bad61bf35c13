"""A user's own data as a file of arrays: read and check it, torch-free (docs/external.md, docs/formats.md).

An ``.npz`` or HDF5 file with ``x_train``, ``y_train``, ``x_test``, ``y_test``: features of any shape (flattened,
stored as float32, unscaled), integer class labels 0..C-1. ``read_arrays`` is what the workflow's ``prepare_data``
reads; ``netdyn analyze`` and ``netdyn.analyze`` call it before anything runs, so a file with the wrong arrays stops
with one line naming it. Every fault raises :class:`DataError` with a one-line message naming the file.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import h5py
import numpy as np

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")

Arrays = dict[str, np.ndarray]
Digests = dict[str, str]


class DataError(Exception):
    """A dataset file or source is unusable; the message names the file and the fault."""


def one_line(text: object, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


def digest(path: Path, algorithm: str = "sha256") -> str:
    hashed = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hashed.update(block)
    return hashed.hexdigest()


def read_arrays(path: str | os.PathLike) -> tuple[Arrays, Digests]:
    """The four arrays of ``path`` as ``{train,test}_{images,labels}`` (images flat float32, labels int64) plus
    ``sample_shape`` (one sample's shape as stored: what a user's model receives, netdyn.layerview) and the
    file's digest; DataError when the file is unreadable, lacks an array, or its arrays disagree: rows of x and y,
    features of train and test, labels that are not integers 0..C-1."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file is missing")
    try:
        if path.suffix == ".npz":
            with np.load(path) as archive:
                found = {key: archive[key] for key in ARRAY_KEYS if key in archive}
                others = [key for key in archive.files if key not in ARRAY_KEYS]
        else:
            with h5py.File(path, "r") as handle:
                found = {key: handle[key][()] for key in ARRAY_KEYS if key in handle}
                others = [key for key in handle if key not in ARRAY_KEYS]
    except (OSError, ValueError, zlib.error) as error:
        raise DataError(f"{path}: not a readable .npz or HDF5 file ({one_line(error)})") from None
    missing = [key for key in ARRAY_KEYS if key not in found]
    if missing:
        holds = f"; it holds {', '.join(others[:6])}" if others else ""
        raise DataError(f"{path}: missing array(s) {', '.join(missing)} (needs {', '.join(ARRAY_KEYS)}{holds})")
    arrays = {}
    for split in ("train", "test"):
        x, y = found[f"x_{split}"], found[f"y_{split}"]
        if x.ndim == 0 or y.ndim != 1:
            raise DataError(f"{path}: x_{split} must hold one row per sample and y_{split} one label per sample")
        if len(x) != len(y):
            raise DataError(f"{path}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
        if len(y) == 0:
            raise DataError(f"{path}: x_{split} and y_{split} are empty")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DataError(f"{path}: y_{split} must hold integer class labels 0..C-1")
        arrays[f"{split}_images"] = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        arrays[f"{split}_shape"] = x.shape[1:]
        arrays[f"{split}_labels"] = np.asarray(y, dtype=np.int64)
    if arrays["train_shape"] != arrays["test_shape"]:
        raise DataError(
            f"{path}: x_train's samples have shape {arrays['train_shape']}, x_test's {arrays['test_shape']}"
        )
    arrays["sample_shape"] = arrays.pop("train_shape")
    del arrays["test_shape"]
    return arrays, {path.name: digest(path)}
