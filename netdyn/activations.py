"""Per-snapshot activation dumps: local fields ``h``, outputs ``x`` and logits of a fixed analysis sample set.

Layout of ``activations/step{S:06d}.h5`` (documented in docs/formats.md, schema version 1)::

    /{split}/indices   int64 [P]        row numbers in the dataset's split (train or test)
    /{split}/labels    int64 [P]
    /{split}/h{l:02d}  float [P, N_l]   local field of hidden layer l = 1..D (after BatchNorm)
    /{split}/x{l:02d}  float [P, N_l]   output f(h) of hidden layer l
    /{split}/logits    float [P, C]     h^{(L)}

with ``split`` in {train, test}. The forward pass is in eval mode (methods.md §4, §6–§10 all use eval-mode
fields). The inputs x^{(0)} are not stored: they are the dataset rows named by ``indices``.

The float arrays are stored with ``dumps.compression`` (:data:`COMPRESSIONS`): ``lz4`` (default; the LZ4 filter of the
``hdf5plugin`` package, in chunks of about 1 MiB: the fastest of the measured codecs and smaller than ``.npy`` files,
ReLU outputs being half zeros), ``none`` (contiguous, any HDF5 reader) or ``gzip`` (level 1 with shuffle, ten times
slower, any HDF5 reader). Reading an ``lz4`` dump needs ``import hdf5plugin`` first, which this module does where
the package is installed (``none`` and ``gzip`` dumps need nothing beyond h5py); the measurements are in
benchmarks/RESULTS.md. A dump is written in pieces of samples, each piece's forward pass running in a thread while
the piece before it is compressed and written, so that the write costs little beyond the forward pass.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from queue import Full, Queue
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from netdyn.atomic import atomic_path
from netdyn.evaluate import eval_mode
from netdyn.layers import blocks, forward_layers, is_general

FORMAT = "netdyn-activations"
SCHEMA_VERSION = 1
SPLITS = ("train", "test")
COMPRESSIONS = ("lz4", "none", "gzip")
# A dump is computed and written in pieces of PIECE_ROWS samples, the next piece's forward pass running while the last
# one is written; a dataset's chunk that a piece fills only in part waits in a chunk cache of CHUNK_CACHE bytes (HDF5
# keeps one per dataset; its default of 1 MiB would not hold a whole 1 MiB chunk).
PIECE_ROWS = 1024
CHUNK_CACHE = 4 * 2**20

try:  # registers the LZ4 filter with HDF5 for reading and writing; absent, lz4 dumps cannot be written or read
    import hdf5plugin
except ImportError:  # pragma: no cover - every environment this project pins has it
    hdf5plugin = None


def _storage(compression: str, shape: tuple[int, int], itemsize: int) -> dict[str, Any]:
    """h5py ``create_dataset`` keywords of a float array of ``shape`` stored with ``compression``."""
    if compression == "none":
        return {}
    rows = max(1, min(shape[0], 2**20 // max(1, shape[1] * itemsize)))
    if compression == "gzip":
        return {"chunks": (rows, shape[1]), "compression": "gzip", "compression_opts": 1, "shuffle": True}
    if compression == "lz4":
        if hdf5plugin is None:
            raise ValueError("dumps.compression: 'lz4' needs the hdf5plugin package; install it or choose none or gzip")
        return {"chunks": (rows, shape[1]), **hdf5plugin.LZ4()}
    raise ValueError(f"dumps.compression: {compression!r} is not one of {list(COMPRESSIONS)}")


class ActivationFileError(ValueError):
    """An activation dump is missing, truncated, foreign or of another schema version."""


def layer_kinds(model: nn.Sequential) -> list[dict[str, Any]]:
    """Per hidden layer: width, activation name and whether it has BatchNorm and Dropout (any other module: also its
    name, kind and the conv field's reduction, docs/formats.md)."""
    if is_general(model):
        from netdyn.layerview import view

        return [
            {
                "width": layer.units,
                "activation": type(layer.activation).__name__,
                "batchnorm": layer.norm is not None,
                "dropout": False,
                "name": layer.name,
                "kind": layer.kind,
                "field": model.conv_field if layer.kind == "conv" else "unit",
            }
            for layer in view(model).layers
        ]
    return [
        {
            "width": block.linear.out_features,
            "activation": type(block.act).__name__,
            "batchnorm": block.bn is not None,
            "dropout": block.dropout is not None,
        }
        for block in blocks(model)[:-1]
    ]


@torch.no_grad()
def compute(model: nn.Sequential, x: torch.Tensor, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
    """Eval-mode fields and outputs of every hidden layer plus the logits, on ``x``'s device, computed in the pieces
    of a dump (``PIECE_ROWS``) unless ``chunk_size`` says otherwise: a matmul's rounding can depend on how many rows
    it is given (MKL's kernels, thread partitions), so a dump equals ``compute`` bit for bit by construction."""
    parts: dict[str, list[torch.Tensor]] = {}
    for _, fields in compute_chunks(model, x, chunk_size or PIECE_ROWS):
        for name, values in fields.items():
            parts.setdefault(name, []).append(values)
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def compute_chunks(
    model: nn.Sequential, x: torch.Tensor, chunk_size: int
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """``(first row, fields)`` of :func:`compute` for every ``chunk_size`` rows of ``x`` in turn: ``h01, x01, ...,
    logits``."""
    with eval_mode(model):
        for start in range(0, len(x), chunk_size):
            hs, xs, logits = forward_layers(model, x[start : start + chunk_size])
            fields = {}
            for layer, (h, out) in enumerate(zip(hs, xs, strict=True), start=1):
                fields[f"h{layer:02d}"] = h
                fields[f"x{layer:02d}"] = out
            fields["logits"] = logits
            yield start, fields


def _ahead(items: Iterator, depth: int = 1) -> Iterator:
    """``items``, produced in a thread up to ``depth`` items ahead of the consumer (an error there is raised here).

    The dump's forward pass (torch, which releases the GIL) runs while the previous piece is compressed and written.
    """
    done = object()
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item) -> bool:  # False once the consumer has stopped
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            offer(error)
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator's own clean-up (the model's mode) runs here, not at its collection
                close()
        offer(done)

    producer = threading.Thread(target=produce, name="netdyn-dump-forward", daemon=True)
    producer.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join()


@torch.no_grad()
def layer_outputs(
    model: nn.Sequential, x: torch.Tensor, chunk_size: int = 4096, conv_outputs: str = "pooled"
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Eval-mode ``[x^{(0)}, x^{(1)}, ..., x^{(D)}]`` (the flattened input, then every hidden layer's output) and the
    logits of ``x``, on ``x``'s device; the local fields are not kept (half the memory of :func:`compute`). A conv
    layer's outputs are ``conv_outputs``: ``pooled`` (their spatial mean) or ``flattened`` (layerview.capture)."""
    if is_general(model) and conv_outputs != "pooled":
        from netdyn.layerview import capture

        with eval_mode(model):
            _, xs, logits = capture(model, x, outputs=conv_outputs)
        return [x.flatten(1), *xs], logits
    outputs: list[list[torch.Tensor]] = []
    logits = []
    with eval_mode(model):
        for start in range(0, len(x), chunk_size):
            batch = x[start : start + chunk_size].flatten(1)
            _, xs, chunk_logits = forward_layers(model, batch)
            for layer, out in enumerate([batch, *xs]):
                if layer == len(outputs):
                    outputs.append([])
                outputs[layer].append(out)
            logits.append(chunk_logits)
    return [torch.cat(chunks) for chunks in outputs], torch.cat(logits)


def write(
    path: str | os.PathLike,
    model: nn.Sequential,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    *,
    dtype: str = "float32",
    compression: str = "lz4",
    attrs: dict[str, Any] | None = None,
) -> None:
    """Dump the activations of ``model`` for each split ``name -> (indices, inputs, labels)`` atomically."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w", rdcc_nbytes=CHUNK_CACHE) as handle:
        handle.attrs.update(
            {
                "format": FORMAT,
                "schema_version": SCHEMA_VERSION,
                "dtype": dtype,
                "compression": compression,
                "layers": json.dumps(layer_kinds(model)),
                **{
                    key: json.dumps(value) if isinstance(value, dict | list) else value
                    for key, value in (attrs or {}).items()
                },
            }
        )
        for split, (indices, inputs, labels) in splits.items():
            group = handle.create_group(split)
            group["indices"] = np.asarray(indices, dtype=np.int64)
            group["labels"] = labels.cpu().numpy().astype(np.int64)
            stored = np.dtype(dtype)
            pieces = compute_chunks(model, inputs, PIECE_ROWS)
            for start, fields in _ahead(pieces):  # the next piece computes while this one is compressed and written
                for name, values in fields.items():
                    array = values.cpu().numpy().astype(stored, copy=False)  # no copy when it has the dtype
                    if name not in group:
                        shape = (len(inputs), array.shape[1])
                        group.create_dataset(
                            name, shape=shape, dtype=stored, **_storage(compression, shape, stored.itemsize)
                        )
                    group[name][start : start + len(array)] = array


def read(path: str | os.PathLike, split: str = "train") -> dict[str, Any]:
    """One split of a dump as numpy arrays: ``indices``, ``labels``, ``h`` and ``x`` (lists over layers 1..D),
    ``logits`` and the file attributes. Raises ActivationFileError naming the file on any fault."""
    path = Path(path)
    if not path.exists():
        raise ActivationFileError(f"{path}: activation file is missing")
    try:
        with h5py.File(path, "r") as handle:
            attrs = dict(handle.attrs)
            if attrs.get("format") != FORMAT:
                raise ActivationFileError(f"{path}: not a netdyn activation dump (no '{FORMAT}' format tag)")
            if attrs.get("schema_version") != SCHEMA_VERSION:
                raise ActivationFileError(
                    f"{path}: activation schema version {attrs.get('schema_version')}, expected {SCHEMA_VERSION}"
                )
            if split not in handle:
                raise ActivationFileError(f"{path}: no '{split}' split in the dump")
            group = handle[split]
            depth = len(json.loads(attrs["layers"]))
            result = {
                "indices": group["indices"][()],
                "labels": group["labels"][()],
                "h": [group[f"h{layer:02d}"][()] for layer in range(1, depth + 1)],
                "x": [group[f"x{layer:02d}"][()] for layer in range(1, depth + 1)],
                "logits": group["logits"][()],
                "attrs": attrs,
            }
    except ActivationFileError:
        raise
    except (OSError, KeyError, ValueError) as error:
        raise ActivationFileError(f"{path}: unreadable or truncated activation dump ({error})") from None
    return result


def dump_name(step: int) -> str:
    """The file name of a step's activation dump in a run's ``activations`` folder."""
    return f"step{step:06d}.h5"


def dump_run(
    snapshot_dir: str | os.PathLike,
    data_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    run: str,
    steps: list[int],
    train_spec: dict[str, Any],
    samples: int | None,
    dtype: str = "float32",
    compression: str = "lz4",
    log=print,
) -> list[int]:
    """Dump every scheduled, non-diverged snapshot of a run; returns the steps dumped.

    The dump holds what its readers (the RPD and the class geometry) use: the training analysis samples, a
    class-stratified subset of the run's own training set (``samples``), the same at every step. (The format allows
    a ``test`` split too, see :func:`write`; no analysis reads one.)
    """
    from netdyn import data as datasets
    from netdyn import snapshots
    from netdyn.samples import analysis_rows

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = datasets.load(data_path)
    train_rows = analysis_rows(data, train_spec, samples)
    dumped = []
    for step, model in snapshots.iter_models(snapshot_dir, steps, log=log):
        model_dtype = next(model.parameters()).dtype
        splits = {"train": (train_rows, data.train_x[train_rows].to(model_dtype), data.train_y[train_rows])}
        attrs = {"run": run, "step": step}
        write(out_dir / dump_name(step), model, splits, dtype=dtype, compression=compression, attrs=attrs)
        dumped.append(step)
        log(f"step {step}: dumped {len(train_rows)} training samples")
    return dumped
