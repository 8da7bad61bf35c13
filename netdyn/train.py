"""Train one MLP run with scheduled, resumable snapshots (docs/design.md "The DAG", issue "Foundation" §4).

The training split lives on the device as whole tensors and batches are index slices. Batch order depends
only on the seed and the epoch, so a run killed at any point resumes from its last complete snapshot and
ends bit for bit where an uninterrupted run ends (on the CPU). Snapshots are first written to a
``.train-resume`` folder beside the final ones and hard-linked into place when the run ends, so that Snakemake,
which clears a job's outputs before rerunning it, never deletes the state a resume needs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import platform
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from netdyn import data as datasets
from netdyn import snapshots
from netdyn.evaluate import loss_value, snapshot_metrics
from netdyn.models import build
from netdyn.records import write_run
from netdyn.samples import training_indices


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present (with a warning when it falls back to the CPU)."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device: 'cuda' was requested but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        warnings.warn("train.device is 'auto' and no CUDA GPU is visible: training on the CPU", stacklevel=2)
        return torch.device("cpu")
    return torch.device(requested)


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped, so BatchNorm never sees one sample)."""
    return max(1, n // batch_size)


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the training batch used at ``step``: a fresh permutation per epoch, seeded by (seed, epoch)."""
    per_epoch = batches_per_epoch(n, batch_size)
    epoch, position = divmod(step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator)
    return order[position * batch_size : (position + 1) * batch_size]


# torch.optim wraps its methods so that torch.compile leaves them alone; the wrappers import torch._dynamo on first
# use, 1.5-2 s of every training job's start-up on these machines, for nothing in eager mode. The wrappers' cached
# "disabled" form is preset to the plain method (what it amounts to without torch.compile), and steps call the
# unwrapped step under no_grad (its wrapper only switches grad off and marks graph breaks). Same arithmetic, bit for
# bit; tests/test_train.py checks that a training run never imports torch._dynamo.
_DYNAMO_DISABLED = torch._compile._disable_dynamo(lambda: None).__code__


def _eager_only(optimizer_class: type[torch.optim.Optimizer]) -> None:
    for klass in optimizer_class.__mro__:
        for method in vars(klass).values():
            if getattr(method, "__code__", None) is _DYNAMO_DISABLED:
                setattr(method.__wrapped__, "__dynamo_disable", method.__wrapped__)


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()`` in eager mode, without the wrappers that import torch._dynamo."""
    with torch.no_grad():
        inspect.unwrap(type(optimizer).step)(optimizer)


def make_optimizer(model: nn.Module, train: Mapping[str, Any]) -> torch.optim.Optimizer:
    for klass in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
        _eager_only(klass)  # before __init__, which calls a wrapped method
    name = train["optimizer"]
    # The fused kernels update every parameter in one pass (about 6x faster than the default foreach update on the
    # CPU: 15% of a grokking-net step); same algorithm, different float rounding.
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=train["lr"], weight_decay=train["weight_decay"], fused=True)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=train["lr"], weight_decay=train["weight_decay"], fused=True)
    if name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=train["lr"], momentum=train["momentum"], weight_decay=train["weight_decay"]
        )
    raise ValueError(f"train.optimizer: unknown {name!r}; choose adam, adamw or sgd")


def spec_digest(spec: Mapping[str, Any]) -> str:
    """A fingerprint of everything that shapes the weights, so a stale resume cache is never reused."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _latest_resumable(cache: Path, digest: str) -> dict[str, Any] | None:
    """The newest readable cached snapshot written for this exact spec, or None."""
    for path in sorted(cache.glob("step*.pt"), reverse=True):
        try:
            payload = snapshots.read(path)
        except snapshots.SnapshotError:
            continue
        if payload.get("digest") == digest and not payload.get("diverged"):
            return payload
    return None


def train_run(
    spec: Mapping[str, Any],
    data_path: str | os.PathLike,
    snapshot_dir: str | os.PathLike,
    history_path: str | os.PathLike,
    run_json_path: str | os.PathLike,
    *,
    threads: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the run described by the resolved ``spec`` and write its snapshots, history and run record.

    ``spec`` holds ``run``, ``model``, ``train`` and ``snapshots`` (the sorted list of steps, ending with
    the last step). Returns the run record written to ``run_json_path``.
    """
    started = time.time()
    torch.set_num_threads(threads)
    train_spec = spec["train"]
    schedule = sorted(int(s) for s in spec["snapshots"])
    total = schedule[-1]
    digest = spec_digest(spec)
    snapshot_dir = Path(snapshot_dir)
    cache = snapshot_dir.parent / ".train-resume"
    cache.mkdir(parents=True, exist_ok=True)

    device = resolve_device(train_spec["device"])
    dtype = getattr(torch, train_spec["dtype"])
    data = datasets.load(data_path, device=device, dtype=dtype)
    subset = torch.as_tensor(training_indices(data.train_y.cpu().numpy(), train_spec), device=device)
    x_train, y_train = data.train_x[subset], data.train_y[subset]
    n, batch_size, seed = len(y_train), int(train_spec["batch_size"]), int(train_spec["seed"])

    model = build(spec["model"], generator_seed=seed).to(device=device, dtype=dtype)
    optimizer = make_optimizer(model, train_spec)
    history: list[dict[str, Any]] = []
    start = 0
    resumed = _latest_resumable(cache, digest)
    if resumed is not None:
        model.load_state_dict(resumed["state_dict"])
        optimizer.load_state_dict(resumed["optimizer"])
        _set_rng_state(resumed["rng"])
        history = [row for row in resumed["history"]]
        start = int(resumed["step"])
        log(f"resuming {spec['run']} from its snapshot at step {start}")

    def record(step: int) -> dict[str, Any]:
        measured = snapshot_metrics(
            model, (x_train, y_train), (data.test_x, data.test_y), train_spec["loss"], batch_size, seed
        )
        return {
            "step": step,
            "epoch": step / batches_per_epoch(n, batch_size),
            **measured,
            "wall_time": time.time() - started,
        }

    def snapshot(step: int) -> bool:
        """Evaluate and save the snapshot at ``step``; False when the model has diverged."""
        row = record(step)
        if not (math.isfinite(row["train_loss"]) and math.isfinite(row["weight_norm"])):
            return False
        history.append(row)
        snapshots.save(
            cache / snapshots.snapshot_name(step),
            {
                "step": step,
                "spec": dict(spec),
                "digest": digest,
                "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": _rng_state(),
                "history": history,
            },
        )
        progress.set_postfix(train_acc=f"{row['train_acc']:.3f}", test_acc=f"{row['test_acc']:.3f}")
        return True

    diverged_at = None
    scheduled = set(schedule)
    progress = tqdm(total=total, initial=start, desc=spec["run"], file=sys.stderr, mininterval=2.0, unit="step")
    if resumed is None and not snapshot(0):
        diverged_at = 0
    step = start
    while diverged_at is None and step < total:
        index = batch_indices(step, n, batch_size, seed).to(device)
        model.train()
        loss = loss_value(model(x_train[index]), y_train[index], train_spec["loss"])
        if not torch.isfinite(loss):
            diverged_at = step
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer_step(optimizer)
        step += 1
        progress.update(1)
        if step in scheduled and not snapshot(step):
            diverged_at = step
    progress.close()

    snapshot_dir.mkdir(parents=True, exist_ok=True)
    for step in schedule:
        final = snapshot_dir / snapshots.snapshot_name(step)
        final.unlink(missing_ok=True)
        if diverged_at is not None and step >= diverged_at:
            snapshots.save_divergence_marker(final, step, diverged_at, dict(spec))
        else:
            os.link(cache / snapshots.snapshot_name(step), final)

    status = "diverged" if diverged_at is not None else "completed"
    record_json = write_run(
        history_path,
        run_json_path,
        history,
        spec,
        started=started,
        n_train=n,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        status=status,
        diverged_at=diverged_at,
        resumed_from=start if resumed is not None else None,
    )
    shutil.rmtree(cache, ignore_errors=True)
    last = history[-1] if history else {}
    log(
        f"{spec['run']}: {status}"
        + (f" at step {diverged_at}" if diverged_at is not None else "")
        + f", {len(history)} snapshots, final train_acc={last.get('train_acc', math.nan):.4f}"
        f" test_acc={last.get('test_acc', math.nan):.4f}, {record_json['wall_time_s']:.1f} s"
    )
    return record_json
