"""Curvature of the training loss: the Hessian's top eigenvalues (Lanczos) and its trace (Hutchinson), from
Hessian-vector products, never the Hessian itself (docs/methods.md §23).

A Hessian-vector product is a second backward pass through the gradient (``create_graph=True``); a block of M
probes is one batched backward (``torch.autograd.grad(..., is_grads_batched=True)``, a vmap over the probes), so
Hutchinson's probes and the trace's standard error come in blocks. The loss is a closure over a fixed batch, so
the same operator serves a model (:func:`model_loss`: eval-mode BatchNorm by default, as PyHessian forces; train
mode normalises with the batch's own statistics and leaves the running buffers as they were) and any function of
parameters (the quadratic models of the tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from netdyn.evaluate import eval_mode, loss_value


class HessianOperator(NamedTuple):
    """``apply(V)``: H V for a block of probes ``V`` [M, P] (flattened parameters); P, and the probes' dtype and
    device."""

    apply: Callable[[torch.Tensor], torch.Tensor]
    dim: int
    dtype: torch.dtype
    device: torch.device


def hessian_operator(loss: Callable[[], torch.Tensor], parameters: Sequence[torch.Tensor]) -> HessianOperator:
    """The Hessian of ``loss()`` with respect to ``parameters`` as a batched operator (the gradient graph is built
    once and kept for every product)."""
    parameters = list(parameters)
    gradients = torch.autograd.grad(loss(), parameters, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in gradients])

    def one(probe: torch.Tensor) -> torch.Tensor:
        products = torch.autograd.grad(flat, parameters, grad_outputs=probe, retain_graph=True)
        return torch.cat([p.reshape(-1) for p in products])

    def apply(probes: torch.Tensor) -> torch.Tensor:
        if probes.dim() == 1:
            return one(probes).detach()
        if probes.shape[0] == 1 or not batched[0]:
            return torch.stack([one(probe) for probe in probes]).detach()
        try:
            products = torch.autograd.grad(
                flat, parameters, grad_outputs=probes, retain_graph=True, is_grads_batched=True
            )
        except RuntimeError:  # an op without a batching rule for its double backward: one probe at a time
            batched[0] = False
            return apply(probes)
        return torch.cat([p.reshape(probes.shape[0], -1) for p in products], dim=1).detach()

    batched = [True]
    return HessianOperator(apply, flat.numel(), flat.dtype, flat.device)


def model_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, bn_train_mode: bool = False):
    """The closure ``() -> loss`` of ``model`` on the whole batch (``x``, ``y``): eval mode, or with BatchNorm
    normalising by the batch's own statistics (``bn_train_mode``; Dropout stays off, the running buffers are neither
    read nor written)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def closure() -> torch.Tensor:
        with eval_mode(model):
            if not bn_train_mode:
                return loss_value(model(x), y, loss)
            tracking = [module.track_running_stats for module in norms]
            try:
                for module in norms:  # batch statistics, and no running-buffer update for the graph to depend on
                    module.train()
                    module.track_running_stats = False
                return loss_value(model(x), y, loss)
            finally:
                for module, tracked in zip(norms, tracking, strict=True):
                    module.track_running_stats = tracked

    return closure


class Eigenvalues(NamedTuple):
    values: list[float]  # the top-k eigenvalues, largest first
    iterations: int  # Hessian-vector products used
    change: float  # largest relative change of the top k values over the last iteration
    converged: bool


def top_eigenvalues(
    operator: HessianOperator, k: int = 1, max_iter: int = 100, tol: float = 1e-4, seed: int = 0
) -> Eigenvalues:
    """The ``k`` largest (algebraic) eigenvalues by Lanczos with full reorthogonalisation, stopped when each of the
    top ``k`` Ritz values changes by less than ``tol`` (relative to the top one) from one iteration to the next, or
    after ``max_iter``."""
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(operator.dim, generator=generator, dtype=torch.float64).to(operator.device, operator.dtype)
    basis = [q / q.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    previous: list[float] = []
    change, ritz = math.inf, [0.0]
    for iteration in range(1, min(max_iter, operator.dim) + 1):
        w = operator.apply(basis[-1])
        alpha = float(torch.dot(w, basis[-1]))
        alphas.append(alpha)
        stacked = torch.stack(basis)
        w = w - stacked.T @ (stacked @ w)  # full reorthogonalisation (twice is enough in float arithmetic)
        w = w - stacked.T @ (stacked @ w)
        tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
        ritz = sorted(torch.linalg.eigvalsh(tridiagonal).tolist(), reverse=True)
        if len(previous) >= k:
            change = max(abs(a - b) for a, b in zip(ritz[:k], previous[:k], strict=True)) / max(abs(ritz[0]), 1e-30)
        previous = ritz
        beta = float(w.norm())
        if (iteration >= k and change < tol) or beta < 1e-10 * max(abs(ritz[0]), 1e-30):
            return Eigenvalues(ritz[:k], iteration, change, True)
        betas.append(beta)
        basis.append(w / beta)
    return Eigenvalues(ritz[:k], len(alphas), change, change < tol)


class Trace(NamedTuple):
    trace: float
    stderr: float  # standard error of the mean over probes
    probes: int


def hutchinson_trace(
    operator: HessianOperator, probes: int = 200, block: int = 20, tol: float = 0.01, seed: int = 0
) -> Trace:
    """tr H ~ mean of v^T H v over Rademacher probes v, drawn in blocks of ``block`` (one batched product each),
    stopped once the standard error is below ``tol`` of |trace| (after two blocks) or ``probes`` are used."""
    generator = torch.Generator().manual_seed(seed)
    samples: list[torch.Tensor] = []
    used = 0
    while used < probes:
        size = min(block, probes - used)
        signs = torch.randint(0, 2, (size, operator.dim), generator=generator).to(operator.device, operator.dtype)
        signs = signs * 2 - 1
        samples.append((signs * operator.apply(signs)).sum(dim=1).double().cpu())
        used += size
        values = torch.cat(samples)
        if len(samples) >= 2 and float(values.std(unbiased=True)) / math.sqrt(used) <= tol * abs(float(values.mean())):
            break
    stderr = float(values.std(unbiased=True)) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return Trace(float(values.mean()), stderr, len(values))
