"""What every stage does the same way: the analysis device, the run's analysed models, and the training analysis
fields (read from the run's activation dumps where it has them, else computed from the snapshots)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netdyn import activations, snapshots
from netdyn import data as datasets
from netdyn.samples import analysis_samples


def analysis_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def models(snapshot_dir: str | os.PathLike, steps: Sequence[int], log=print) -> Iterator[tuple[int, nn.Sequential]]:
    """``(step, model)`` for every analysed step whose snapshot holds weights, on the analysis device."""
    return snapshots.iter_models(snapshot_dir, steps, analysis_device(), log)


def dtype_of(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def training_fields(
    snapshot_dir: str | os.PathLike,
    dump_dir: str | os.PathLike | None,
    steps: Sequence[int],
    *,
    data_path: str | os.PathLike,
    train_spec: Mapping[str, Any],
    samples: int | None,
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
            yield step, model, activations.read(Path(dump_dir) / activations.dump_name(step), "train")
            continue
        computed = activations.compute(model, x.to(dtype_of(model)))
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
