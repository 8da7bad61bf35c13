"""Train one MLP run with scheduled, resumable snapshots (docs/design.md "The DAG", issue "Foundation" §4).

The training split lives on the device as whole tensors and batches are index slices. Batch order depends
only on the seed and the epoch, so a run killed at any point resumes from its last resume state and ends bit
for bit where an uninterrupted run ends (on the CPU). Snapshots hold the weights (and, the final one, the optimizer
and RNG states too) of the steps whose weights are kept (``weights`` in the spec: every scheduled step unless
``snapshots.weights: analysed``); a resume state (weights, optimizer, RNG, history) is written at a scheduled step
when ``RESUME_EVERY_S`` seconds have passed since the last one, so a paper-sized net does not write its optimizer
state at every snapshot (docs/formats.md). Both are written to a ``.train-resume`` folder beside the final
snapshots and the snapshots are hard-linked into place when the run ends, so that Snakemake, which clears a job's
outputs before rerunning it, never deletes the state a resume needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from netdyn import data as datasets
from netdyn import snapshots
from netdyn.devices import resolve_device
from netdyn.evaluate import loss_value, snapshot_metrics
from netdyn.models import build
from netdyn.records import write_run
from netdyn.samples import training_indices


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped, so BatchNorm never sees one sample)."""
    return max(1, n // batch_size)


def epoch_order(epoch: int, n: int, seed: int) -> torch.Tensor:
    """The order of the ``n`` training rows in ``epoch``: a permutation seeded by (seed, epoch), drawn on the CPU so
    that a run's batches are the same on every device."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the training batch used at ``step``: a fresh permutation per epoch, seeded by (seed, epoch)."""
    epoch, position = divmod(step, batches_per_epoch(n, batch_size))
    return epoch_order(epoch, n, seed)[position * batch_size : (position + 1) * batch_size]


def batch_sampler(
    n: int, batch_size: int, seed: int, device: torch.device, rows: torch.Tensor | None = None
) -> Callable[[int], torch.Tensor]:
    """``sample(step)``: :func:`batch_indices` of ``step`` on ``device`` (mapped through ``rows`` when given), with one
    permutation drawn and moved per epoch instead of one per step; the batches are exactly those of batch_indices."""
    per_epoch = batches_per_epoch(n, batch_size)
    current: dict[str, Any] = {"epoch": None, "order": None}

    def sample(step: int) -> torch.Tensor:
        epoch, position = divmod(step, per_epoch)
        if current["epoch"] != epoch:
            order = epoch_order(epoch, n, seed).to(device)
            current.update(epoch=epoch, order=order if rows is None else rows[order])
        return current["order"][position * batch_size : (position + 1) * batch_size]

    return sample


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


def make_optimizer(parameters: Iterable[torch.Tensor], train: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer ``train.optimizer`` names, over ``parameters``."""
    parameters = list(parameters)
    for klass in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
        _eager_only(klass)  # before __init__, which calls a wrapped method
    name = train["optimizer"]
    # The fused kernels update every parameter in one pass (about 6x faster than the default foreach update on the
    # CPU: 15% of a grokking-net step); same algorithm, different float rounding.
    if name == "adam":
        return torch.optim.Adam(parameters, lr=train["lr"], weight_decay=train["weight_decay"], fused=True)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=train["lr"], weight_decay=train["weight_decay"], fused=True)
    if name == "sgd":
        return torch.optim.SGD(
            parameters, lr=train["lr"], momentum=train["momentum"], weight_decay=train["weight_decay"]
        )
    raise ValueError(f"train.optimizer: unknown {name!r}; choose adam, adamw or sgd")


def spec_digest(spec: Mapping[str, Any]) -> str:
    """A fingerprint of everything that shapes the weights, so a stale resume cache is never reused."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


PRECISIONS = ("fp32", "tf32", "bf16")
# Seconds of training between resume states (at the next snapshot step after them): a killed job loses about this
# much. NETDYN_RESUME_EVERY_S=0 writes one at every snapshot step (the resume tests).
RESUME_EVERY_S = float(os.environ.get("NETDYN_RESUME_EVERY_S", "60"))
# Steps between checks of the device-side divergence record outside snapshots (bounds the work done after a NaN).
DIVERGENCE_CHECK = 256


def forward_precision(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The numeric mode of the training forward and backward pass (``train.precision``, docs/config.md).

    ``fp32`` computes as written. ``tf32`` lets CUDA matmuls use TF32 tensor cores (10-bit mantissa products,
    float32 accumulation; no effect on the CPU); it sets the process-wide flags, which is right for a training job.
    ``bf16`` runs the pass under autocast in bfloat16 while weights, gradients and optimizer state stay float32.
    Snapshot evaluation always runs in the run's dtype: the measurements do not depend on the training precision.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"train.precision: unknown {precision!r}; choose from {list(PRECISIONS)}")


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_name(step: int) -> str:
    return f"resume{step:06d}.pt"


def latest_resumable(cache: Path, digest: str, at_most: int | None = None) -> dict[str, Any] | None:
    """The newest readable resume state written for this exact spec (at step ``at_most`` or before), or None."""
    for path in sorted(cache.glob("resume*.pt"), reverse=True):
        if at_most is not None and int(path.stem[6:]) > at_most:
            continue
        try:
            payload = snapshots.read(path)
        except snapshots.SnapshotError:
            continue
        if payload.get("digest") == digest and not payload.get("diverged"):
            return payload
    return None


def save_resume(cache: Path, payload: dict[str, Any], drop_older: bool = True) -> None:
    """Write the resume state at ``payload["step"]``; then, with ``drop_older``, remove the older ones."""
    step = int(payload["step"])
    snapshots.save(cache / resume_name(step), payload)
    if drop_older:
        for path in cache.glob("resume*.pt"):
            if int(path.stem[6:]) < step:
                path.unlink(missing_ok=True)


def stored_steps(spec: Mapping[str, Any]) -> list[int]:
    """The steps whose weights a run keeps as snapshot files: ``weights`` when the spec has it, else every one."""
    return sorted(int(s) for s in spec.get("weights", spec["snapshots"]))


def check_disk_space(folder: Path, models: Sequence[torch.nn.Module], steps: int, what: str) -> None:
    """Fail before training when the snapshots of ``models`` at ``steps`` steps (plus a final snapshot and two
    resume states, each with the optimizer's two moments) would not fit on the disk that holds ``folder``."""
    weights = sum(t.numel() * t.element_size() for model in models for t in model.state_dict().values())
    needed = weights * (steps + 3 * 3)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise RuntimeError(
            f"{what}: its snapshots need about {needed / 1e9:.1f} GB and {folder} has {free / 1e9:.1f} GB free "
            "(snapshots.weights: analysed keeps only the steps its analyses read; docs/config.md)"
        )


class RunPaths(NamedTuple):
    """Where one run's training outputs go (rule train's outputs)."""

    snapshots: Path
    history: Path
    run_json: Path

    @property
    def cache(self) -> Path:
        """The resume cache beside the snapshots (see the module docstring)."""
        return Path(self.snapshots).parent / ".train-resume"


def training_rows(data: datasets.Dataset, train_spec: Mapping[str, Any], device: torch.device) -> torch.Tensor:
    """The rows of the training split that the run trains on, as a tensor on ``device``."""
    return torch.as_tensor(training_indices(data.train_y.cpu().numpy(), train_spec), device=device)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def history_row(measured: Mapping[str, float], step: int, n: int, batch_size: int, started: float) -> dict[str, Any]:
    return {
        "step": step,
        "epoch": step / batches_per_epoch(n, batch_size),
        **measured,
        "wall_time": time.time() - started,
    }


def is_finite_row(row: Mapping[str, float]) -> bool:
    """A snapshot whose training loss or weight norm is not finite marks the run as diverged."""
    return math.isfinite(row["train_loss"]) and math.isfinite(row["weight_norm"])


def finish_run(
    spec: Mapping[str, Any],
    paths: RunPaths,
    history: list[dict[str, Any]],
    diverged_at: int | None,
    *,
    started: float,
    n_train: int,
    device: torch.device,
    resumed_from: int | None,
    log: Callable[[str], None],
    **extra: Any,
) -> dict[str, Any]:
    """Move the cached snapshots into place (divergence markers from ``diverged_at`` on), write history.csv and
    run.json, drop the resume cache and log a one-line summary; returns the run record."""
    snapshot_dir = Path(paths.snapshots)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    for step in stored_steps(spec):
        final = snapshot_dir / snapshots.snapshot_name(step)
        final.unlink(missing_ok=True)
        if diverged_at is not None and step >= diverged_at:
            snapshots.save_divergence_marker(final, step, diverged_at, dict(spec))
        else:
            os.link(paths.cache / snapshots.snapshot_name(step), final)

    status = "diverged" if diverged_at is not None else "completed"
    record_json = write_run(
        paths.history,
        paths.run_json,
        history,
        spec,
        started=started,
        n_train=n_train,
        device=device_name(device),
        status=status,
        diverged_at=diverged_at,
        resumed_from=resumed_from,
        **extra,
    )
    shutil.rmtree(paths.cache, ignore_errors=True)
    last = history[-1] if history else {}
    log(
        f"{spec['run']}: {status}"
        + (f" at step {diverged_at}" if diverged_at is not None else "")
        + f", {len(history)} snapshots, final train_acc={last.get('train_acc', math.nan):.4f}"
        f" test_acc={last.get('test_acc', math.nan):.4f}, {record_json['wall_time_s']:.1f} s"
    )
    return record_json


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` for a block and restored after it: a library call must not change
    its caller's setting (the caller's later matmuls would round differently)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
    """Train the run described by the resolved ``spec`` on ``threads`` torch threads and write its snapshots, history
    and run record.

    ``spec`` holds ``run``, ``model``, ``train`` and ``snapshots`` (the sorted list of steps, ending with
    the last step). Returns the run record written to ``run_json_path``.
    """
    with torch_threads(threads):
        return _train_run(spec, data_path, snapshot_dir, history_path, run_json_path, log=log)


def _train_run(
    spec: Mapping[str, Any],
    data_path: str | os.PathLike,
    snapshot_dir: str | os.PathLike,
    history_path: str | os.PathLike,
    run_json_path: str | os.PathLike,
    *,
    log: Callable[[str], None],
) -> dict[str, Any]:
    started = time.time()
    train_spec = spec["train"]
    schedule = sorted(int(s) for s in spec["snapshots"])
    total = schedule[-1]
    digest = spec_digest(spec)
    paths = RunPaths(Path(snapshot_dir), Path(history_path), Path(run_json_path))
    cache = paths.cache
    cache.mkdir(parents=True, exist_ok=True)

    device = resolve_device(train_spec["device"])
    dtype = getattr(torch, train_spec["dtype"])
    precision = forward_precision(train_spec.get("precision", "fp32"), device)
    data = datasets.load(data_path, device=device, dtype=dtype)
    subset = training_rows(data, train_spec, device)
    x_train, y_train = data.train_x[subset], data.train_y[subset]
    n, batch_size, seed = len(y_train), int(train_spec["batch_size"]), int(train_spec["seed"])

    model = build(spec["model"], generator_seed=seed).to(device=device, dtype=dtype)
    optimizer = make_optimizer(model.parameters(), train_spec)
    history: list[dict[str, Any]] = []
    start = 0
    resumed = latest_resumable(cache, digest)
    if resumed is not None:
        model.load_state_dict(resumed["state_dict"])
        optimizer.load_state_dict(resumed["optimizer"])
        _set_rng_state(resumed["rng"])
        history = [row for row in resumed["history"]]
        start = int(resumed["step"])
        log(f"resuming {spec['run']} from its resume state at step {start}")

    stored = set(stored_steps(spec))
    if resumed is None:
        check_disk_space(cache, [model], len(stored), f"run {spec['run']}")
    last_resume = time.monotonic()

    def snapshot(step: int) -> bool:
        """Evaluate the model at ``step``, save its snapshot where its weights are kept and, when due, a resume
        state; False when the model has diverged."""
        nonlocal last_resume
        measured = snapshot_metrics(
            model, (x_train, y_train), (data.test_x, data.test_y), train_spec["loss"], batch_size, seed
        )
        row = history_row(measured, step, n, batch_size, started)
        if not is_finite_row(row):
            return False
        history.append(row)
        state = {
            "step": step,
            "spec": dict(spec),
            "digest": digest,
            "state_dict": model.state_dict(),
            "history": history,
        }
        resume = {"optimizer": optimizer.state_dict(), "rng": rng_state()}
        if step in stored:
            snapshots.save(cache / snapshots.snapshot_name(step), {**state, **(resume if step == total else {})})
        if 0 < step < total and time.monotonic() - last_resume >= RESUME_EVERY_S:
            save_resume(cache, {**state, **resume})
            last_resume = time.monotonic()
        progress.set_postfix(train_acc=f"{row['train_acc']:.3f}", test_acc=f"{row['test_acc']:.3f}")
        return True

    diverged_at = None
    scheduled = set(schedule)
    sample = batch_sampler(n, batch_size, seed, device)
    progress = tqdm(total=total, initial=start, desc=spec["run"], file=sys.stderr, mininterval=2.0, unit="step")
    if resumed is None and not snapshot(0):
        diverged_at = 0
    step = start
    # The step at which the loss first stopped being finite, recorded on the device: the loop reads it back (a host
    # sync) only at snapshots and every DIVERGENCE_CHECK steps, so a GPU is never waiting on the CPU in between.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    while diverged_at is None and step < total:
        index = sample(step)
        model.train()
        with precision:
            loss = loss_value(model(x_train[index]), y_train[index], train_spec["loss"])
        first_bad = torch.where(~torch.isfinite(loss) & (first_bad < 0), step, first_bad)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer_step(optimizer)
        step += 1
        progress.update(1)
        if step in scheduled or step % DIVERGENCE_CHECK == 0:
            if int(first_bad) >= 0:
                diverged_at = int(first_bad)
            elif step in scheduled and not snapshot(step):
                diverged_at = step
    progress.close()
    return finish_run(
        spec,
        paths,
        history,
        diverged_at,
        started=started,
        n_train=n,
        device=device,
        resumed_from=start if resumed is not None else None,
        log=log,
    )
