"""Workflow configuration: validation with readable key paths, and expansion of experiments into runs.

An experiment is a base run spec (dataset, model, train, snapshots) plus an optional ``sweep``: a cartesian
grid over dotted spec fields, and optional ``seeds: N`` replicates (an extra, innermost sweep over
``train.seed`` = base seed + 0..N-1). Each grid point becomes one run with a stable, human-readable id such as
``depth_width/d08_w0256`` (``..._s01`` for the second seed). The snapshot schedule is resolved here into an
explicit list of steps that always holds step 0 and the last step, so snapshot files are ordinary Snakemake
outputs.
"""

from __future__ import annotations

import copy
import functools
import gzip
import itertools
import math
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from netdyn.checkpoints import ExternalRunError, checkpoint_files
from netdyn.stages import ANALYSES, DEFAULT_ANALYSES, STAGES

# The model section's defaults (netdyn.models.build); kept here so the workflow can read configs without torch.
MODEL_DEFAULTS: dict[str, Any] = {
    "input_size": 784,
    "classes": 10,
    "depth": 1,
    "width": 256,
    "widths": None,
    "activation": "relu",
    "batchnorm": False,
    "dropout": 0.0,
    "init": "default",
    "init_range": 0.08838834764831845,  # 1/sqrt(128), methods.md U14
    "alpha": 1.0,
}

# A convolutional net (model.arch: cnn, docs/config.md): `depth` conv layers of `width` channels (or `channels`), each
# Conv(kernel, "same" padding) -> [BatchNorm2d] -> activation, 2x2 max pooling after every `pool_every`-th one while
# the image is at least 2 pixels wide, then a flattened MLP head of `head_widths` hidden layers and the output Linear.
# Its keys are merged only into a cnn's spec, so an MLP's resolved spec (and what triggers its reruns) is unchanged.
CNN_DEFAULTS: dict[str, Any] = {
    "arch": "cnn",
    "input_shape": [1, 28, 28],
    "classes": 10,
    "depth": 2,
    "width": 16,
    "channels": None,
    "kernel": 3,
    "pool_every": 2,
    "head_widths": [64],
    "activation": "relu",
    "batchnorm": False,
    "dropout": 0.0,
    "alpha": 1.0,
}
CNN_ONLY_KEYS = ("input_shape", "channels", "kernel", "pool_every", "head_widths")
MLP_ONLY_KEYS = ("input_size", "widths", "init", "init_range")

TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "loss": "ce",
    "batch_size": 128,
    "steps": None,
    "epochs": None,
    "n_train": None,
    "subset_seed": 0,
    "seed": 0,
    "dtype": "float32",
    "device": "auto",
    "precision": "fp32",
    "stack": True,
}
# Proposed defaults of methods.md (U8, U10-U13, §7, §9, §10); docs/config.md lists each key.
ANALYSIS_DEFAULTS: dict[str, Any] = {
    "run": list(DEFAULT_ANALYSES),
    "steps": "all",
    "final_step_only": [],
    "max_steps": {},
    "samples": 10000,
    "test_samples": 10000,
    "lp_train_samples": None,
    "rpd_bins": 50,
    "opm_alpha": 0.01,
    "opm_min_score": 0.0,
    "input_amplitudes": {"start": -5, "stop": 2, "num": 71},
    "weight_amplitudes": {"start": -4, "stop": 1, "num": 51},
    "input_repeats": 3,
    "weight_draws": 5,
    "weight_noise": "relative",
    "tracked_input_amplitudes": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
    "tracked_input_multiples": [],
    "basin_fraction": 0.5,
    "geometry_digit": 5,
    "geometry_first": 100,
    "projection_digits": [0, 1, 5],
    "projection_per_digit": 500,
    "projection_steps": "checkpoints",
    "seed": 0,
    "hessian_samples": None,
    "hessian_bn_mode": "eval",
    "hessian_top_k": 1,
    "hessian_iterations": 100,
    "hessian_tol": 1e-3,
    "hessian_probes": 100,
    "hessian_block": None,
    "hessian_trace_tol": 0.02,
    "cka_debiased": False,
    "layers": None,
    "conv_field": "mean",
    "lp_features": "pooled",
}
DUMP_DEFAULTS: dict[str, Any] = {
    "dtype": "float32",
    "compression": "lz4",
    "temporary": False,
    "max_gb": 50.0,
    "always": False,
}
DUMP_ANALYSES = tuple(name for name, stage in STAGES.items() if stage.reads_fields)  # they share dumps
SNAPSHOT_DEFAULTS: dict[str, Any] = {"log": 20, "dense_until": 0}
BUILTIN_DATASETS: dict[str, dict[str, Any]] = {
    name: {"source": name} for name in ("mnist5k", "mnist", "fashion_mnist", "kmnist")
}
KNOWN_TRAIN_SIZES = {"mnist5k": 4000, "mnist": 60000, "fashion_mnist": 60000, "kmnist": 60000}
RUN_ID_PATTERN = r"[a-z][a-z0-9_]*/[A-Za-z0-9_.+-]+"
# Short run-id tokens for the usual sweep axes (d08_w0256); other axes use their field name.
AXIS_TOKENS = {
    "model.depth": "d",
    "model.width": "w",
    "model.widths": "w",
    "model.dropout": "p",
    "model.init_range": "a",
    "model.alpha": "alpha",
    "train.lr": "lr",
    "train.batch_size": "b",
    "train.n_train": "n",
    "train.seed": "s",
    "train.weight_decay": "wd",
    "train.epochs": "e",
    "train.steps": "t",
    "train.momentum": "m",
}
VALUE_AXES = {"dataset", "model.activation", "model.init", "train.optimizer", "train.loss", "train.dtype"}


# Keyword options of each figure's draw() that `figures.figN.settings` may set (netdyn/figures/figN.py).
FIGURE_SETTINGS: dict[str, tuple[str, ...]] = {
    "fig2": ("layer", "checkpoints"),
    "fig3": ("depth", "rpd_layers"),
    "fig4": ("width",),
    "fig5": (),
    "fig6": ("digits",),
    "fig7": ("depth", "digits"),
    "fig8": ("digit",),
    "fig9": (),
    "figS1": (),
    "figS2": ("depth",),
    "figS3": ("width",),
}


class ConfigError(ValueError):
    """The configuration is invalid; the message starts with the offending key path."""


def load_yaml(path: str | Path) -> Any:
    with open(path) as handle:
        return yaml.safe_load(handle)


def _dotted(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


@functools.cache
def strict_validator() -> type:
    """Draft 2020-12 where 3.0 is no integer: a depth or a batch size must be a true integer in Python. Built on first
    use: every analysis job imports this module (for the model defaults) and never validates, and building it is a
    quarter of a second of start-up."""
    import jsonschema

    return jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
            "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
        ),
    )


def validate(config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Check ``config`` against the JSON schema; raise ConfigError naming the first bad key path."""
    import jsonschema

    validator = strict_validator()(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(e.absolute_path), e.message))
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors)
    while error.context:  # oneOf: report the branch that got furthest
        error = jsonschema.exceptions.best_match(error.context)
    path = _dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        known = ", ".join(sorted(error.schema.get("properties", {})))
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (known keys: {known})")
    if error.validator == "type" or error.validator == "oneOf":
        expected = error.schema.get("type", "another type")
        raise ConfigError(f"{path}: {error.instance!r} is not of type {expected}")
    raise ConfigError(f"{path}: {error.message}")


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and key != "snapshots":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _set_dotted(spec: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    target = spec
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def _token(axis: str, value: Any, values: list[Any]) -> str:
    if axis in VALUE_AXES or isinstance(value, str):
        return str(value)
    prefix = AXIS_TOKENS.get(axis, axis.split(".")[-1])
    if isinstance(value, bool):
        return f"{prefix}{int(value)}"
    if isinstance(value, list):
        return prefix + "-".join(str(v) for v in value)
    if value is None:
        return f"{prefix}all"
    if isinstance(value, int):
        digits = max(len(str(abs(v))) for v in values if isinstance(v, int) and not isinstance(v, bool))
        return f"{prefix}{value:0{max(digits, 2)}d}"
    return f"{prefix}{value:g}"


def dataset_definition(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    datasets = {**BUILTIN_DATASETS, **config.get("datasets", {})}
    if name not in datasets:
        raise ConfigError(f"dataset: unknown dataset {name!r}; define it under 'datasets' (known: {sorted(datasets)})")
    return dict(datasets[name])


def check_file(where: str, path: str | os.PathLike, kind: str, folder: bool = False) -> Path:
    """``path`` (config key or flag ``where``) must be a readable file holding ``kind`` (with ``folder``: a folder
    that can be listed); raise ConfigError naming the key."""
    target = Path(path).expanduser()
    if not target.exists():
        raise ConfigError(f"{where}: {str(target)!r} does not exist ({kind})")
    if not (target.is_dir() if folder else target.is_file()):
        raise ConfigError(f"{where}: {str(target)!r} is not a {'folder' if folder else 'file'} ({kind})")
    if not os.access(target, os.R_OK | os.X_OK if folder else os.R_OK):
        raise ConfigError(f"{where}: {str(target)!r} is not readable")
    return target


def user_dataset(data: str | os.PathLike, where: str) -> dict[str, Any]:
    """The dataset definition for data a user names directly (flag or argument ``where``): a built-in dataset name
    (``mnist5k``, ``mnist``, ...), else a readable .npz or HDF5 file of arrays, opened and checked now (its arrays'
    names, rows and labels: netdyn.arrays), before anything runs. FileNotFoundError when it is neither, ConfigError
    when it is there but not a usable file; both name ``where``."""
    from netdyn.arrays import DataError, read_arrays  # h5py: only when a file is named

    if isinstance(data, str) and data in BUILTIN_DATASETS:
        return {"source": data}
    if not os.path.exists(data):
        known = ", ".join(BUILTIN_DATASETS)
        raise FileNotFoundError(f"{where}: {str(data)!r} does not exist and is not a dataset name ({known})")
    path = check_file(where, data, "an .npz or HDF5 file of arrays").resolve()
    try:
        read_arrays(path)
    except DataError as error:
        raise ConfigError(f"{where}: {error}") from None
    return {"source": "arrays", "path": str(path)}


def check_datasets(config: Mapping[str, Any]) -> None:
    """Every dataset's files must be there before anything runs: an IDX folder (source idx) or a file of arrays
    (source arrays), named by their config key."""
    for name, definition in config.get("datasets", {}).items():
        source, path = definition["source"], definition.get("path")
        if source not in ("idx", "arrays"):
            continue
        where = f"datasets.{name}.path"
        kind = "an IDX folder" if source == "idx" else "an .npz or HDF5 file of arrays"
        if path is None:
            raise ConfigError(f"datasets.{name}: source {source} needs 'path' ({kind})")
        check_file(where, path, f"source {source} reads {kind}", folder=source == "idx")


def _idx_train_size(folder: Path) -> int | None:
    for name in ("train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz"):
        path = folder / name
        if path.exists():
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as handle:
                return struct.unpack(">II", handle.read(8))[1]
    return None


def train_size(config: Mapping[str, Any], name: str) -> int | None:
    """Training images of a dataset, when knowable without preparing it."""
    definition = dataset_definition(config, name)
    if "train_size" in definition:
        return int(definition["train_size"])
    if definition["source"] == "idx" and "path" in definition:
        return _idx_train_size(Path(definition["path"]))
    return KNOWN_TRAIN_SIZES.get(definition["source"])


def snapshot_steps(schedule: Any, total: int, where: str) -> list[int]:
    """Resolve a schedule (explicit list, or ``{log: num | {num, stop}, dense_until}``) to sorted steps."""
    if isinstance(schedule, list):
        beyond = [s for s in schedule if s > total]
        if beyond:
            raise ConfigError(f"{where}: step {beyond[0]} is beyond the training length ({total} steps)")
        steps = set(schedule)
    else:
        log = schedule["log"]
        num, stop = (log, total) if isinstance(log, int) else (log["num"], log.get("stop", total))
        if stop > total:
            raise ConfigError(f"{where}.log.stop: {stop} is beyond the training length ({total} steps)")
        steps = set(np.unique(np.round(np.geomspace(1, stop, num)).astype(int)).tolist())
        dense = schedule.get("dense_until", 0)
        if dense > total:
            raise ConfigError(f"{where}.dense_until: {dense} is beyond the training length ({total} steps)")
        steps |= set(range(dense + 1))
    return sorted(steps | {0, total})


def conv_plan(spec: Mapping[str, Any]) -> list[tuple[int, int, bool]]:
    """Per conv layer of a cnn spec ``(channels, image side after it, pooled after it)`` (square images; pooling
    stops below 2 pixels)."""
    channels = spec["channels"] or [int(spec["width"])] * int(spec["depth"])
    side, layers = int(spec["input_shape"][1]), []
    for index, width in enumerate(channels, start=1):
        pooled = bool(spec["pool_every"]) and index % int(spec["pool_every"]) == 0 and side >= 2
        side = side // 2 if pooled else side
        layers.append((int(width), side, pooled))
    return layers


def _resolve_model(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``given`` over its architecture's defaults; a key of the other architecture is named as an error."""
    cnn = given.get("arch") == "cnn"
    foreign = [key for key in (MLP_ONLY_KEYS if cnn else CNN_ONLY_KEYS) if key in given]
    if foreign:
        arch = "cnn" if cnn else "mlp (the default)"
        raise ConfigError(f"{where}.model.{foreign[0]}: not a key of model.arch {arch}")
    return {**(CNN_DEFAULTS if cnn else MODEL_DEFAULTS), **given}


def _resolve(config: Mapping[str, Any], spec: dict[str, Any], where: str) -> dict[str, Any]:
    model = _resolve_model(spec.get("model", {}), where)
    train = {**TRAIN_DEFAULTS, **spec.get("train", {})}
    dataset = spec.get("dataset", "mnist5k")
    try:
        dataset_definition(config, dataset)
    except ConfigError as error:
        raise ConfigError(f"{where}.{error}") from None
    if train["steps"] is not None and train["epochs"] is not None:
        raise ConfigError(f"{where}.train: give either 'steps' or 'epochs', not both")
    if train["steps"] is None and train["epochs"] is None:
        raise ConfigError(f"{where}.train: the training length is missing; set 'steps' or 'epochs'")
    if train["epochs"] is not None:
        n = train["n_train"] or train_size(config, dataset)
        if n is None:
            raise ConfigError(
                f"{where}.train.epochs: the size of dataset {dataset!r} is unknown; set train.steps or "
                f"datasets.{dataset}.train_size"
            )
        train["steps"] = math.ceil(train["epochs"] * max(1, n // train["batch_size"]))
    known = train_size(config, dataset)
    if train["n_train"] is not None and known is not None and train["n_train"] > known:
        raise ConfigError(f"{where}.train.n_train: {train['n_train']} exceeds the {known} training images of {dataset}")
    schedule = spec.get("snapshots", SNAPSHOT_DEFAULTS)
    snapshots = snapshot_steps(schedule, train["steps"], f"{where}.snapshots")
    weights = schedule.get("weights", "all") if isinstance(schedule, Mapping) else "all"
    return {"dataset": dataset, "model": model, "train": train, "snapshots": snapshots, "weights": weights}


def _kept_weights(resolved: dict[str, Any]) -> dict[str, Any]:
    """A resolved run whose ``weights`` is the list of steps whose snapshots keep their weights: absent for every
    step (``snapshots.weights: all``), else the steps its analyses read and the final one (``analysed``)."""
    out = {key: value for key, value in resolved.items() if key != "weights"}
    if resolved["weights"] == "analysed":
        analysis = resolved["analysis"]
        read = {step for name in analysis["run"] for step in analysis["steps_of"][name]}
        out["weights"] = sorted(read | {resolved["snapshots"][-1]})
    return out


def _resolve_analysis(analysis: dict[str, Any], snapshots: list[int], where: str) -> dict[str, Any]:
    steps = analysis["steps"]
    if steps == "all":
        steps = list(snapshots)
    elif steps == "final":
        steps = [snapshots[-1]]
    else:
        missing = sorted(set(steps) - set(snapshots))
        if missing:
            raise ConfigError(f"{where}.steps: step {missing[0]} is not a snapshot step of the run")
        steps = sorted(set(steps))
    per_analysis = {name: [snapshots[-1]] if name in analysis["final_step_only"] else steps for name in ANALYSES}
    for name, limit in (analysis["max_steps"] or {}).items():
        per_analysis[name] = spread_steps(per_analysis[name], int(limit))
    return {**analysis, "steps": steps, "steps_of": per_analysis}


def spread_steps(steps: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` of ``steps`` (sorted), evenly spaced by position, the first and the last always among them:
    snapshots are log-spaced, so this keeps an expensive analysis log-spaced over training too."""
    if len(steps) <= limit:
        return list(steps)
    if limit == 1:
        return [steps[-1]]
    return sorted({steps[round(i * (len(steps) - 1) / (limit - 1))] for i in range(limit)})


def hidden_widths(model: Mapping[str, Any]) -> list[int]:
    """The hidden widths of a resolved model spec: ``widths`` when given, else ``depth`` copies of ``width``; for a
    cnn its analysed layers' units: each conv layer's channels, then the head's widths."""
    if model.get("arch") == "cnn":
        return [width for width, _, _ in conv_plan(model)] + list(model["head_widths"])
    return list(model["widths"]) if model.get("widths") is not None else [model["width"]] * model["depth"]


def stack_key(run: Mapping[str, Any]) -> tuple:
    """Runs with equal keys can train together, stacked (netdyn.stacked): the same layers, activation, BatchNorm,
    presence of Dropout, loss, optimizer, batch size, snapshot schedule, dtype, device and precision. Seeds, learning
    rates, momentum, weight decay, dropout rates, init, alpha and the training subset may differ within a group."""
    model, train = run["model"], run["train"]
    return (
        run["dataset"],
        model["input_size"],
        tuple(hidden_widths(model)),
        model["classes"],
        model["activation"],
        bool(model.get("batchnorm")),
        float(model.get("dropout") or 0.0) > 0,
        train["loss"],
        train["optimizer"],
        train["batch_size"],
        train["steps"],
        tuple(run["snapshots"]),
        train["dtype"],
        train["device"],
        train.get("precision", "fp32"),
    )


def stack_groups(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """The stacked-training groups: per experiment, the runs with ``train.stack`` set that share a :func:`stack_key`,
    where there are at least two (a lone run trains by itself). Named ``<experiment>__stack<k>``, numbered in the
    order of their first run; membership, not the name, is what the workflow's rerun decisions follow."""
    by_key: dict[tuple, list[str]] = {}
    for run, spec in runs.items():
        if "external" in spec or not spec["train"].get("stack", True) or spec["model"].get("arch") == "cnn":
            continue  # a cnn trains alone: stacking it was slower (benchmarks/RESULTS.md)
        by_key.setdefault((spec["experiment"], stack_key(spec)), []).append(run)
    groups: dict[str, list[str]] = {}
    counters: dict[str, int] = {}
    for (experiment, _), members in by_key.items():
        if len(members) < 2:
            continue
        counters[experiment] = counters.get(experiment, 0) + 1
        groups[f"{experiment}__stack{counters[experiment]}"] = members
    return groups


def training_spec(run: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run spec that shapes its weights: changing anything else never retrains."""
    keys = ("run", "experiment", "dataset", "model", "train", "snapshots", "weights", "external")
    return {key: run[key] for key in keys if key in run}


def builder_reference(reference: str, where: str) -> str:
    """``FILE.py:FUNCTION`` (``build`` when no function is named) with the file checked and made absolute, relative
    paths taken from the caller's folder; ConfigError naming ``where`` (a config key or a flag) otherwise."""
    file, colon, function = str(reference).rpartition(":")
    if not colon:
        file, function = str(reference), "build"
    if not file.endswith(".py") or not function.isidentifier():
        raise ConfigError(f"{where}: {reference!r} is not FILE.py:FUNCTION (e.g. mymodel.py:build)")
    return f"{check_file(where, file, 'a Python file with the model builder').resolve()}:{function}"


def _external_runs(
    config: Mapping[str, Any], name: str, external: Mapping[str, Any], base: dict[str, Any], analysis: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Runs of an ``external`` experiment: one per label, its snapshot steps read from the checkpoint names."""
    runs = {}
    where = f"experiments.{name}.external"
    for key, kind in (("steps_csv", "a CSV of file, step"), ("model_yaml", "a YAML model description")):
        if external.get(key) is not None:
            check_file(f"{where}.{key}", external[key], kind)
    builder = builder_reference(external["model"], f"{where}.model") if external.get("model") is not None else None
    for label, location in external["runs"].items():
        try:
            files = checkpoint_files(
                location, step_pattern=external.get("step_pattern"), steps_csv=external.get("steps_csv")
            )
        except (ExternalRunError, OSError) as error:
            raise ConfigError(f"{where}.runs.{label}: {error}") from None
        spec = _merge(base, {"train": {"steps": max(max(files), 1), "epochs": None}, "snapshots": sorted(files)})
        resolved = _resolve(config, spec, f"experiments.{name}")
        resolved["snapshots"] = sorted(files)  # exactly the checkpoints there are
        resolved["external"] = {
            "files": {str(step): path for step, path in files.items()},
            "model": resolved["model"] if "model" in base else None,
            "model_yaml": external.get("model_yaml"),
            "builder": builder,
            "layers": analysis["layers"],
            "conv_field": analysis["conv_field"],
        }
        resolved["analysis"] = _resolve_analysis(analysis, resolved["snapshots"], f"experiments.{name}.analysis")
        runs[f"{name}/{label}"] = {"run": f"{name}/{label}", "experiment": name, **_kept_weights(resolved)}
    return runs


def expand_runs(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every run of every experiment: ``{run_id: resolved spec}`` in a stable order."""
    point_schema = {**schema["$defs"]["run_spec"], "$defs": schema["$defs"]}
    runs: dict[str, dict[str, Any]] = {}
    defaults = config.get("defaults", {})
    for name, experiment in config["experiments"].items():
        own = {k: v for k, v in experiment.items() if k not in ("sweep", "seeds", "analysis", "external")}
        base = _merge(defaults, own)
        analysis = {**ANALYSIS_DEFAULTS, **config.get("analysis", {}), **experiment.get("analysis", {})}
        if "external" in experiment:
            if "sweep" in experiment or "seeds" in experiment:
                raise ConfigError(
                    f"experiments.{name}: an external experiment has no sweep or seeds; list its runs instead"
                )
            runs.update(_external_runs(config, name, experiment["external"], base, analysis))
            continue
        sweep = dict(experiment.get("sweep", {}))
        seeds = experiment.get("seeds", 1)
        if seeds > 1:
            if "train.seed" in sweep:
                raise ConfigError(f"experiments.{name}.seeds: give seeds or a train.seed sweep, not both")
            base_seed = base.get("train", {}).get("seed", TRAIN_DEFAULTS["seed"])
            sweep["train.seed"] = [base_seed + i for i in range(seeds)]
        for axis in sweep:
            section, _, field = axis.partition(".")
            known = {**MODEL_DEFAULTS, **CNN_DEFAULTS} if section == "model" else TRAIN_DEFAULTS
            if field and field not in known:
                raise ConfigError(f"experiments.{name}.sweep: unknown field {axis!r}")
        for values in itertools.product(*sweep.values()) if sweep else [()]:
            spec = copy.deepcopy(base)
            tokens = []
            for axis, value in zip(sweep, values, strict=True):
                _set_dotted(spec, axis, value)
                tokens.append(_token(axis, value, sweep[axis]))
            run_id = f"{name}/{'_'.join(tokens) if tokens else 'base'}"
            where = f"experiments.{name}" + (f" (sweep point {run_id})" if tokens else "")
            try:
                validate(spec, point_schema)  # names a bad sweep value like any other key
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None
            if run_id in runs:
                raise ConfigError(f"experiments.{name}.sweep: two sweep points share the run id {run_id!r}")
            resolved = _resolve(config, spec, where)
            resolved["analysis"] = _resolve_analysis(analysis, resolved["snapshots"], f"experiments.{name}.analysis")
            runs[run_id] = {"run": run_id, "experiment": name, **_kept_weights(resolved)}
    return runs


def writes_dumps(run: Mapping[str, Any], dumps: Mapping[str, Any] | None = None) -> bool:
    """Whether a run gets activation dumps: when two of its analyses read the same fields (the dump is then computed
    once and shared), or when ``dumps.always`` is set and one does. A single reader computes the fields itself,
    which costs the same forward pass and saves a job, a write and a read."""
    readers = [name for name in DUMP_ANALYSES if name in run["analysis"]["run"]]
    return len(readers) >= 2 or (bool(readers) and bool({**DUMP_DEFAULTS, **(dumps or {})}["always"]))


def dump_steps(run: Mapping[str, Any]) -> list[int]:
    """The snapshot steps a run's dumps cover: those of every analysis that reads them."""
    analysis = run["analysis"]
    return sorted({s for name in DUMP_ANALYSES if name in analysis["run"] for s in analysis["steps_of"][name]})


def dump_bytes(run: Mapping[str, Any], dtype: str, dumps: Mapping[str, Any] | None = None) -> int:
    """Uncompressed size of a run's activation dumps: h and x of every hidden layer plus logits, per sample."""
    analysis = run["analysis"]
    steps = dump_steps(run)
    if not steps or not writes_dumps(run, dumps):
        return 0
    model = run["model"]
    widths = hidden_widths(model)
    n_train = run["train"]["n_train"] or KNOWN_TRAIN_SIZES.get(run["dataset"], 60000)
    samples = min(analysis["samples"] or n_train, n_train)
    per_sample = 2 * sum(widths) + model["classes"]
    return len(steps) * samples * per_sample * (2 if dtype == "float16" else 4)


def check_dump_size(runs: Mapping[str, Mapping[str, Any]], dumps: Mapping[str, Any]) -> float:
    """The estimated activation-dump size in GB; ConfigError when it exceeds ``dumps.max_gb``.

    With ``dumps.temporary`` only the largest run's dumps exist at a time (per job), so that one counts.
    """
    settings = {**DUMP_DEFAULTS, **dumps}
    sizes = [dump_bytes(run, settings["dtype"], settings) for run in runs.values()]
    total = (max(sizes, default=0) if settings["temporary"] else sum(sizes)) / 1e9
    if total > settings["max_gb"]:
        raise ConfigError(
            f"dumps.max_gb: the activation dumps would take about {total:.1f} GB (limit {settings['max_gb']:g} GB); "
            "shrink them with dumps.dtype: float16, a smaller analysis.samples, analysis.steps: final "
            "or final_step_only, or dumps.temporary: true (or raise dumps.max_gb)"
        )
    return total


def figure_roles(config: Mapping[str, Any], figure: str) -> dict[str, list[str]]:
    """``{role: [experiment, ...]}`` of one figure (its ``settings`` are not a role)."""
    entries = config.get("figures", {}).get(figure, {})
    return {
        role: [names] if isinstance(names, str) else list(names)
        for role, names in entries.items()
        if role != "settings"
    }


def figure_settings(config: Mapping[str, Any], figure: str) -> dict[str, Any]:
    """The keyword options a figure is drawn with (``figures.figN.settings``)."""
    return dict(config.get("figures", {}).get(figure, {}).get("settings", {}))


def check_figures(config: Mapping[str, Any]) -> None:
    """Every experiment a figure names must exist, and its settings must be the figure's own."""
    for figure in config.get("figures", {}):
        role_of: dict[str, str] = {}
        for role, names in figure_roles(config, figure).items():
            for experiment in names:
                if experiment not in config["experiments"]:
                    raise ConfigError(f"figures.{figure}.{role}: no experiment named {experiment!r}")
                if role_of.setdefault(experiment, role) != role:  # a run has one role per figure
                    raise ConfigError(
                        f"figures.{figure}.{role}: experiment {experiment!r} already plays role "
                        f"{role_of[experiment]!r} in this figure; give each role its own experiment"
                    )
        known = FIGURE_SETTINGS[figure]
        for key in figure_settings(config, figure):
            if key not in known:
                raise ConfigError(
                    f"figures.{figure}.settings: unknown key {key!r} (known keys: {', '.join(known) or 'none'})"
                )


def load_config(config: Mapping[str, Any], schema_path: str | Path) -> dict[str, dict[str, Any]]:
    """Validate ``config`` and return its runs; the one entry point the Snakefile uses."""
    schema = load_yaml(schema_path)
    validate(config, schema)
    check_figures(config)
    check_datasets(config)
    runs = expand_runs(config, schema)
    check_dump_size(runs, config.get("dumps", {}))
    return runs


def external_config(
    name: str,
    label: str,
    dataset: Mapping[str, Any],
    checkpoints: str,
    analyses: list[str],
    *,
    model_yaml: str | None = None,
    builder: str | None = None,
    step_pattern: str | None = None,
    train: Mapping[str, Any] | None = None,
    analysis: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config of one external experiment ``name`` with one run ``label`` (docs/external.md): what
    ``netdyn analyze`` (the CLI) writes and ``netdyn.analyze`` (the API) runs."""
    external: dict[str, Any] = {"runs": {label: checkpoints}}
    if model_yaml:
        external["model_yaml"] = str(model_yaml)
    if builder:
        external["model"] = str(builder)
    if step_pattern:
        external["step_pattern"] = step_pattern
    experiment: dict[str, Any] = {
        "dataset": name,
        "external": external,
        "analysis": {**(analysis or {}), "run": list(analyses)},
    }
    if train:
        experiment["train"] = dict(train)
    return {"datasets": {name: dict(dataset)}, "experiments": {name: experiment}}
