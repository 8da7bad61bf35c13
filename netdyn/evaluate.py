"""Losses and accuracies of a model on whole tensors, in eval mode and with BatchNorm in train mode.

BatchNorm "train mode during the test phase" follows methods.md §11.2: the primary reading normalizes each
test mini-batch (training batch size, shuffled) with its own statistics while the running buffers stay
frozen and Dropout stays off; the literal reading (alpha = 0) replaces the running statistics by those of
one given training mini-batch and then evaluates in eval mode.

:func:`snapshot_metrics` is the one place that computes a history row's measurements (trained and imported
runs alike): eval-mode loss and accuracy on the training and test sets, the same with BatchNorm in train mode
(§11.1: in a deep BN net eval-mode train and test accuracy lag together while the running statistics catch
up, so the paper's "train accuracy climbs while test accuracy sits at chance" is the train-mode train
accuracy beside the eval-mode test accuracy), and the weight norm.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("ce", "mse")


def loss_value(logits: torch.Tensor, labels: torch.Tensor, loss: str, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on logits, or MSE against one-hot targets (the Omnigrok loss, methods.md §12)."""
    if loss == "ce":
        return F.cross_entropy(logits, labels, reduction=reduction)
    if loss == "mse":
        target = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        per_sample = ((logits - target) ** 2).mean(dim=1)
        return per_sample.mean() if reduction == "mean" else per_sample.sum()
    raise ValueError(f"unknown loss {loss!r}; choose from {LOSSES}")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore each module's previous mode afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, batch_size: int = 1000
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` in eval mode over ``(x, y)``."""
    total_loss = 0.0
    correct = 0
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size])
            labels = y[start : start + batch_size]
            total_loss += float(loss_value(logits, labels, loss, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
    return total_loss / len(x), correct / len(x)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@contextlib.contextmanager
def frozen_bn_buffers(model: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm buffer (running stats, batch counter) after the block."""
    saved = [
        (m, {k: v.clone() for k, v in m.named_buffers(recurse=False)})
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    try:
        yield
    finally:
        for module, buffers in saved:
            for name, value in buffers.items():
                getattr(module, name).copy_(value)


@torch.no_grad()
def bn_train_mode_forward(
    model: nn.Sequential, x: torch.Tensor, batch_size: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden-layer outputs and logits with BatchNorm normalizing shuffled mini-batches by their own
    statistics (§11.2, primary reading), returned in the order of ``x``. For a module analysed through its layer
    view the outputs are None (only the logits are computed, batch by batch).

    Buffers are left untouched and Dropout stays off. A trailing batch of one sample is merged into the
    previous one, since BatchNorm cannot normalize a single sample. All batches of one size go through the net
    together, as a [batches, size, features] tensor normalized over its second axis: the result is that of
    ``model.train()`` on each batch in turn, in one pass instead of one per batch (a batch of 16 on 60,000 samples
    would otherwise be 3,750 forward passes).
    """
    from netdyn.layers import blocks, is_general

    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
    starts = list(range(0, len(x), batch_size))
    if len(starts) > 1 and len(x) - starts[-1] < 2:
        starts.pop()
    stops = starts[1:] + [len(x)]
    if is_general(model):
        return None, _general_bn_train_logits(model, x, order, starts, stops)
    *hidden_blocks, output = blocks(model)
    flat = x.flatten(1)
    hidden = logits = None
    for size in sorted({stop - start for start, stop in zip(starts, stops, strict=True)}):
        index = torch.stack([order[a:b] for a, b in zip(starts, stops, strict=True) if b - a == size])
        values = flat[index]  # [batches, size, features]
        for block in hidden_blocks:
            values = block.act(_batch_normalized_field(block, values))
        batch_logits = _batch_normalized_field(output, values)
        if hidden is None:
            hidden = torch.empty(len(x), values.shape[-1], dtype=values.dtype, device=x.device)
            logits = torch.empty(len(x), batch_logits.shape[-1], dtype=values.dtype, device=x.device)
        hidden[index.flatten()] = values.reshape(-1, values.shape[-1])
        logits[index.flatten()] = batch_logits.reshape(-1, batch_logits.shape[-1])
    return hidden, logits


def _general_bn_train_logits(model: nn.Module, x: torch.Tensor, order, starts, stops) -> torch.Tensor:
    """Logits of any module with its BatchNorm layers in train mode, batch by batch (Dropout off, buffers restored)."""
    logits = None
    with eval_mode(model), frozen_bn_buffers(model):
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train()
        for start, stop in zip(starts, stops, strict=True):
            index = order[start:stop]
            batch_logits = model(x[index])
            if logits is None:
                logits = torch.empty(len(x), batch_logits.shape[1], dtype=batch_logits.dtype, device=x.device)
            logits[index] = batch_logits
    return logits


def _batch_normalized_field(block, values: torch.Tensor) -> torch.Tensor:
    """The block's Linear on ``values`` [batches, size, features], then its BatchNorm with each batch's own mean and
    biased variance (train mode), as ``nn.BatchNorm1d`` normalizes a batch."""
    field = block.linear(values)
    if block.bn is None:
        return field
    mean = field.mean(dim=1, keepdim=True)
    variance = field.var(dim=1, unbiased=False, keepdim=True)
    field = (field - mean) * torch.rsqrt(variance + block.bn.eps)
    return field * block.bn.weight + block.bn.bias if block.bn.affine else field


def accuracy_bn_train_mode(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0) -> float:
    """Accuracy with BatchNorm in train mode at test time (§11.2, primary reading)."""
    return evaluate_bn_train_mode(model, x, y, "ce", batch_size, seed)[1]


def evaluate_bn_train_mode(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, batch_size: int, seed: int = 0
) -> tuple[float, float]:
    """Mean loss and accuracy with BatchNorm in train mode (§11.2, primary reading; buffers left untouched)."""
    _, logits = bn_train_mode_forward(model, x, batch_size, seed)
    return float(loss_value(logits, y, loss)), float((logits.argmax(1) == y).double().mean())


def weight_norm(model: nn.Module) -> float:
    """L2 norm of all parameters, in float64."""
    return float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.parameters())))


# The measurements of one history row (docs/formats.md "history.csv"), in column order.


def snapshot_metrics(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    loss: str,
    batch_size: int,
    seed: int = 0,
) -> dict[str, float]:
    """Every measurement of a history row (:data:`SNAPSHOT_METRICS`): eval-mode loss and accuracy on ``train``
    and ``test`` (inputs, labels), the train-mode-BatchNorm readings (NaN without BatchNorm) and the weight norm.

    Train-mode readings normalize shuffled mini-batches of ``batch_size`` (the training batch size, seeded by
    ``seed``) with their own statistics; the running buffers are restored afterwards, so recording a snapshot
    never changes the model.
    """
    train_loss, train_acc = evaluate(model, *train, loss)
    test_loss, test_acc = evaluate(model, *test, loss)
    nan = float("nan")
    bn_train = bn_test = (nan, nan)
    if has_batchnorm(model):
        bn_train = evaluate_bn_train_mode(model, *train, loss, batch_size, seed)
        bn_test = evaluate_bn_train_mode(model, *test, loss, batch_size, seed)
    return {
        "train_loss": train_loss,
        "train_acc": train_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "train_loss_bntrain": bn_train[0],
        "train_acc_bntrain": bn_train[1],
        "test_acc_bntrain": bn_test[1],
        "weight_norm": weight_norm(model),
    }


@torch.no_grad()
def accuracy_bn_batch_stats(model: nn.Module, batch: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy in eval mode after setting the running statistics to those of ``batch`` (§11.2, alpha = 0)."""
    with eval_mode(model), frozen_bn_buffers(model):
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        for module in bns:
            module.momentum = 1.0
            module.train()
        model(batch)
        for module, momentum in zip(bns, momenta, strict=True):
            module.momentum = momentum
            module.eval()
        _, accuracy = evaluate(model, x, y, "ce")
    return accuracy
