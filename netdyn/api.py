"""``netdyn.analyze``: every analysis of the workflow on models you have in a notebook.

The function builds the same config an ``external`` experiment would have, then runs the workflow's own
steps in-process (import, activation dumps, each analysis, collect), so its tables are those the workflow
writes for the same checkpoints, column for column. See docs/external.md.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from netdyn.activations import dump_run
from netdyn.config import builder_reference, dump_steps, external_config, load_config, user_dataset, writes_dumps
from netdyn.data import prepare
from netdyn.external import check_first_checkpoint, import_run
from netdyn.metrics import collect
from netdyn.stages import ANALYSES, DEFAULT_ANALYSES, RUN_TABLES, STAGES, Sources, runner

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


def _dataset_definition(data: Any, folder: Path) -> dict[str, Any]:
    """A dataset definition for ``data``: a netdyn dataset name, a file of arrays, or the arrays themselves."""
    if isinstance(data, str | os.PathLike):
        return user_dataset(data, "data")
    x_train, y_train, x_test, y_test = (np.asarray(part) for part in data)
    path = folder / "data.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return {"source": "arrays", "path": str(path)}


def _save_models(models: Any, folder: Path) -> str:
    """Checkpoint files for ``models``: one model, ``{step: model}``, or a glob / folder of checkpoints."""
    if isinstance(models, str | os.PathLike):
        return str(models)
    folder.mkdir(parents=True, exist_ok=True)
    by_step = models if isinstance(models, Mapping) else {0: models}
    for step, model in by_step.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"step {step}: expected an nn.Module, got {type(model).__name__}")
        torch.save(model, folder / f"step{int(step):06d}.pt")
    return str(folder)


def _built_modules(checkpoints: str, builder: Callable[[], nn.Module], folder: Path) -> str:
    """Whole-module checkpoints of ``builder()`` with each state dict of ``checkpoints`` loaded, same file names."""
    from netdyn.checkpoints import checkpoint_files

    folder.mkdir(parents=True, exist_ok=True)
    for file in checkpoint_files(checkpoints).values():
        payload = torch.load(file, map_location="cpu", weights_only=False)
        if isinstance(payload, nn.Module):
            module = payload
        else:
            module = builder()
            module.load_state_dict(payload.get("state_dict", payload.get("model_state_dict", payload)))
        torch.save(module, folder / Path(file).name)
    return str(folder)


def analyze(
    models: nn.Module | Mapping[int, nn.Module] | str,
    data: Any,
    analyses: Sequence[str] = DEFAULT_ANALYSES,
    *,
    train: Mapping[str, Any] | None = None,
    analysis: Mapping[str, Any] | None = None,
    model_yaml: str | None = None,
    model: str | Callable[[], nn.Module] | None = None,
    workdir: str | os.PathLike | None = None,
    log=lambda message: None,
) -> dict[str, Any]:
    """Run ``analyses`` on ``models`` and return the workflow's tables.

    ``models``: an ``nn.Sequential`` MLP, a ``{step: model}`` dict, or a glob/folder of checkpoint files.
    ``data``: a netdyn dataset name (``"mnist5k"``), an ``.npz``/HDF5 file with ``x_train, y_train, x_test,
    y_test``, or those four arrays. ``train`` sets what the analyses need to know of training (``loss``,
    ``batch_size``, ``seed``, ``n_train``); ``analysis`` overrides analysis settings (docs/config.md). Any
    ``nn.Module`` works (netdyn/layerview.py); checkpoints that are state dicts of another network than a netdyn MLP
    need ``model``: ``"file.py:build"`` or the builder function itself.
    Returns ``metrics``, ``history``, ``rpd``, ``neurons``, ``basins``, ``geometry``, ``projection`` (DataFrames
    with the columns of docs/formats.md; empty when not requested) and ``events`` (a dict).
    """
    unknown = sorted(set(analyses) - set(ANALYSES))
    if unknown:
        raise ValueError(f"analyses: unknown {unknown}; choose from {list(ANALYSES)}")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(workdir) if workdir is not None else Path(scratch)
        checkpoints = _save_models(models, root / "checkpoints")
        if callable(model):  # a function in a notebook has no file a job could import: keep whole modules instead
            checkpoints, model = _built_modules(checkpoints, model, root / "built"), None
        config = external_config(
            "api",
            "base",
            _dataset_definition(data, root),
            checkpoints,
            list(analyses),
            model_yaml=model_yaml,
            builder=builder_reference(model, "model") if model else None,
            train=train,
            analysis=analysis,
        )
        spec = load_config(config, SCHEMA)["api/base"]
        check_first_checkpoint(spec, config["datasets"]["api"])
        return run_all(spec, config["datasets"]["api"], root, log=log)


def run_all(spec: Mapping[str, Any], dataset: Mapping[str, Any], root: Path, *, log=print) -> dict[str, Any]:
    """The workflow's steps for one run spec, in-process, in ``root``."""
    from netdyn.config import training_spec

    run, settings = spec["run"], spec["analysis"]
    steps_of, requested = settings["steps_of"], settings["run"]
    folder = root / "results" / "runs" / run
    data_path = root / "results" / "data" / "api.h5"
    prepare(dataset, data_path, log=log)
    snapshots = folder / "snapshots"
    import_run(training_spec(spec), data_path, snapshots, folder / "history.csv", folder / "run.json", log=log)
    dumps = folder / "activations" if writes_dumps(spec) else None
    if dumps is not None:
        dump_run(
            snapshots,
            data_path,
            dumps,
            run=run,
            steps=dump_steps(spec),
            train_spec=spec["train"],
            samples=settings["samples"],
            log=log,
        )
    tables: dict[str, Any] = {name: pd.DataFrame() for name in RUN_TABLES}
    parts = []
    for name in STAGES:  # registry order: every requested stage, as its rule runs it
        if name not in requested:
            continue
        sources = Sources(
            snapshots=snapshots,
            data=data_path,
            train_spec=spec["train"],
            activations=dumps if STAGES[name].reads_fields else None,
            history=folder / "history.csv",
            run_json=folder / "run.json",
        )
        settings_of_stage = {key: settings[key] for key in STAGES[name].settings}
        produced = runner(name)(run, sources, steps_of[name], settings_of_stage, log=log)
        if "metrics" in produced:
            parts.append(produced.pop("metrics"))
        tables.update(produced)
    part_files = []
    for index, part in enumerate(parts):
        path = folder / "parts" / f"part{index}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        part.to_csv(path, index=False)
        part_files.append(path)
    metrics, events = collect(run, folder / "history.csv", folder / "run.json", part_files)
    tables.update(metrics=metrics, events=events, history=pd.read_csv(folder / "history.csv"))
    return tables
