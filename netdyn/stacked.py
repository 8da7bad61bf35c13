"""Stacked-run training: the runs of one group train together, in lockstep, in one process (docs/design.md
"Stacked training"; issue 12 section 1).

A group's members share the layer sizes, activation, BatchNorm, the presence of Dropout, the loss, optimizer,
batch size, snapshot schedule, dtype, device and precision (:func:`netdyn.config.stack_key`). Each keeps its own
seed (initial weights, dropout masks, batch order), learning rate, momentum, weight decay, dropout rate, init,
``alpha`` and training subset. Every parameter and BatchNorm buffer is stacked along a leading member axis; a
layer is one batched matmul and one BatchNorm over ``members x width`` channels, so R runs pay one run's Python
and kernel-launch overhead per step.

The arithmetic is the single run's wherever it can be: the same initialization (each member's model is built
exactly as :func:`netdyn.train.train_run` builds it), the same BatchNorm and fused-optimizer kernels (each member
keeps its own ``torch.optim`` optimizer over views of the stacked tensors), the same batches
(:func:`netdyn.train.batch_sampler`) and, on the CPU, the same dropout masks (each member draws them from a
generator holding what the global generator would hold in a run of its own). What differs is the matmul's
blocking, so members agree with their runs trained alone within float rounding (tests/test_stacked.py: relative
1e-4 on every parameter after 200 steps). On CUDA the dropout masks come from per-member generators and differ
from a lone run's.

Each member writes exactly what a lone run writes (snapshots, history.csv, run.json, the resume cache), with its
snapshots' optimizer and RNG states in the lone run's format. A member whose loss stops being finite is recorded
on the device without a host sync, found at the next snapshot, and stops alone: its snapshots from the
divergence on are markers, as a lone run's are, while the others go on. A killed group resumes from the newest
snapshot step that every member has cached.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from netdyn import data as datasets
from netdyn import snapshots
from netdyn import train as training
from netdyn.config import stack_key
from netdyn.devices import resolve_device
from netdyn.evaluate import snapshot_metrics
from netdyn.layers import ACTIVATIONS
from netdyn.models import build
from netdyn.train import (
    DIVERGENCE_CHECK,
    RunPaths,
    batch_sampler,
    check_disk_space,
    finish_run,
    forward_precision,
    history_row,
    is_finite_row,
    latest_resumable,
    make_optimizer,
    optimizer_step,
    save_resume,
    spec_digest,
    stored_steps,
    torch_threads,
    training_rows,
)


def stacked_state(models: Sequence[nn.Module]) -> dict[str, torch.Tensor]:
    """Every entry of the members' state dicts stacked along a new leading axis; parameters require grad."""
    names = list(models[0].state_dict())
    parameters = {name for name, _ in models[0].named_parameters()}
    state = {}
    for name in names:
        stacked = torch.stack([model.state_dict()[name] for model in models]).contiguous()
        state[name] = stacked.requires_grad_(name in parameters)
    return state


def _member_state(state: Mapping[str, torch.Tensor], member: int) -> dict[str, torch.Tensor]:
    return {name: tensor.detach()[member] for name, tensor in state.items()}


def stacked_forward(
    model: nn.Sequential,
    state: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    dropout_masks: Callable[[int, tuple[int, ...]], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits ``[R, B, classes]`` of the R stacked members on their batches ``x`` ``[R, B, inputs]``, in train mode.

    ``model`` is one member's network (its layer types and BatchNorm settings); ``state`` the stacked state
    (:func:`stacked_state`), whose BatchNorm running statistics are updated in place as ``nn.BatchNorm1d`` does.
    ``dropout_masks(index, shape)`` gives the scaled keep-masks ``[R, B, width]`` of the Dropout at ``index``.
    """
    h = x
    for index, module in enumerate(model):
        prefix = f"{index}."
        if isinstance(module, nn.Linear):
            bias = state[prefix + "bias"].unsqueeze(1)
            h = torch.baddbmm(bias, h, state[prefix + "weight"].transpose(1, 2))
        elif isinstance(module, nn.BatchNorm1d):
            members, batch, width = h.shape
            # One BatchNorm over members x width channels is each member's own BatchNorm, with the native kernel.
            channels = h.transpose(0, 1).reshape(batch, members * width)
            state[prefix + "num_batches_tracked"].add_(1)
            momentum = module.momentum
            if momentum is None:  # cumulative moving average, as nn.BatchNorm1d
                momentum = 1.0 / float(state[prefix + "num_batches_tracked"][0])
            normalized = F.batch_norm(
                channels,
                state[prefix + "running_mean"].view(-1),
                state[prefix + "running_var"].view(-1),
                state[prefix + "weight"].view(-1),
                state[prefix + "bias"].view(-1),
                training=True,
                momentum=momentum,
                eps=module.eps,
            )
            h = normalized.reshape(batch, members, width).transpose(0, 1)
        elif isinstance(module, nn.Dropout):
            if dropout_masks is not None:
                h = h * dropout_masks(index, tuple(h.shape))
        elif isinstance(module, tuple(ACTIVATIONS.values())):
            h = module(h)
        else:
            raise TypeError(f"stacked training does not support {type(module).__name__} (layer {index})")
    return h


def stacked_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str) -> torch.Tensor:
    """Each member's mean loss over its batch, ``[R]`` (netdyn.evaluate.loss_value per member)."""
    members, batch, classes = logits.shape
    if loss == "ce":
        per_sample = F.cross_entropy(logits.reshape(-1, classes), labels.reshape(-1), reduction="none")
        return per_sample.view(members, batch).mean(dim=1)
    if loss == "mse":
        target = F.one_hot(labels, classes).to(logits.dtype)
        return ((logits - target) ** 2).mean(dim=2).mean(dim=1)
    raise ValueError(f"unknown loss {loss!r}")


class _Member:
    """One run of the group: its spec, outputs, its own network (initialization, evaluation, the state-dict format),
    its optimizer over views of the stacked tensors, its dropout generator, training rows and history."""

    def __init__(self, spec: Mapping[str, Any], paths: RunPaths, device: torch.device, dtype: torch.dtype) -> None:
        self.spec, self.paths = spec, paths
        self.train = spec["train"]
        self.seed = int(self.train["seed"])
        self.digest = spec_digest(spec)
        self.model = build(spec["model"], generator_seed=self.seed).to(device=device, dtype=dtype)
        # What the global generator holds after a lone run's build: that run's dropout masks come from it.
        self.generator = torch.Generator().manual_seed(0)
        self.generator.set_state(torch.get_rng_state())
        self.dropout = float(spec["model"].get("dropout") or 0.0)
        self.history: list[dict[str, Any]] = []
        self.diverged_at: int | None = None
        self.stored: set[int] = set()  # the steps whose weights it keeps (netdyn.train.stored_steps)
        self.optimizer: torch.optim.Optimizer | None = None
        self.views: list[torch.Tensor] = []

    def bind(self, state: Mapping[str, torch.Tensor], member: int) -> None:
        """Give the member an optimizer over its slices of the stacked parameters and their gradients."""
        parameters = [name for name, _ in self.model.named_parameters()]
        self.views = [state[name].detach()[member] for name in parameters]
        for view, name in zip(self.views, parameters, strict=True):
            view.grad = state[name].grad[member]
        self.optimizer = make_optimizer(self.views, self.train)

    def state_dict(self, state: Mapping[str, torch.Tensor], member: int) -> dict[str, torch.Tensor]:
        self.model.load_state_dict(_member_state(state, member))
        return self.model.state_dict()


def train_group(
    specs: Sequence[Mapping[str, Any]],
    data_path: str | Path,
    outputs: Sequence[RunPaths],
    *,
    threads: int = 1,
    name: str = "stack",
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train the runs ``specs`` (one stack group) together on ``threads`` torch threads and write each one's
    snapshots, history and run record to its ``outputs``; returns the run records."""
    with torch_threads(threads):
        return _train_group(specs, data_path, outputs, name=name, log=log)


def _train_group(
    specs: Sequence[Mapping[str, Any]],
    data_path: str | Path,
    outputs: Sequence[RunPaths],
    *,
    name: str,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    if len(specs) != len(outputs):
        raise ValueError(f"{len(specs)} specs but {len(outputs)} output sets")
    started = time.time()
    if len({stack_key(spec) for spec in specs}) != 1:
        raise ValueError(f"stack {name}: its runs differ in what a group must share (netdyn.config.stack_key)")
    first = specs[0]["train"]
    schedule = sorted(int(s) for s in specs[0]["snapshots"])
    for spec in specs:
        if sorted(int(s) for s in spec["snapshots"]) != schedule:
            raise ValueError(f"run {spec['run']}: its snapshot schedule differs from {specs[0]['run']}'s")
    total, batch_size, loss_name = schedule[-1], int(first["batch_size"]), first["loss"]
    device = resolve_device(first["device"])
    dtype = getattr(torch, first["dtype"])
    precision = forward_precision(first.get("precision", "fp32"), device)
    data = datasets.load(data_path, device=device, dtype=dtype)

    members = [
        _Member(spec, RunPaths(*map(Path, paths)), device, dtype) for spec, paths in zip(specs, outputs, strict=True)
    ]
    rows = [training_rows(data, member.train, device) for member in members]
    state = stacked_state([member.model for member in members])
    for tensor in state.values():
        if tensor.requires_grad:
            tensor.grad = torch.zeros_like(tensor)
    for index, member in enumerate(members):
        member.paths.cache.mkdir(parents=True, exist_ok=True)
        member.bind(state, index)

    resumed_at = _resume(members, state, log)
    start = resumed_at or 0
    samplers = [
        batch_sampler(len(rows[i]), batch_size, member.seed, device, rows=rows[i]) for i, member in enumerate(members)
    ]
    use_dropout = any(member.dropout > 0 for member in members)
    dropouts = torch.tensor([member.dropout for member in members], dtype=dtype, device=device)

    def dropout_masks(index: int, shape: tuple[int, ...]) -> torch.Tensor:
        if device.type == "cpu":
            # The lone run's F.dropout on the CPU: bernoulli(1 - p) from the global generator, scaled by 1 / (1 - p).
            keep = [
                torch.empty(shape[1:], dtype=dtype).bernoulli_(1 - m.dropout, generator=m.generator) for m in members
            ]
            return torch.stack(keep).div_((1 - dropouts).view(-1, 1, 1))
        keep = torch.rand(shape, dtype=dtype, device=device) >= dropouts.view(-1, 1, 1)
        return keep.to(dtype).div_((1 - dropouts).view(-1, 1, 1))

    first_bad = torch.full((len(members),), -1, dtype=torch.long, device=device)

    stored = [set(stored_steps(member.spec)) for member in members]
    for member, steps in zip(members, stored, strict=True):
        member.stored = steps
    if resumed_at is None:
        check_disk_space(members[0].paths.cache, [m.model for m in members], max(map(len, stored)), f"stack {name}")
    last_resume = [time.monotonic()]

    def snapshot(step: int) -> None:
        """Evaluate every live member at ``step`` and cache its snapshot where its weights are kept and, when due, its
        resume state, after marking the members that diverged."""
        bad = first_bad.tolist()  # a host sync, as at every DIVERGENCE_CHECK steps; none in between
        resume_due = 0 < step < total and time.monotonic() - last_resume[0] >= training.RESUME_EVERY_S
        all_live = all(m.diverged_at is None and b < 0 for m, b in zip(members, bad, strict=True))
        for index, member in enumerate(members):
            if member.diverged_at is not None:
                continue
            if bad[index] >= 0:
                member.diverged_at = bad[index]
                continue
            model_state = member.state_dict(state, index)
            subset = rows[index]
            measured = snapshot_metrics(
                member.model,
                (data.train_x[subset], data.train_y[subset]),
                (data.test_x, data.test_y),
                loss_name,
                batch_size,
                member.seed,
            )
            row = history_row(measured, step, len(subset), batch_size, started)
            if not is_finite_row(row):
                member.diverged_at = step
                continue
            member.history.append(row)
            saved = {
                "step": step,
                "spec": dict(member.spec),
                "digest": member.digest,
                "state_dict": model_state,
                "history": member.history,
            }
            resume = {"optimizer": member.optimizer.state_dict(), "rng": member_rng_state(member)}
            if step in member.stored:
                snapshots.save(
                    member.paths.cache / snapshots.snapshot_name(step), {**saved, **(resume if step == total else {})}
                )
            if resume_due:
                # A member that diverged keeps its older resume states: the group resumes at a step all share.
                save_resume(member.paths.cache, {**saved, **resume}, drop_older=all_live)
        if resume_due:
            last_resume[0] = time.monotonic()

    scheduled = set(schedule)
    labels = data.train_y
    progress = tqdm(total=total, initial=start, desc=name, file=sys.stderr, mininterval=2.0, unit="step")
    if resumed_at is None:  # a group resumed at step 0 already holds that snapshot's history row
        snapshot(0)
    step = start
    while step < total and any(member.diverged_at is None for member in members):
        index = torch.stack([sample(step) for sample in samplers])
        with precision:
            logits = stacked_forward(
                members[0].model, state, data.train_x[index], dropout_masks if use_dropout else None
            )
            losses = stacked_loss(logits, labels[index], loss_name)
        first_bad = torch.where(~torch.isfinite(losses) & (first_bad < 0), step, first_bad)
        for tensor in state.values():
            if tensor.grad is not None:
                tensor.grad.zero_()
        losses.sum().backward()
        for member in members:
            optimizer_step(member.optimizer)
        step += 1
        progress.update(1)
        if step % DIVERGENCE_CHECK == 0 and step not in scheduled and bool((first_bad >= 0).all()):
            for index, member in enumerate(members):  # every member has diverged: nothing left to train
                if member.diverged_at is None:
                    member.diverged_at = int(first_bad[index])
        if step in scheduled:
            snapshot(step)
            live = [m for m in members if m.diverged_at is None and m.history]
            if live:
                accuracy = sum(m.history[-1]["train_acc"] for m in live) / len(live)
                progress.set_postfix(live=f"{len(live)}/{len(members)}", mean_train_acc=f"{accuracy:.3f}")
    progress.close()

    return [
        finish_run(
            member.spec,
            member.paths,
            member.history,
            member.diverged_at,
            started=started,
            n_train=len(rows[index]),
            device=device,
            resumed_from=resumed_at,
            log=log,
            stack={"group": name, "members": [m.spec["run"] for m in members]},
        )
        for index, member in enumerate(members)
    ]


def member_rng_state(member: _Member) -> dict[str, Any]:
    """A member's RNG state as a lone run's snapshot holds it: its dropout generator, and on CUDA the device's."""
    state = {"torch": member.generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _resume(members: Sequence[_Member], state: Mapping[str, torch.Tensor], log) -> int | None:
    """Load every member's cached snapshot at the newest step they all have; returns that step (None: a fresh start).
    A member that diverged early caches only its first snapshots, so the group may resume at step 0."""
    at_most: int | None = None
    while True:
        payloads = [latest_resumable(member.paths.cache, member.digest, at_most) for member in members]
        if any(payload is None for payload in payloads):
            return None
        steps = [int(payload["step"]) for payload in payloads]
        if len(set(steps)) == 1:
            break
        at_most = min(steps)
    with torch.no_grad():
        for index, (member, payload) in enumerate(zip(members, payloads, strict=True)):
            for name, value in payload["state_dict"].items():
                state[name][index].copy_(value)
            member.optimizer.load_state_dict(payload["optimizer"])
            # load_state_dict replaces the state tensors; the views (and their gradients) stay the optimizer's params.
            member.generator.set_state(payload["rng"]["torch"])
            if "cuda" in payload["rng"] and torch.cuda.is_available():  # the GPU's dropout masks (one stream)
                torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
            member.history = list(payload["history"])
    log(f"resuming {len(members)} stacked runs from their snapshots at step {steps[0]}")
    return steps[0]
