"""Runs trained elsewhere: checkpoint files of any PyTorch network turned into netdyn snapshots.

Accepted checkpoints (docs/external.md): a whole pickled module; a state dict (optionally under ``state_dict`` or
``model_state_dict``) plus a builder ``file.py:function`` that returns the module (``--model``, ``external.model``);
or, for a flat MLP, a state dict plus a netdyn model spec from the config or a small YAML file (``widths``,
``activation``, ``batchnorm``, ``dropout``, ``input_size``, ``classes``). A chain of Linear / BatchNorm1d /
activation / Dropout (an optional leading Flatten is fine) is analysed as a netdyn MLP, exactly as before; any other
module through its layer view (netdyn/layerview.py), receiving each sample in the shape the data stored it.
Each file's training step comes from its name (the last integer in it, or a ``step_pattern`` regex with one
group) or from a CSV with columns ``file, step``. Importing writes the same snapshots, history and run record as
training, so every later rule treats the run like any other.
"""

from __future__ import annotations

import math
import os
import time
import warnings
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
from netdyn.layerview import LayerViewError, NotAffineError
from netdyn.layerview import view as view_of
from netdyn.models import build
from netdyn.records import write_run
from netdyn.samples import training_indices
from netdyn.usermodels import UserModelError, build_module, wrap

ACTIVATION_NAMES = {cls: name for name, cls in ACTIVATIONS.items()}
TORCHSCRIPT = (
    "a TorchScript module runs compiled code that netdyn's layer hooks cannot observe; "
    "save the module's state dict and give its builder (--model FILE.py:build)"
)


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


def _torch_load(path: str) -> Any:
    try:
        with warnings.catch_warnings():  # a TorchScript archive is refused below, with what to do instead
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for truncated or foreign files
        if "TorchScript" in str(error) or "torch.jit.load" in str(error):
            raise ExternalRunError(f"{path}: {TORCHSCRIPT}") from None
        raise ExternalRunError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None


def _general(net: nn.Module, path: str, source: Mapping[str, str], view: Mapping[str, Any] | None) -> tuple[Any, dict]:
    """``net`` as a module analysed through its layer view, and its model description (netdyn.usermodels)."""
    if isinstance(net, torch.jit.ScriptModule):
        raise ExternalRunError(f"{path}: {TORCHSCRIPT}")
    description = {"module": dict(source), "input_shape": None, "layers": None, "conv_field": "mean", **(view or {})}
    return wrap(net, description).eval(), description


def load_checkpoint(
    path: str,
    model_spec: Mapping[str, Any] | None = None,
    *,
    builder: str | None = None,
    view: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The checkpoint's model in eval mode, and its description.

    A flat MLP (``netdyn.layers``) becomes a netdyn ``nn.Sequential`` with its netdyn spec, as before; any other module
    (a whole pickled one, or a state dict loaded into ``builder``'s module) is wrapped for the layer view
    (``netdyn.layerview.AnalysedNet``) with a user model description (netdyn.usermodels) holding ``view``'s
    ``input_shape``, ``layers`` and ``conv_field``."""
    payload = _torch_load(path)
    if isinstance(payload, nn.Module):
        try:
            spec = spec_from_model(payload)
        except (ValueError, ExternalRunError):
            return _general(payload, path, {"file": os.path.abspath(path)}, view)
        return _netdyn_copy(payload, spec).eval(), spec
    if isinstance(payload, Mapping):
        state = payload.get("state_dict", payload.get("model_state_dict", payload))
        if builder is not None:
            try:
                net = build_module(builder)
            except UserModelError as error:
                raise ExternalRunError(str(error)) from None
            try:
                net.load_state_dict(state)
            except (RuntimeError, TypeError, AttributeError) as error:
                message = " ".join(str(error).split())[:300]
                raise ExternalRunError(f"{path}: the state dict does not fit {builder}'s module ({message})") from None
            try:
                spec = spec_from_model(net)
            except (ValueError, ExternalRunError):
                return _general(net, path, {"builder": builder}, view)
            return _netdyn_copy(net, spec).eval(), spec
        if model_spec is None:
            raise ExternalRunError(
                f"{path}: a state dict needs its model: a builder (--model FILE.py:build, external.model) or a "
                "netdyn MLP spec (experiment 'model' or 'model_yaml')"
            )
        spec = {**MODEL_DEFAULTS, **model_spec}
        model = build(spec)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as error:
            message = " ".join(str(error).split())[:300]
            raise ExternalRunError(f"{path}: the state dict does not fit the model spec ({message})") from None
        return model.eval(), spec
    raise ExternalRunError(f"{path}: holds a {type(payload).__name__}, not a model or a state dict")


def _grouped(skipped: list[str]) -> dict[str, list[str]]:
    """``{reason: [call names]}`` of the ``"name: reason"`` lines of a model description's ``skipped_layers``."""
    groups: dict[str, list[str]] = {}
    for line in skipped:
        name, _, why = line.partition(": ")
        groups.setdefault(why, []).append(name)
    return groups


def _checked_general(model: nn.Module, description: dict[str, Any], file: str, x: torch.Tensor, classes: int) -> None:
    """Run two samples through a user's module and find its layers, so a mismatch is one clear line here."""
    try:
        with torch.no_grad():
            logits = model.eval()(x[:2])
    except Exception as error:
        shape = tuple(description["input_shape"])
        message = " ".join(str(error).split())[:200]
        raise ExternalRunError(
            f"{file}: the model cannot take the data's samples of shape {shape} ({message})"
        ) from None
    if logits.dim() != 2 or logits.shape[1] < classes:
        raise ExternalRunError(
            f"{file}: the model returns {tuple(logits.shape[1:])} per sample; the data's labels need {classes} logits"
        )
    try:
        layer_view = view_of(model)
    except (LayerViewError, NotAffineError) as error:
        raise ExternalRunError(f"{file}: {error}") from None
    description["classes"] = int(logits.shape[1])
    description["analysed_layers"] = [layer.name for layer in layer_view.layers]
    description["skipped_layers"] = [f"{name}: {why}" for name, why in layer_view.skipped]


def _no_layers_for_an_mlp(description: Mapping[str, Any], external: Mapping[str, Any], file: str) -> None:
    if external.get("layers") and "module" not in description:
        raise ExternalRunError(
            f"{file}: analysis.layers chooses layers of a network analysed through its layer view; this checkpoint is "
            "a netdyn MLP, whose every hidden layer is analysed"
        )


def check_first_checkpoint(spec: Mapping[str, Any], dataset: Mapping[str, Any]) -> None:
    """Before anything runs: the run's first checkpoint loads, and two samples of the data's shape go through it
    (a user's module) or its input size and outputs fit the data (a netdyn MLP); ExternalRunError names the file."""
    from netdyn.arrays import read_arrays

    external = spec["external"]
    first = external["files"][min(external["files"], key=int)]
    if dataset.get("source") == "arrays":
        arrays, _ = read_arrays(dataset["path"])
        shape = tuple(arrays["sample_shape"])
        classes = int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    else:
        shape, classes = datasets.IMAGE_MODEL_SHAPE, 10
    features = math.prod(shape)
    model_spec = spec_from_yaml(external["model_yaml"]) if external.get("model_yaml") else external.get("model")
    view = {"input_shape": list(shape), "input_size": features, "layers": external.get("layers")}
    view["conv_field"] = external.get("conv_field", "mean")
    model, description = load_checkpoint(first, model_spec, builder=external.get("builder"), view=view)
    _no_layers_for_an_mlp(description, external, first)
    if "module" in description:
        _checked_general(model, description, first, torch.zeros(2, features), classes)
    elif description["input_size"] != features:
        raise ExternalRunError(f"{first}: the model takes {description['input_size']} inputs, the data has {features}")
    elif description["classes"] < classes:
        raise ExternalRunError(f"{first}: the model has {description['classes']} outputs, the data {classes} classes")


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
    shape = datasets.sample_shape(data_path)
    view = {
        "input_shape": list(shape),
        "input_size": int(data.train_x.shape[1]),
        "layers": external.get("layers"),
        "conv_field": external.get("conv_field", "mean"),
    }
    classes = int(max(data.train_y.max(), data.test_y.max())) + 1
    rows = torch.as_tensor(training_indices(data.train_y.numpy(), train_spec))
    x_train, y_train = data.train_x[rows], data.train_y[rows]
    history = []
    snapshot_dir = Path(snapshot_dir)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    for step, file in sorted((int(s), f) for s, f in external["files"].items()):
        model, model_spec_found = load_checkpoint(file, model_spec, builder=external.get("builder"), view=view)
        _no_layers_for_an_mlp(model_spec_found, external, file)
        if "module" in model_spec_found:
            _checked_general(model, model_spec_found, file, data.train_x, classes)
            if step == min(int(s) for s in external["files"]):
                log(f"analysed layers: {', '.join(model_spec_found['analysed_layers'])}")
                for why, names in _grouped(model_spec_found["skipped_layers"]).items():
                    log(f"not analysed, {why}: {', '.join(names)}")
        elif model_spec_found["input_size"] != data.train_x.shape[1]:
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
