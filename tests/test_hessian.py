"""Hessian top eigenvalues and trace (netdyn.hessian) against the exact Hessian and known spectra."""

from __future__ import annotations

import pytest
import torch

from netdyn.evaluate import loss_value
from netdyn.hessian import hessian_operator, hutchinson_trace, model_loss, top_eigenvalues
from netdyn.models import build


def quadratic(eigenvalues: torch.Tensor, seed: int = 0):
    """0.5 theta^T A theta with A = Q diag(eigenvalues) Q^T: Hessian A everywhere."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=generator, dtype=torch.float64))
    a = q @ torch.diag(eigenvalues) @ q.T
    theta = torch.randn(len(eigenvalues), generator=generator, dtype=torch.float64, requires_grad=True)
    return hessian_operator(lambda: 0.5 * theta @ a @ theta, [theta])


def test_lanczos_finds_the_top_of_a_known_spectrum_including_negative_eigenvalues():
    spectrum = torch.linspace(-8.0, 5.0, 40, dtype=torch.float64)  # the largest magnitude is negative
    result = top_eigenvalues(quadratic(spectrum), k=3, tol=1e-10, max_iter=60)
    torch.testing.assert_close(
        torch.tensor(result.values, dtype=torch.float64), spectrum[-3:].flip(0), rtol=1e-6, atol=0
    )
    assert result.converged and result.iterations <= 40


def test_hutchinson_is_unbiased_within_its_standard_error():
    spectrum = torch.linspace(0.5, 3.0, 50, dtype=torch.float64)
    result = hutchinson_trace(quadratic(spectrum, seed=1), probes=4000, block=200, tol=0.0, seed=3)
    assert result.probes == 4000
    assert abs(result.trace - float(spectrum.sum())) < 3 * result.stderr
    # Rademacher probes of a diagonal matrix are exact: no variance at all
    theta = torch.ones(5, dtype=torch.float64, requires_grad=True)
    diagonal = hessian_operator(lambda: (torch.arange(1.0, 6.0, dtype=torch.float64) * theta**2).sum(), [theta])
    exact = hutchinson_trace(diagonal, probes=40, block=20)
    assert exact.trace == pytest.approx(30.0) and exact.stderr == pytest.approx(0.0, abs=1e-12)


def full_hessian(model, x, y, bn_train_mode: bool) -> torch.Tensor:
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(vector):
        chunks, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            chunks[name] = vector[start : start + shape.numel()].view(shape)
            start += shape.numel()
        model.eval()
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
        for module in norms:
            module.train(bn_train_mode)
            module.track_running_stats = not bn_train_mode
        try:
            return loss_value(torch.func.functional_call(model, chunks, (x,)), y, "ce")
        finally:
            for module in norms:
                module.track_running_stats = True

    return torch.autograd.functional.hessian(loss_of, flat)


@pytest.mark.parametrize("bn_train_mode", [False, True], ids=["eval", "bn-train"])
def test_a_small_nets_top_eigenvalue_and_trace_match_the_exact_hessian(bn_train_mode):
    model = build({"depth": 2, "width": 8, "input_size": 6, "classes": 3, "batchnorm": True}, generator_seed=0)
    model = model.double()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(50, 6, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (50,), generator=generator)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    exact = torch.linalg.eigvalsh(full_hessian(model, x, y, bn_train_mode))
    operator = hessian_operator(model_loss(model, x, y, "ce", bn_train_mode), list(model.parameters()))
    top = top_eigenvalues(operator, k=2, tol=1e-9, max_iter=200)
    assert top.values[0] == pytest.approx(float(exact[-1]), rel=1e-3)
    trace = hutchinson_trace(operator, probes=2000, block=100, tol=0.0)
    assert abs(trace.trace - float(exact.sum())) < 3 * trace.stderr
    assert all(torch.equal(buffers[k], v) for k, v in model.state_dict().items())  # the model is left as it was
