"""Class geometry per layer: cosine distance of samples to their class centre and inter-centre similarity (§9).

For a layer's outputs ``x`` [P, N] (``x^{(0)}`` the input, ``x^{(l)}`` the post-activation output of hidden layer l,
optionally the logits as layer L) and labels ``y`` [P] (methods.md §9):

* class centre ``c_k = mean{x(μ) : y_μ = k}``; a class with no sample has an all-NaN centre row;
* per-sample distance ``d(μ) = 1 − cos(x(μ), c_{y_μ})``;
* inter-centre similarity ``S = mean over ordered pairs k ≠ k′ of cos(c_k, c_k′)`` (90 pairs for 10 classes).
  Classes with a NaN centre are left out of the pairs; fewer than two classes give NaN. The caption's
  "distance between classes" is ``1 − S``.

Zero vectors (a dead ReLU layer's output, or a zero centre) have no direction: their cosine with anything is
defined as 0, so their distance is 1 and no NaN appears. Everything is computed in float64 on the device of ``x``,
in row chunks so a [60k, 2048] layer never needs a full float64 copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

# Rows per chunk are chosen so a float64 chunk and its gathered centres hold about this many elements (~32 MB each).
CHUNK_ELEMENTS = 2**22

ArrayLike = torch.Tensor | np.ndarray


class LayerGeometry(NamedTuple):
    """``summary``: one row per layer; ``digit``: one row per (layer, tracked sample), the thin lines of Fig. 3(c)."""

    summary: pd.DataFrame
    digit: pd.DataFrame


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _labels_on(labels: ArrayLike, device: torch.device, n_rows: int, n_classes: int | None = None) -> torch.Tensor:
    labels = _as_tensor(labels).to(device=device, dtype=torch.long).reshape(-1)
    if labels.numel() != n_rows:
        raise ValueError(f"labels has {labels.numel()} entries but x has {n_rows} rows")
    if n_classes is not None and labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {labels.min().item()}..{labels.max().item()}")
    return labels


def _chunk_rows(width: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, width))


def _rows(x: ArrayLike) -> torch.Tensor:
    x = _as_tensor(x)
    return x.reshape(x.shape[0], -1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of ``a`` and ``b`` [P, N] in float64; 0 where either row is zero, NaN where either has NaN."""
    a, b = a.double(), b.double()
    norms = a.norm(dim=1) * b.norm(dim=1)
    cos = (a * b).sum(dim=1) / torch.where(norms > 0, norms, torch.ones_like(norms))
    cos = torch.where(norms > 0, cos.clamp(-1.0, 1.0), torch.zeros_like(cos))
    return torch.where(torch.isnan(norms), torch.full_like(cos, torch.nan), cos)


def class_centers(x: ArrayLike, labels: ArrayLike, n_classes: int) -> torch.Tensor:
    """Centres ``c_k`` [C, N], float64: mean of ``x`` over the samples of class k; NaN rows for empty classes."""
    x = _rows(x)
    labels = _labels_on(labels, x.device, x.shape[0], n_classes)
    sums = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, device=x.device)
    step = _chunk_rows(x.shape[1])
    for start in range(0, x.shape[0], step):
        sums.index_add_(0, labels[start : start + step], x[start : start + step].double())
    counts = torch.bincount(labels, minlength=n_classes).double()
    # 0/0 = NaN marks a class without samples: it has no centre, and NaN keeps it out of every later mean.
    return sums / counts[:, None]


def center_distances(x: ArrayLike, labels: ArrayLike, centers: torch.Tensor) -> torch.Tensor:
    """``d(μ) = 1 − cos(x(μ), c_{y_μ})`` [P], float64 (1 for a zero vector; NaN only if the class has no centre)."""
    x = _rows(x)
    centers = _as_tensor(centers).to(device=x.device, dtype=torch.float64)
    labels = _labels_on(labels, x.device, x.shape[0], centers.shape[0])
    if centers.shape[1] != x.shape[1]:
        raise ValueError(f"centres have width {centers.shape[1]} but x has {x.shape[1]} columns")
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    step = _chunk_rows(x.shape[1])
    for start in range(0, x.shape[0], step):
        stop = start + step
        out[start:stop] = 1.0 - cosine(x[start:stop], centers[labels[start:stop]])
    return out


def center_similarity(centers: torch.Tensor) -> float:
    """Mean cosine over ordered pairs of distinct classes with a centre (NaN rows skipped); NaN if < 2 classes."""
    centers = _as_tensor(centers).double()
    centers = centers[~torch.isnan(centers).any(dim=1)]
    k = centers.shape[0]
    if k < 2:
        return float("nan")
    norms = centers.norm(dim=1)
    unit = centers / torch.where(norms > 0, norms, torch.ones_like(norms))[:, None]  # zero centre stays zero: cos 0
    gram = (unit @ unit.T).clamp(-1.0, 1.0)
    return float((gram.sum() - gram.diagonal().sum()) / (k * (k - 1)))


def layer_geometry(
    xs: Sequence[ArrayLike],
    labels: ArrayLike,
    *,
    digit: int = 5,
    n_first: int = 100,
    n_classes: int = 10,
    indices: ArrayLike | None = None,
    layers: Sequence[int] | None = None,
) -> LayerGeometry:
    """Geometry of every layer in ``xs`` (methods.md §9, Fig. 3(c)).

    ``xs[l]`` is the output of layer ``layers[l]`` (default ``l``: ``[x^{(0)}, x^{(1)}, …, x^{(L−1)}]``; append the
    logits to include layer L) for the same P samples with ``labels``. Centres come from all P samples. The tracked
    samples are the first ``n_first`` with label ``digit`` in the given order (dataset order for netdyn's activation
    dumps); their ``sample_index`` is ``indices[μ]`` when ``indices`` (dataset row numbers) is given, else the
    position μ.

    ``summary`` columns: layer, center_distance (mean d over all P samples), center_similarity (S),
    digit_distance_mean, digit_distance_std (population std over the tracked samples; NaN if there are none),
    n_digit. ``digit`` columns: layer, sample_index, distance.
    """
    if not xs:
        raise ValueError("layer_geometry needs at least one layer")
    layers = list(range(len(xs))) if layers is None else list(layers)
    if len(layers) != len(xs):
        raise ValueError(f"{len(layers)} layer numbers for {len(xs)} layers")
    labels_cpu = _as_tensor(labels).to("cpu", torch.long).reshape(-1)
    positions = torch.nonzero(labels_cpu == digit).flatten()[:n_first]
    sample_index = positions.numpy() if indices is None else _as_tensor(indices).cpu().reshape(-1).numpy()[positions]

    summary, digit_rows = [], []
    for layer, x in zip(layers, xs, strict=True):
        x = _rows(x)
        centers = class_centers(x, labels, n_classes)
        distances = center_distances(x, labels, centers)
        tracked = distances[positions.to(distances.device)].cpu().numpy()
        summary.append(
            {
                "layer": int(layer),
                "center_distance": float(distances.mean()) if distances.numel() else float("nan"),
                "center_similarity": center_similarity(centers),
                "digit_distance_mean": float(tracked.mean()) if tracked.size else float("nan"),
                "digit_distance_std": float(tracked.std()) if tracked.size else float("nan"),
                "n_digit": int(tracked.size),
            }
        )
        digit_rows.append(
            pd.DataFrame({"layer": int(layer), "sample_index": sample_index.astype(np.int64), "distance": tracked})
        )
    digit_frame = pd.concat(digit_rows, ignore_index=True)
    return LayerGeometry(pd.DataFrame(summary), digit_frame)
