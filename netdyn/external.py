"""Runs trained elsewhere: checkpoint files of a plain PyTorch MLP turned into netdyn snapshots.

Accepted checkpoints (issue "Analyse your own runs"): a whole pickled ``nn.Sequential``; a state dict
(optionally under ``state_dict`` or ``model_state_dict``) plus a netdyn model spec from the config; or a
state dict plus a small YAML file (``widths``, ``activation``, ``batchnorm``, ``dropout``, ``input_size``,
``classes``). The model must be a chain of Linear / BatchNorm1d / activation / Dropout (an optional leading
Flatten is fine); anything else is rejected with the first unsupported module named. Each file's training
step comes from its name (the last integer in it, or a ``step_pattern`` regex with one group) or from a CSV
with columns ``file, step``. Importing writes the same snapshots, history and run record as training, so
every later rule treats the run like any other.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from netdyn import data as datasets
from netdyn import snapshots
from netdyn.checkpoints import ExternalRunError, checkpoint_files  # noqa: F401 (part of this module's API)
from netdyn.config import MODEL_DEFAULTS
from netdyn.evaluate import snapshot_metrics
from netdyn.layers import ACTIVATIONS, blocks
from netdyn.models import build
from netdyn.records import write_run
from netdyn.samples import training_indices

ACTIVATION_NAMES = {cls: name for name, cls in ACTIVATIONS.items()}


def spec_from_model(model: nn.Module) -> dict[str, Any]:
    """The netdyn model spec of a supported ``nn.Sequential`` (uniform activation across hidden layers)."""
    chain = blocks(model)
    hidden = chain[:-1]
    activations = {ACTIVATION_NAMES.get(type(block.act)) for block in hidden}
    if None in activations or len(activations) > 1:
        names = sorted({type(block.act).__name__ for block in hidden})
        raise ExternalRunError(f"the hidden layers must share one activation of {sorted(ACTIVATIONS)}; found {names}")
    with_bn = {block.bn is not None for block in hidden}
    if len(with_bn) > 1:
        raise ExternalRunError(
            "BatchNorm1d in some hidden layers only is not supported: netdyn models have it in all or none"
        )
    dropouts = {block.dropout.p for block in hidden if block.dropout is not None}
    return {
        **MODEL_DEFAULTS,
        "input_size": chain[0].linear.in_features,
        "classes": chain[-1].linear.out_features,
        "widths": [block.linear.out_features for block in hidden],
        "activation": activations.pop() if activations else "linear",
        "batchnorm": with_bn == {True},
        "dropout": max(dropouts) if dropouts else 0.0,
    }


def spec_from_yaml(path: str) -> dict[str, Any]:
    """A netdyn model spec from a small YAML description of the user's model."""
    try:
        description = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ExternalRunError(f"{path}: unreadable model description ({error})") from None
    unknown = set(description) - set(MODEL_DEFAULTS)
    if unknown:
        raise ExternalRunError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(MODEL_DEFAULTS)}")
    return {**MODEL_DEFAULTS, **description}


def _netdyn_copy(model: nn.Module, spec: Mapping[str, Any]) -> nn.Sequential:
    """``build(spec)`` carrying ``model``'s weights block by block (layer positions may differ)."""
    copy = build(spec).to(next(model.parameters()).dtype)
    for source, target in zip(blocks(model), blocks(copy), strict=True):
        with torch.no_grad():
            target.linear.weight.copy_(source.linear.weight)
            target.linear.bias.copy_(source.linear.bias if source.linear.bias is not None else 0.0)
            if source.bn is not None:
                target.bn.load_state_dict(source.bn.state_dict())
    return copy


def load_checkpoint(path: str, model_spec: Mapping[str, Any] | None = None) -> tuple[nn.Sequential, dict[str, Any]]:
    """The checkpoint's model as a netdyn ``nn.Sequential`` in eval mode, and its netdyn spec."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise ExternalRunError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    if isinstance(payload, nn.Module):
        try:
            spec = spec_from_model(payload)
        except (ValueError, ExternalRunError) as error:
            raise ExternalRunError(f"{path}: {error}") from None
        return _netdyn_copy(payload, spec).eval(), spec
    if isinstance(payload, Mapping):
        state = payload.get("state_dict", payload.get("model_state_dict", payload))
        if model_spec is None:
            raise ExternalRunError(f"{path}: a state dict needs a model spec (experiment 'model' or 'model_yaml')")
        spec = {**MODEL_DEFAULTS, **model_spec}
        model = build(spec)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as error:
            message = " ".join(str(error).split())[:300]
            raise ExternalRunError(f"{path}: the state dict does not fit the model spec ({message})") from None
        return model.eval(), spec
    raise ExternalRunError(f"{path}: holds a {type(payload).__name__}, not a model or a state dict")


def import_run(
    spec: Mapping[str, Any],
    data_path: str | os.PathLike,
    snapshot_dir: str | os.PathLike,
    history_path: str | os.PathLike,
    run_json_path: str | os.PathLike,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write netdyn snapshots, ``history.csv`` and ``run.json`` for the checkpoints ``spec["external"]`` lists."""
    started = time.time()
    external = spec["external"]
    train_spec = spec["train"]
    model_spec = spec_from_yaml(external["model_yaml"]) if external.get("model_yaml") else external.get("model")
    data = datasets.load(data_path)
    rows = torch.as_tensor(training_indices(data.train_y.numpy(), train_spec))
    x_train, y_train = data.train_x[rows], data.train_y[rows]
    history = []
    snapshot_dir = Path(snapshot_dir)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    for step, file in sorted((int(s), f) for s, f in external["files"].items()):
        model, model_spec_found = load_checkpoint(file, model_spec)
        if model_spec_found["input_size"] != data.train_x.shape[1]:
            raise ExternalRunError(
                f"{file}: the model takes {model_spec_found['input_size']} inputs, the data has {data.train_x.shape[1]}"
            )
        model = model.to(torch.float32)
        measured = snapshot_metrics(
            model,
            (x_train, y_train),
            (data.test_x, data.test_y),
            train_spec["loss"],
            train_spec["batch_size"],
            train_spec["seed"],
        )
        row = {"step": step, "epoch": math.nan, **measured, "wall_time": time.time() - started}
        history.append(row)
        stored = {**spec, "model": model_spec_found, "train": {**train_spec, "dtype": "float32"}}
        snapshots.save(
            snapshot_dir / snapshots.snapshot_name(step),
            {"step": step, "spec": stored, "state_dict": model.state_dict(), "source": file, "history": history},
        )
        log(f"step {step}: imported {file} (test_acc={measured['test_acc']:.4f})")
    return write_run(
        history_path,
        run_json_path,
        history,
        {**spec, "model": model_spec_found},
        started=started,
        n_train=len(rows),
        device="cpu",
        imported=True,
    )
