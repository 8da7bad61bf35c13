"""Activation dumps: contents equal a direct forward pass; bad files are named in the error."""

from __future__ import annotations

import threading

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from netdyn import activations
from netdyn.activations import COMPRESSIONS, ActivationFileError, read, write
from netdyn.models import build


@pytest.fixture
def dumped(tmp_path):
    model = build({"depth": 3, "width": 12, "activation": "tanh", "batchnorm": True, "dropout": 0.5}, generator_seed=0)
    model.train()
    model(torch.randn(64, 784))  # move BatchNorm running stats away from their initial values
    x_train, x_test = torch.rand(50, 784), torch.rand(20, 784)
    y_train, y_test = torch.arange(50) % 10, torch.arange(20) % 10
    path = tmp_path / "step000010.h5"
    splits = {"train": (np.arange(50) * 2, x_train, y_train), "test": (np.arange(20), x_test, y_test)}
    write(path, model, splits, attrs={"run": "a/base", "step": 10})
    return path, model, x_train, y_train


def test_dump_holds_fields_outputs_and_logits_of_an_eval_forward(dumped):
    path, model, x, y = dumped
    assert model.training  # dumping leaves the caller's mode alone
    dump = read(path, "train")
    model.eval()
    h = model[1](model[0](x))  # Linear -> BatchNorm
    np.testing.assert_allclose(dump["h"][0], h.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dump["x"][0], torch.tanh(h).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dump["logits"], model(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    assert len(dump["h"]) == 3
    np.testing.assert_array_equal(dump["labels"], y.numpy())
    np.testing.assert_array_equal(dump["indices"], np.arange(50) * 2)
    assert dump["attrs"]["run"] == "a/base" and dump["attrs"]["step"] == 10


def test_float16_dumps_are_smaller_and_close(dumped, tmp_path):
    path, model, x, y = dumped
    small = tmp_path / "half.h5"
    write(small, model, {"train": (np.arange(50), x, y)}, dtype="float16")
    half, full = read(small), read(path)
    assert half["h"][1].dtype == np.float16
    np.testing.assert_allclose(half["h"][1], full["h"][1], rtol=2e-3, atol=2e-3)


def test_every_compression_stores_the_same_arrays_and_lz4_is_smallest_for_relu_outputs(tmp_path):
    """Lossless whichever filter: the arrays read back bit for bit; ReLU outputs (half zeros) compress under lz4."""
    model = build({"depth": 2, "width": 256, "activation": "relu"}, generator_seed=0)
    x, y = torch.rand(400, 784), torch.arange(400) % 10
    sizes, dumps = {}, {}
    for compression in COMPRESSIONS:
        path = tmp_path / f"{compression}.h5"
        write(path, model, {"train": (np.arange(400), x, y)}, compression=compression)
        dumps[compression], sizes[compression] = read(path), path.stat().st_size
        assert dumps[compression]["attrs"]["compression"] == compression
        with h5py.File(path) as handle:  # plain h5py (hdf5plugin imported by netdyn.activations) reads it
            np.testing.assert_array_equal(handle["train/x02"][()], dumps[compression]["x"][1])
    for compression in COMPRESSIONS[1:]:
        for kind in ("h", "x"):
            for mine, theirs in zip(dumps["lz4"][kind], dumps[compression][kind], strict=True):
                np.testing.assert_array_equal(mine, theirs)
    assert sizes["lz4"] < 0.9 * sizes["none"]
    with pytest.raises(ValueError, match="dumps.compression"):
        write(tmp_path / "bad.h5", model, {"train": (np.arange(400), x, y)}, compression="zip")


def test_a_dump_written_in_pieces_holds_what_one_forward_pass_gives(tmp_path, monkeypatch):
    """The forward pass of the next piece runs beside the write of the last (netdyn.activations._ahead): with pieces
    of 64 rows, 150 samples (three pieces, the last a part one) and every compression, the dump is ``compute``'s
    output bit for bit, and a float16 dump its cast."""
    monkeypatch.setattr(activations, "PIECE_ROWS", 64)
    model = build({"depth": 2, "width": 96, "activation": "relu", "batchnorm": True}, generator_seed=1)
    x, y = torch.rand(150, 784), torch.arange(150) % 10
    whole = {name: values.numpy() for name, values in activations.compute(model, x).items()}
    for compression in COMPRESSIONS:
        for dtype in ("float32", "float16"):
            path = tmp_path / f"{compression}-{dtype}.h5"
            write(path, model, {"train": (np.arange(150), x, y)}, compression=compression, dtype=dtype)
            dump = read(path)
            for layer in (1, 2):
                np.testing.assert_array_equal(dump["h"][layer - 1], whole[f"h{layer:02d}"].astype(dtype))
                np.testing.assert_array_equal(dump["x"][layer - 1], whole[f"x{layer:02d}"].astype(dtype))
            np.testing.assert_array_equal(dump["logits"], whole["logits"].astype(dtype))


def test_a_forward_pass_failing_in_a_later_piece_fails_the_dump_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(activations, "PIECE_ROWS", 32)
    model = build({"depth": 1, "width": 16}, generator_seed=0)
    pieces = []
    real_forward = activations.forward_layers

    def failing_second_piece(model, x):
        pieces.append(len(x))
        if len(pieces) == 2:
            raise RuntimeError("out of memory in piece 2")
        return real_forward(model, x)

    monkeypatch.setattr(activations, "forward_layers", failing_second_piece)
    path = tmp_path / "step000001.h5"
    with pytest.raises(RuntimeError, match="piece 2"):
        write(path, model, {"train": (np.arange(100), torch.rand(100, 784), torch.arange(100) % 10)})
    assert pieces == [32, 32] and not list(tmp_path.iterdir())  # stopped at the fault; no file, no temporary
    assert all(thread.name != "netdyn-dump-forward" for thread in threading.enumerate())


def test_truncated_foreign_and_missing_files_are_named(dumped, tmp_path):
    path, *_ = dumped
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["x"] = np.zeros(3)
    for bad in (truncated, foreign, tmp_path / "missing.h5"):
        with pytest.raises(ActivationFileError, match=str(bad)):
            read(bad)


def test_analyses_read_the_same_fields_from_a_dump_or_from_the_snapshots(synthetic_h5, tmp_path):
    """A run with a single dump reader has no dumps (netdyn.config.writes_dumps): its RPD and geometry compute the
    fields from the snapshots on the same samples, and must give exactly the tables a dump gives."""
    from netdyn.activations import dump_run
    from netdyn.config import ANALYSIS_DEFAULTS
    from netdyn.stages import STAGES, Sources, runner
    from netdyn.train import train_run
    from tests.conftest import tiny_spec

    spec = tiny_spec(n_train=200)
    spec["model"]["batchnorm"] = True
    snapshots = tmp_path / "snapshots"
    train_run(spec, synthetic_h5, snapshots, tmp_path / "history.csv", tmp_path / "run.json", log=lambda _: None)
    steps = spec["snapshots"]
    dump_run(snapshots, synthetic_h5, tmp_path / "dumps", run="t", steps=steps, train_spec=spec["train"],
             samples=120, log=lambda _: None)  # fmt: skip
    for name in ("rpd", "geometry"):
        settings = {key: ANALYSIS_DEFAULTS[key] for key in STAGES[name].settings} | {"samples": 120}
        tables = {}
        for dumps in (tmp_path / "dumps", None):
            sources = Sources(snapshots, synthetic_h5, spec["train"], activations=dumps)
            tables[dumps] = runner(name)("t", sources, steps, settings, log=lambda _: None)
        from_dump, computed = tables.values()
        assert from_dump.keys() == computed.keys()
        for key in from_dump:
            assert len(from_dump[key]) > 0, (name, key)
            pd.testing.assert_frame_equal(from_dump[key], computed[key])


def test_only_runs_whose_fields_are_shared_get_dumps():
    from netdyn.config import writes_dumps

    def run(*analyses):
        return {"analysis": {"run": list(analyses)}}

    assert writes_dumps(run("rpd", "geometry", "basins")) and not writes_dumps(run("rpd", "basins"))
    assert not writes_dumps(run("pruning", "projection")) and not writes_dumps(run("geometry"))
    assert writes_dumps(run("rpd"), {"always": True}) and not writes_dumps(run("basins"), {"always": True})
