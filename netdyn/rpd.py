"""Ranking Position Distribution (RPD) of a hidden layer and its scalar gradient G (methods.md §6).

For the analysed layer m, neuron i and class k the contribution of sample ν is ``c_ik(ν) = h_i(ν) · A_ik``, with
``A = A^{(m)}`` the BN-folded L-map from layer m's local field to the logits (§6.1, §5.2). Each sample is ranked
(descending, 1 = largest, ties averaged as scipy ``rankdata(method="average")``) within the column of its own target
class ``k = y_ν`` over all P samples; the rank is normalized to ``ρ = (r − 1)/(P − 1)`` (0 = top), and the RPD is the
density of all ``N_m × P`` values of ρ on B equal bins of [0, 1], scaled so a flat RPD is 1 (§6.2, U8: B = 50).

Only ``sign(A_ik)`` matters (§6.2): for ``A_ik > 0`` the descending rank of ``h_i A_ik`` is ``P + 1 − r`` with ``r``
the ascending average rank of ``h_i``; for ``A_ik < 0`` it is ``r``; for ``A_ik = 0`` all contributions tie at
``(P + 1)/2``. So every neuron's column is sorted once (all columns of a chunk in one ``sort``), and the ascending
average rank of a value is ``(#{< v} + #{≤ v} + 1)/2``, read off the sorted column with two ``searchsorted`` calls.
Neurons are processed in chunks so the extra memory stays a small multiple of one chunk; :func:`rpd` histograms
chunk by chunk and never holds the full ``[P, N]`` matrix of ρ.

The scalar G (§6.3, U9) is minus the OLS slope of density against the bin centres over all bins. Variants (§6.3):
``G_half`` the same fit over bins with centre ≤ 0.5; ``G_log`` minus the slope of log density, leaving out bins with
zero density (NaN when fewer than two bins remain); ``contrast`` = mean density of bins with centre < 0.1 minus that
of bins with centre > 0.9.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from netdyn.layers import depth
from netdyn.pruning import lmap, lmap_all

DEFAULT_BINS = 50
# Most elements of h ranked per chunk: the workspace is ~24 bytes per element (float32 copy and sorted copy, int32
# counts, then float64 ranks and int8 signs), so about 100 MB whatever P and N are.
DEFAULT_CHUNK_ELEMENTS = 2**22


@torch.no_grad()
def lmap_readout(model: nn.Sequential, layer: int) -> torch.Tensor:
    """``A^{(m)}`` [N_m, C], float64: the L-map from hidden layer ``layer``'s field to the logits, BN folded (§6.1).

    ``A^{(m)} = M(m+1)ᵀ`` with ``M`` from :func:`netdyn.pruning.lmap` (biases do not enter the RPD). For the shallow
    net (m = 1 = D) this is the transposed output weight ``W^{(2)}``, as the paper notes.
    """
    if not 1 <= layer <= depth(model):
        raise ValueError(f"RPD layer must be a hidden layer 1..{depth(model)}, got {layer}")
    matrix, _ = lmap(model, layer + 1, fold_bn=True, bias=False)
    return matrix.T


def readout_signs(model: nn.Sequential, layer: int) -> torch.Tensor:
    """``sign(A^{(m)})`` [N_m, C] as int8 (−1, 0, +1): all the RPD uses of the readout (§6.2)."""
    return torch.sign(lmap_readout(model, layer)).to(torch.int8)


def ascending_average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Column-wise ascending ranks 1..P of ``values`` [P, n], ties averaged, float64 (one sort per column).

    The rank of ``v`` is ``(#{< v} + #{≤ v} + 1)/2``, the mean of the positions its tie group occupies.
    """
    columns = values.T.contiguous()
    ordered = torch.sort(columns, dim=1).values
    counts = torch.searchsorted(ordered, columns, right=False, out_int32=True)  # #{< v}
    counts += torch.searchsorted(ordered, columns, right=True, out_int32=True)  # + #{≤ v}
    del columns, ordered
    return counts.to(torch.float64).add_(1).div_(2).T


def _rank_position_chunks(
    h: Any, readout: Any, labels: Any, chunk_elements: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(column slice, ρ [P, chunk] float64)`` over chunks of neurons."""
    h = torch.as_tensor(h)
    if h.dim() != 2:
        raise ValueError(f"h must be [P, N], got shape {tuple(h.shape)}")
    count, neurons = h.shape
    if count < 2:
        raise ValueError("the RPD needs at least two samples")
    if not bool(torch.isfinite(h).all()):
        raise ValueError("h contains NaN or infinite values; ranks would be undefined")
    signs = torch.sign(torch.as_tensor(readout, device=h.device).to(torch.float64)).to(torch.int8)
    if signs.shape[0] != neurons:
        raise ValueError(f"readout has {signs.shape[0]} rows, h has {neurons} neurons")
    labels = torch.as_tensor(labels, device=h.device).to(torch.int64)
    if labels.shape != (count,):
        raise ValueError(f"labels must be [P] = [{count}], got shape {tuple(labels.shape)}")
    # Never more than 1/8 of h per chunk: the chunk's workspace (~24 bytes per element) then stays below 3 bytes
    # per element of h, under one float32 copy of h.
    width = max(1, min(chunk_elements, h.numel() // 8) // count)
    middle = (count + 1) / 2
    for start in range(0, neurons, width):
        columns = slice(start, min(start + width, neurons))
        ranks = ascending_average_ranks(h[:, columns])
        target_sign = signs[columns][:, labels].T  # [P, chunk]: sign of A_{i, y_μ}
        # Descending rank: P + 1 − r for sign +1, r for sign −1, the all-tied middle (P + 1)/2 for sign 0. Exact in
        # float64 (half-integers), computed in place.
        ranks.sub_(middle).mul_(-target_sign).add_(middle)
        yield columns, ranks.sub_(1).div_(count - 1)


def rank_positions(h: Any, readout: Any, labels: Any, *, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """Normalized descending rank positions ρ [P, N_m] (float64) of each sample w.r.t. its target class (§6.2).

    ``h`` [P, N_m] local fields (tensor or array), ``readout`` [N_m, C] the L-map ``A`` (only its sign is used),
    ``labels`` [P] class indices. ρ = 0 is the top of the neuron's ordering for that class.
    """
    h = torch.as_tensor(h)
    rho = torch.empty(h.shape, dtype=torch.float64, device=h.device)
    for columns, chunk in _rank_position_chunks(h, readout, labels, chunk_elements):
        rho[:, columns] = chunk
    return rho


def bin_edges(bins: int = DEFAULT_BINS) -> np.ndarray:
    """The ``bins + 1`` equal edges ``k / bins`` of [0, 1] used by :func:`rpd` (last bin closed, as numpy)."""
    return np.arange(bins + 1) / bins


def rpd(
    h: Any, readout: Any, labels: Any, bins: int = DEFAULT_BINS, *, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """``(bin_centers, density)`` of all ρ over ``bins`` equal bins of [0, 1]; a flat RPD has density 1 (§6.2).

    Equal to ``np.histogram(rho, bins=bin_edges(bins), density=True)`` on :func:`rank_positions`.
    """
    h = torch.as_tensor(h)
    edges = torch.as_tensor(bin_edges(bins), dtype=torch.float64, device=h.device)
    counts = torch.zeros(bins, dtype=torch.int64, device=h.device)
    for _, rho in _rank_position_chunks(h, readout, labels, chunk_elements):
        index = (torch.bucketize(rho.flatten(), edges, right=True) - 1).clamp_(0, bins - 1)
        counts += torch.bincount(index, minlength=bins)
    counts = counts.cpu().numpy()
    density = counts / counts.sum() * bins
    centers = (np.arange(bins) + 0.5) / bins
    return centers, density


def _negative_slope(x: np.ndarray, y: np.ndarray) -> float:
    """``−s`` of the OLS line ``y ≈ a + s x``; NaN with fewer than two distinct x."""
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan")
    xc = x - x.mean()
    return float(-(xc @ (y - y.mean())) / (xc @ xc))


def rpd_gradient(bin_centers: Any, density: Any) -> dict[str, float]:
    """``G`` (primary, −OLS slope over all bins) and the §6.3 variants ``G_half``, ``G_log``, ``contrast``."""
    centers = np.asarray(bin_centers, dtype=np.float64)
    density = np.asarray(density, dtype=np.float64)
    half = centers <= 0.5
    positive = density > 0
    top, bottom = centers < 0.1, centers > 0.9
    return {
        "G": _negative_slope(centers, density),
        "G_half": _negative_slope(centers[half], density[half]),
        "G_log": _negative_slope(centers[positive], np.log(density[positive])),
        "contrast": float(density[top].mean() - density[bottom].mean()) if top.any() and bottom.any() else np.nan,
    }


def rpd_for_layers(
    model: nn.Sequential,
    hs: Sequence[Any],
    labels: Any,
    bins: int = DEFAULT_BINS,
    *,
    layers: Sequence[int] | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> list[dict[str, Any]]:
    """Per hidden layer m (default all 1..D): ``{"layer", "bin_centers", "density", "G", "G_half", "G_log",
    "contrast"}``. ``hs`` = ``[h^{(1)}, ..., h^{(D)}]`` of the analysis samples (tensors or arrays)."""
    if len(hs) != depth(model):
        raise ValueError(f"rpd_for_layers: need the fields of all {depth(model)} hidden layers, got {len(hs)}")
    maps = lmap_all(model, bias=False)  # one backward sweep; the readout of layer m is M(m + 1)ᵀ
    results = []
    for layer in layers or range(1, len(hs) + 1):
        readout = maps[layer][0].T
        centers, density = rpd(hs[layer - 1], readout, labels, bins, chunk_elements=chunk_elements)
        results.append({"layer": layer, "bin_centers": centers, "density": density, **rpd_gradient(centers, density)})
    return results
