"""Two-dimensional projection through an SVD bottleneck of the final layer (methods.md §10, Figs. 6–8).

With the final-layer weight ``W`` [C, N] (PyTorch orientation, eval-mode BN folded when the output has one) and its
SVD ``W = U Σ Vᵀ`` (singular values descending), the two-neuron bottleneck inserted before the output layer without
retraining has weights ``W_b = Σ_{1:2} V_{:,1:2}ᵀ`` [2, N] and no bias; the output layer becomes ``U_{:,1:2}`` plus
the original bias, so ``U_{:,1:2} W_b`` is the best rank-2 approximation of W. A sample's coordinates are the
bottleneck's local fields ``(h₁, h₂) = W_b x^{(L−1)}``.

Sign convention (§10): each singular pair is flipped so that the largest-|·| entry of ``V_{:,j}`` is positive (the
first such entry on a tie), and ``U_{:,j}`` is flipped with it, so the axes do not depend on the SVD routine or the
device. The SVD is redone at every checkpoint: the directions are checkpoint-specific. Computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from netdyn.layers import blocks, folded_affine

ArrayLike = torch.Tensor | np.ndarray


class Bottleneck(NamedTuple):
    """``weight`` W_b [2, N], ``readout`` U_{:,1:2} [C, 2] and all singular values of W (descending), float64."""

    weight: torch.Tensor
    readout: torch.Tensor
    singular_values: torch.Tensor


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def output_weight(model: nn.Sequential) -> torch.Tensor:
    """The final layer's weight [C, N_{L−1}] with eval-mode BatchNorm folded in (plain weight without BN)."""
    weight, _ = folded_affine(blocks(model)[-1])
    return weight


def bottleneck(weight: ArrayLike) -> Bottleneck:
    """SVD bottleneck of the final-layer ``weight`` [C, N]: ``(W_b, U2, singular values)`` with §10's sign rule."""
    weight = _as_tensor(weight).detach().double()
    if weight.ndim != 2 or min(weight.shape) < 2:
        raise ValueError(f"bottleneck needs a [C, N] weight with C, N >= 2, got shape {tuple(weight.shape)}")
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    u2, v2t = u[:, :2], vh[:2]
    # Sign of the largest-|.| entry of each right singular vector (argmax takes the first one on a tie).
    signs = torch.sign(v2t.gather(1, v2t.abs().argmax(dim=1, keepdim=True))).squeeze(1)
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)  # only for an all-zero W
    return Bottleneck(s[:2, None] * signs[:, None] * v2t, u2 * signs[None, :], s)


def project(x_last: ArrayLike, weight_b: torch.Tensor) -> torch.Tensor:
    """Coordinates ``(h₁, h₂) = W_b x^{(L−1)}`` [P, 2], float64, on the device of ``x_last``."""
    x_last = _as_tensor(x_last)
    x_last = x_last.reshape(x_last.shape[0], -1)
    return x_last.double() @ weight_b.to(device=x_last.device, dtype=torch.float64).T


def projection_table(
    x_last: ArrayLike,
    labels: ArrayLike,
    indices: ArrayLike,
    weight: ArrayLike,
    digits: Sequence[int],
    max_per_digit: int = 500,
    split: str = "train",
    step: int | None = None,
) -> pd.DataFrame:
    """Projected coordinates of the first ``max_per_digit`` samples (given order) of each digit in ``digits``.

    ``x_last`` [P, N] are the outputs of the last hidden layer, ``labels`` and ``indices`` (dataset row numbers)
    [P], ``weight`` the final-layer weight. Columns: [step,] split, index, label, h1, h2; rows grouped by digit in
    the order of ``digits``, then in sample order.
    """
    x_last = _as_tensor(x_last)
    labels_np = _as_tensor(labels).cpu().numpy().reshape(-1).astype(np.int64)
    indices_np = _as_tensor(indices).cpu().numpy().reshape(-1).astype(np.int64)
    if not len(labels_np) == len(indices_np) == x_last.shape[0]:
        raise ValueError("x_last, labels and indices must have the same number of samples")
    chosen = np.concatenate(
        [np.flatnonzero(labels_np == digit)[:max_per_digit] for digit in digits] or [np.zeros(0, np.int64)]
    ).astype(np.int64)
    rows = x_last[torch.as_tensor(chosen, device=x_last.device)]
    coords = project(rows, bottleneck(weight).weight).cpu().numpy()
    frame = pd.DataFrame(
        {
            "split": split,
            "index": indices_np[chosen],
            "label": labels_np[chosen],
            "h1": coords[:, 0],
            "h2": coords[:, 1],
        }
    )
    if step is not None:
        frame.insert(0, "step", int(step))
    return frame
