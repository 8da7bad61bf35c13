"""BatchNorm evaluation modes (methods.md §11.2) against hand-built references."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from netdyn.evaluate import (
    accuracy_bn_batch_stats,
    accuracy_bn_train_mode,
    bn_train_mode_forward,
    evaluate,
    loss_value,
    snapshot_metrics,
)
from netdyn.models import build
from netdyn.records import SNAPSHOT_METRICS


def bn_model():
    torch.manual_seed(0)
    model = build({"depth": 2, "width": 16, "batchnorm": True, "dropout": 0.5, "input_size": 8, "classes": 3})
    model.train()
    for _ in range(3):
        model(torch.randn(32, 8) * 3 + 1)  # running statistics far from any later batch's
    return model.eval()


def test_train_mode_forward_normalizes_each_shuffled_batch_by_itself_and_leaves_buffers_alone():
    model = bn_model()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(40, 8)
    hidden, logits = bn_train_mode_forward(model, x, batch_size=10, seed=3)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    reference = copy.deepcopy(model)
    reference.train()
    for module in reference.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()  # dropout stays off
    with torch.no_grad():
        for start in range(0, 40, 10):
            index = order[start : start + 10]
            torch.testing.assert_close(logits[index], reference(x[index]))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
    assert hidden.shape == (40, 16)
    y = logits.argmax(1)
    assert accuracy_bn_train_mode(model, x, y, 10, seed=3) == 1.0


@pytest.mark.parametrize(("count", "sizes"), [(45, [10, 10, 10, 10, 5]), (41, [10, 10, 10, 11])])
def test_uneven_batches_match_a_train_mode_forward_of_each(count, sizes):
    """A partial last batch is normalized by its own statistics; a last batch of one joins the previous one."""
    model = bn_model()
    x = torch.randn(count, 8)
    _, logits = bn_train_mode_forward(model, x, batch_size=10, seed=1)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(1))
    reference = copy.deepcopy(model).train()
    for module in reference.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    start = 0
    with torch.no_grad():
        for size in sizes:
            index = order[start : start + size]
            torch.testing.assert_close(logits[index], reference(x[index]))
            start += size


def test_a_trailing_batch_of_one_is_merged_so_batchnorm_can_normalize_it():
    model = bn_model()
    _, logits = bn_train_mode_forward(model, torch.randn(21, 8), batch_size=10)
    assert torch.isfinite(logits).all()


def test_literal_alpha_zero_reading_uses_the_batch_statistics_as_running_statistics():
    model = bn_model()
    batch, x = torch.randn(32, 8), torch.randn(50, 8)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        h = batch
        for module in reference:
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.copy_(h.mean(0))
                module.running_var.copy_(h.var(0, unbiased=True))
                # the batch itself is normalized by its biased variance, as in a train-mode pass
                h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + module.eps) * module.weight + module.bias
            elif not isinstance(module, torch.nn.Dropout):
                h = module(h)
        y = reference(x).argmax(1)
    assert accuracy_bn_batch_stats(model, batch, x, y) == 1.0
    assert not torch.equal(model.state_dict()["1.running_mean"], reference.state_dict()["1.running_mean"])


def test_evaluate_and_losses_match_direct_computation():
    model = build({"depth": 1, "width": 5, "input_size": 4, "classes": 3}).eval()
    x, y = torch.randn(7, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    loss, accuracy = evaluate(model, x, y, "ce", batch_size=3)
    logits = model(x)
    torch.testing.assert_close(torch.tensor(loss), torch.nn.functional.cross_entropy(logits, y))
    assert accuracy == int((logits.argmax(1) == y).sum()) / 7
    mse = loss_value(logits, y, "mse")
    torch.testing.assert_close(mse, ((logits - torch.eye(3)[y]) ** 2).mean())


def test_snapshot_metrics_read_train_mode_batchnorm_on_both_splits_and_leave_the_model_unchanged():
    model = bn_model()
    before = copy.deepcopy(model.state_dict())
    x_train, x_test = torch.randn(40, 8), torch.randn(30, 8)
    y_train, y_test = torch.randint(0, 3, (40,)), torch.randint(0, 3, (30,))
    row = snapshot_metrics(model, (x_train, y_train), (x_test, y_test), "ce", batch_size=10, seed=3)
    assert tuple(row) == SNAPSHOT_METRICS
    _, logits = bn_train_mode_forward(model, x_train, batch_size=10, seed=3)
    torch.testing.assert_close(
        torch.tensor(row["train_loss_bntrain"]), torch.nn.functional.cross_entropy(logits, y_train)
    )
    assert row["train_acc_bntrain"] == float((logits.argmax(1) == y_train).double().mean())
    assert row["test_acc_bntrain"] == accuracy_bn_train_mode(model, x_test, y_test, 10, seed=3)
    # The running statistics were made far from these batches': eval mode and train mode must disagree.
    assert row["train_loss_bntrain"] != row["train_loss"]
    assert (row["train_loss"], row["train_acc"]) == evaluate(model, x_train, y_train, "ce")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_snapshot_metrics_without_batchnorm_leave_the_train_mode_readings_empty():
    model = build({"depth": 1, "width": 5, "input_size": 4, "classes": 3}).eval()
    data = (torch.randn(7, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0]))
    row = snapshot_metrics(model, data, data, "ce", batch_size=4)
    assert all(math.isnan(row[k]) for k in ("train_loss_bntrain", "train_acc_bntrain", "test_acc_bntrain"))
    squares = sum(float((p.detach() ** 2).sum()) for p in model.parameters())
    assert row["weight_norm"] == pytest.approx(math.sqrt(squares))
