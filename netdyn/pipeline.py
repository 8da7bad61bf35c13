"""Apply each analysis to every analysed snapshot of one run and shape the tables the workflow writes.

Each ``*_table(s)`` function here is what one analysis rule runs: it walks the run's snapshots (skipping
divergence markers, which appear as gaps), calls the pure analysis functions of ``netdyn.rpd``,
``netdyn.modes``, ``netdyn.pruning``, ``netdyn.basins``, ``netdyn.geometry``, ``netdyn.projection`` and
``netdyn.evaluate``, and returns pandas tables in the formats of docs/formats.md. Metric tables are long
(``netdyn.metrics``: ``run, step, metric, layer, value, note``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from netdyn import activations, snapshots
from netdyn import data as datasets
from netdyn.metrics import curve_table, metric_frame, metric_row
from netdyn.samples import analysis_indices, training_indices


def analysis_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def models(snapshot_dir: str | os.PathLike, steps: Sequence[int], log=print) -> Iterator[tuple[int, nn.Sequential]]:
    """``(step, model)`` for every analysed step whose snapshot holds weights, on the analysis device."""
    return snapshots.iter_models(snapshot_dir, steps, analysis_device(), log)


def training_fields(
    snapshot_dir: str | os.PathLike,
    dump_dir: str | os.PathLike | None,
    steps: Sequence[int],
    *,
    data_path: str | os.PathLike | None = None,
    train_spec: Mapping[str, Any] | None = None,
    samples: int | None = None,
    log=print,
) -> Iterator[tuple[int, nn.Sequential, dict]]:
    """``(step, model, fields)`` of the training analysis samples at every analysed step that has weights: read from
    the run's activation dump where it has one (``dump_dir``), else computed by an eval-mode forward of the snapshot
    on the same samples; ``fields`` holds what the dump holds (docs/formats.md: ``indices``, ``labels``, ``h``,
    ``x``)."""
    if dump_dir is None:
        data = datasets.load(data_path, device=analysis_device())
        rows, x, y = analysis_samples(data, train_spec, samples)
    for step, model in models(snapshot_dir, steps, log):
        if dump_dir is not None:
            yield step, model, activations.read(Path(dump_dir) / f"step{step:06d}.h5", "train")
            continue
        computed = activations.compute(model, x.to(next(model.parameters()).dtype))
        depth = sum(name.startswith("h") for name in computed)
        yield (
            step,
            model,
            {
                "indices": rows,
                "labels": y.cpu().numpy(),
                "h": [computed[f"h{layer:02d}"] for layer in range(1, depth + 1)],
                "x": [computed[f"x{layer:02d}"] for layer in range(1, depth + 1)],
            },
        )


def analysis_samples(
    data: datasets.Dataset, train_spec: Mapping[str, Any], samples: int | None, split: str = "train"
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Rows, inputs and labels of the analysis samples (the dump's sample set, recomputed)."""
    if split == "train":
        labels = data.train_y.cpu().numpy()
        rows = analysis_indices(labels, training_indices(labels, train_spec), samples)
        return rows, data.train_x[rows], data.train_y[rows]
    labels = data.test_y.cpu().numpy()
    rows = analysis_indices(labels, np.arange(len(labels)), samples)
    return rows, data.test_x[rows], data.test_y[rows]


def bn_mode_table(
    run: str,
    snapshot_dir: str | os.PathLike,
    data_path: str | os.PathLike,
    steps: Sequence[int],
    train_spec: Mapping[str, Any],
    *,
    test_samples: int | None,
    log=print,
) -> pd.DataFrame:
    """``test_acc_bnbatch``: test accuracy in eval mode with the running statistics replaced by those of the
    last training batch before the step (methods.md §11.2, the literal α = 0 reading).

    The eval-mode (``test_acc``) and the primary train-mode reading (``test_acc_bntrain``) come from the
    training history, which evaluates them at every snapshot on the whole test split.
    """
    from netdyn.evaluate import accuracy_bn_batch_stats, has_batchnorm
    from netdyn.train import batch_indices

    rows = []
    data = datasets.load(data_path, device=analysis_device())
    _, x_test, y_test = analysis_samples(data, train_spec, test_samples, split="test")
    train_rows = torch.as_tensor(training_indices(data.train_y.cpu().numpy(), train_spec), device=data.train_x.device)
    batch_size, seed = int(train_spec["batch_size"]), int(train_spec["seed"])
    for step, model in models(snapshot_dir, steps, log):
        if not has_batchnorm(model):
            continue
        dtype = next(model.parameters()).dtype
        last_batch = batch_indices(max(step - 1, 0), len(train_rows), batch_size, seed).to(train_rows.device)
        accuracy = accuracy_bn_batch_stats(
            model, data.train_x[train_rows[last_batch]].to(dtype), x_test.to(dtype), y_test
        )
        rows.append(metric_row(run, step, "test_acc_bnbatch", accuracy))
        log(f"step {step}: test accuracy with last-batch BatchNorm statistics {accuracy:.4f}")
    return metric_frame(rows)


def geometry_tables(
    run: str,
    snapshot_dir: str | os.PathLike,
    dump_dir: str | os.PathLike | None,
    data_path: str | os.PathLike,
    steps: Sequence[int],
    *,
    train_spec: Mapping[str, Any] | None = None,
    samples: int | None = None,
    digit: int = 5,
    first: int = 100,
    log=print,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Class geometry of every layer (methods.md §9) on the training analysis samples.

    Returns the per-sample distances of the first ``first`` samples of ``digit`` (the thin lines of Fig. 3(c))
    and the metrics ``center_distance`` and ``center_similarity`` per layer l = 0..L-1 (0 = the input).
    """
    from netdyn.geometry import layer_geometry

    data = datasets.load(data_path)
    classes = int(max(data.train_y.max(), data.test_y.max())) + 1
    curves, rows = [], []
    source = training_fields(
        snapshot_dir, dump_dir, steps, data_path=data_path, train_spec=train_spec, samples=samples, log=log
    )
    for step, _, dump in source:
        inputs = data.train_x[torch.as_tensor(dump["indices"])]
        result = layer_geometry(
            [inputs, *dump["x"]], dump["labels"], digit=digit, n_first=first, n_classes=classes, indices=dump["indices"]
        )
        curves.append(result.digit.assign(run=run, step=step))
        for record in result.summary.to_dict("records"):
            layer = int(record["layer"])
            rows.append(metric_row(run, step, "center_distance", record["center_distance"], layer))
            rows.append(metric_row(run, step, "center_similarity", record["center_similarity"], layer))
            rows.append(metric_row(run, step, "digit_center_distance", record["digit_distance_mean"], layer))
        log(f"step {step}: geometry of {len(result.summary)} layers")
    columns = ["run", "step", "layer", "sample_index", "distance"]
    return curve_table(curves, columns), metric_frame(rows)


def projection_table(
    run: str,
    snapshot_dir: str | os.PathLike,
    data_path: str | os.PathLike,
    steps: Sequence[int],
    train_spec: Mapping[str, Any],
    *,
    digits: Sequence[int] = (0, 1, 5),
    per_digit: int = 500,
    log=print,
) -> pd.DataFrame:
    """2-D SVD-bottleneck coordinates (methods.md §10) of the first ``per_digit`` samples of each digit at ``steps``
    (the workflow passes the run's checkpoints, :func:`projection_steps`).

    Training samples come from the run's own training set, test samples from the test split. Models with
    BatchNorm are projected twice: ``bn_mode`` eval (running statistics) and train (each shuffled mini-batch
    of the whole split normalized by its own statistics, §11.2), the two panels of Fig. 7.
    """
    from netdyn.evaluate import bn_train_mode_forward, eval_mode, has_batchnorm
    from netdyn.layers import forward_layers
    from netdyn.projection import bottleneck, output_weight, project

    data = datasets.load(data_path, device=analysis_device())
    train_rows = training_indices(data.train_y.cpu().numpy(), train_spec)
    splits = {
        "train": (data.train_x[train_rows], data.train_y[train_rows], train_rows),
        "test": (data.test_x, data.test_y, np.arange(len(data.test_y))),
    }
    batch_size, seed = int(train_spec["batch_size"]), int(train_spec["seed"])
    frames = []
    for step, model in models(snapshot_dir, steps, log):
        weight, _, _ = bottleneck(output_weight(model))
        dtype = next(model.parameters()).dtype
        for split, (x, y, rows) in splits.items():
            labels = y.cpu().numpy()
            chosen = np.concatenate([np.flatnonzero(labels == d)[:per_digit] for d in digits])
            chosen.sort()
            modes = ["eval", "train"] if has_batchnorm(model) else ["eval"]
            for mode in modes:
                if mode == "eval":
                    with eval_mode(model):
                        _, outputs, _ = forward_layers(model, x[chosen].to(dtype))
                    last = outputs[-1] if outputs else x[chosen]
                else:
                    last = bn_train_mode_forward(model, x.to(dtype), batch_size, seed)[0][chosen]
                coordinates = project(last, weight).cpu().numpy()
                frames.append(
                    pd.DataFrame(
                        {
                            "run": run,
                            "step": step,
                            "split": split,
                            "bn_mode": mode,
                            "index": rows[chosen],
                            "label": labels[chosen],
                            "h1": coordinates[:, 0],
                            "h2": coordinates[:, 1],
                        }
                    )
                )
        log(f"step {step}: projected digits {list(digits)}")
    columns = ["run", "step", "split", "bn_mode", "index", "label", "h1", "h2"]
    return curve_table(frames, columns)


NEURON_COLUMNS = ["run", "step", "layer", "neuron", "score", "z", "opm"]


def projection_steps(
    history_path: str | os.PathLike, run_json_path: str | os.PathLike, steps: Sequence[int], which: str
) -> list[int]:
    """The steps to project: all analysed ``steps`` (``which`` = "analysed"), or only those of them that the figures
    draw (``which`` = "checkpoints"): the before/after checkpoints of the run's grokking readings, read off its
    history with the same detector and chance level as ``collect`` (netdyn.dynamics, the run record's classes), and
    the final step."""
    if which == "analysed":
        return sorted(steps)
    from netdyn.dynamics import checkpoint_steps

    classes = json.loads(Path(run_json_path).read_text())["spec"]["model"]["classes"]
    wanted = set(checkpoint_steps(pd.read_csv(history_path), classes))
    return sorted(set(steps) & wanted)


RPD_METRICS = {
    "G": "rpd_gradient",
    "G_half": "rpd_gradient_half",
    "G_log": "rpd_gradient_log",
    "contrast": "rpd_contrast",
}


def rpd_tables(
    run: str,
    snapshot_dir: str | os.PathLike,
    dump_dir: str | os.PathLike | None,
    steps: Sequence[int],
    *,
    data_path: str | os.PathLike | None = None,
    train_spec: Mapping[str, Any] | None = None,
    samples: int | None = None,
    bins: int = 50,
    opm_alpha: float = 0.01,
    opm_min_score: float = 0.0,
    log=print,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """RPD density curves and gradients (methods.md §6) of every hidden layer at every analysed step, and each
    neuron's mode (docs/methods.md §1): the curves, the per-neuron table and the metrics (with ``opm_fraction``).

    The fields come from the run's dumps (``dump_dir``) or, without them, from the snapshots on the training
    analysis samples (``data_path``, ``train_spec``, ``samples``): the same numbers either way."""
    from netdyn.modes import classify
    from netdyn.rpd import rpd_for_layers

    curves, neurons, rows = [], [], []
    source = training_fields(
        snapshot_dir, dump_dir, steps, data_path=data_path, train_spec=train_spec, samples=samples, log=log
    )
    for step, model, dump in source:
        device = analysis_device()
        fields = [torch.as_tensor(h, device=device) for h in dump["h"]]
        fractions = []
        for result in rpd_for_layers(model, fields, torch.as_tensor(dump["labels"], device=device), bins):
            layer = result["layer"]
            curves.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "step": step,
                        "layer": layer,
                        "bin_center": result["bin_centers"],
                        "density": result["density"],
                    }
                )
            )
            modes = classify(result["neurons"], alpha=opm_alpha, min_score=opm_min_score)
            neurons.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "step": step,
                        "layer": layer,
                        "neuron": np.arange(len(modes["opm"])),
                        "score": modes["score"],
                        "z": modes["z"],
                        "opm": modes["opm"].astype(int),
                    }
                )
            )
            rows += [metric_row(run, step, name, result[key], layer) for key, name in RPD_METRICS.items()]
            rows.append(metric_row(run, step, "opm_fraction", modes["opm_fraction"], layer))
            fractions.append(f"{modes['opm_fraction']:.2f}")
        log(f"step {step}: RPD of {len(fields)} hidden layers; OPM fraction by layer {', '.join(fractions)}")
    return (
        curve_table(curves, ["run", "step", "layer", "bin_center", "density"]),
        curve_table(neurons, NEURON_COLUMNS),
        metric_frame(rows),
    )


PRUNING_METRICS = {
    "lp_test_acc": "lp_acc",
    "lp_train_acc": "lp_train_acc",
    "lmap_acc": "lmap_acc",
    "lmap_weights_only_acc": "lmap_weights_acc",
}


def pruning_tables(
    run: str,
    snapshot_dir: str | os.PathLike,
    data_path: str | os.PathLike,
    steps: Sequence[int],
    train_spec: Mapping[str, Any],
    *,
    lp_train_samples: int | None = None,
    test_samples: int | None = None,
    log=print,
) -> pd.DataFrame:
    """LP and L-map pruning accuracy (methods.md §4, §5) for every start layer, as metrics with layer = l.

    The LP is fitted on the run's training split (methods.md §4: P = the network's training set; a class-stratified
    subset of ``lp_train_samples`` where that is set, for huge sets) and scored on the test analysis samples;
    ``lp_train_acc`` is its accuracy on the fitting set. Features come from an eval-mode forward of each snapshot.
    """
    from netdyn.activations import layer_outputs
    from netdyn.pruning import pruning_table

    data = datasets.load(data_path, device=analysis_device())
    _, x_fit, y_fit = analysis_samples(data, train_spec, lp_train_samples)
    _, x_test, y_test = analysis_samples(data, train_spec, test_samples, split="test")
    rows = []
    for step, model in models(snapshot_dir, steps, log):
        dtype = next(model.parameters()).dtype
        train_xs, train_logits = layer_outputs(model, x_fit.to(dtype))
        test_xs, _ = layer_outputs(model, x_test.to(dtype))
        table = pruning_table(model, train_xs, train_logits, test_xs, y_test, y_fit)
        del train_xs, test_xs
        for record in table:
            rows += [
                metric_row(run, step, name, record[key], int(record["start_layer"]))
                for key, name in PRUNING_METRICS.items()
            ]
        log(f"step {step}: LP fitted on {len(y_fit)} training samples; LP and L-map pruning from {len(table)} layers")
    return metric_frame(rows)


def basin_tables(
    run: str,
    snapshot_dir: str | os.PathLike,
    data_path: str | os.PathLike,
    steps: Sequence[int],
    train_spec: Mapping[str, Any],
    settings: Mapping[str, Any],
    *,
    threads: int = 1,
    log=print,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Input- and weight-space basin curves and sizes (methods.md §7, §8) on the training analysis samples.

    Rows with ``space = input_tracked`` hold the accuracy at the fixed amplitudes followed over training (Fig. 6(a)):
    ``tracked_input_amplitudes`` as given, and ``tracked_input_multiples`` times the run's input basin at its last
    analysed step (``multiple`` says which; the final step is analysed first to measure it). A basin whose threshold
    lies outside the amplitude grid has no value and a note saying so; its multiples are not tracked.
    """
    from netdyn.basins import basin_table, input_basin_curve

    torch.set_num_threads(threads)
    data = datasets.load(data_path, device=analysis_device())
    _, x, y = analysis_samples(data, train_spec, settings["samples"])

    def grid(spec: Mapping[str, Any]) -> np.ndarray:
        return np.logspace(spec["start"], spec["stop"], spec["num"])

    curves, rows = [], []
    multiples = list(settings.get("tracked_input_multiples") or [])
    tracked: list[tuple[float, float]] = [(a, math.nan) for a in settings["tracked_input_amplitudes"]]
    ordered = sorted(steps)[-1:] + sorted(steps)[:-1]  # the final step first: its basin scales the multiples
    for step, model in models(snapshot_dir, ordered, log):
        inputs = x.to(next(model.parameters()).dtype)
        table, sizes = basin_table(
            model,
            inputs,
            y,
            input_amplitudes=grid(settings["input_amplitudes"]),
            weight_amplitudes=grid(settings["weight_amplitudes"]),
            repeats=settings["input_repeats"],
            draws=settings["weight_draws"],
            seed=settings["seed"],
            relative=settings["weight_noise"] == "relative",
            fraction=settings["basin_fraction"],
        )
        if multiples:
            reference, status = sizes["basin_input"]
            if status == "ok":
                tracked += [(m * reference, m) for m in multiples]
                log(f"step {step}: tracking input noise at {multiples} x the final input basin {reference:.3g}")
            else:
                log(f"step {step}: the final input basin is {status}; its multiples are not tracked")
            multiples = []
        if tracked:
            generator = torch.Generator().manual_seed(settings["seed"] + 1)
            amplitudes = [a for a, _ in tracked]
            mean, std = input_basin_curve(
                model, inputs, y, amplitudes, repeats=settings["input_repeats"], generator=generator
            )
            table += [
                {
                    "space": "input_tracked",
                    "amplitude": a,
                    "multiple": k,
                    "accuracy": float(m),
                    "accuracy_std": float(s),
                }
                for (a, k), m, s in zip(tracked, mean, std, strict=True)
            ]
        curves.append(pd.DataFrame(table).assign(run=run, step=step))
        for name, (size, status) in sizes.items():
            note = "" if status == "ok" else status
            grid_spec = settings["input_amplitudes" if name == "basin_input" else "weight_amplitudes"]
            if status == "beyond_grid":
                note = f"beyond_grid: > {10.0 ** grid_spec['stop']:g}"
            elif status == "below_grid":
                note = f"below_grid: < {10.0 ** grid_spec['start']:g}"
            rows.append(metric_row(run, step, name, size, note=note))
        log(f"step {step}: basins " + ", ".join(f"{k}={v[0]:.3g} ({v[1]})" for k, v in sizes.items()))
    columns = ["run", "step", "space", "amplitude", "multiple", "accuracy", "accuracy_std"]
    table = curve_table(curves, columns)
    metrics = metric_frame(rows)
    return table.sort_values("step", kind="stable", ignore_index=True), metrics.sort_values(
        "step", kind="stable", ignore_index=True
    )
