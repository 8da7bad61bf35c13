"""Ranking Position Distribution (RPD) of a hidden layer and its scalar gradient G (methods.md §6).

For the analysed layer m, neuron i and class k the contribution of sample ν is ``c_ik(ν) = h_i(ν) · A_ik``, with
``A = A^{(m)}`` the BN-folded L-map from layer m's local field to the logits (§6.1, §5.2). Each sample is ranked
(descending, 1 = largest, ties averaged as scipy ``rankdata(method="average")``) within the column of its own target
class ``k = y_ν`` over all P samples; the rank is normalized to ``ρ = (r − 1)/(P − 1)`` (0 = top), and the RPD is the
density of all ``N_m × P`` values of ρ on B equal bins of [0, 1], scaled so a flat RPD is 1 (§6.2, U8: B = 50).

Only ``sign(A_ik)`` matters (§6.2): for ``A_ik > 0`` the descending rank of ``h_i A_ik`` is ``P + 1 − r`` with ``r``
the ascending average rank of ``h_i``; for ``A_ik < 0`` it is ``r``; for ``A_ik = 0`` all contributions tie at
``(P + 1)/2``. So each neuron's column is sorted once, carrying each sample's target sign ``sign(A_{i, y_ν})`` along,
and a sample's average rank is read off its run of equal values in the sorted column: with ``first`` and ``last``
the run's 0-based positions, ``2 (r − 1) = first + last``. :func:`rpd` never goes back to sample order: it counts
(target sign, ``first + last``) cells and maps the cells to bins with exact integer arithmetic.

The sort key for float32 fields (the dumps' dtype) is one int32 per sample: the float's sign and magnitude bits,
rebased per neuron so they fit 30 bits, and the target sign in the 2 low bits. Order and ties are exactly those of
the floats (−0.0 ties +0.0); a neuron whose nonzero magnitudes span more than 2^64 (so the rebased bits do not fit)
and fields not exactly representable in float32 take the general path, a value sort with indices. On the CPU the
int32 sort is numpy's (AVX-512 where present), several times faster than ``torch.sort``. Samples are grouped by
class first (ranks do not depend on their order), so a class's target sign is one value per neuron. Neurons are
processed in chunks so the extra memory stays a small multiple of one chunk.

The same pass yields each neuron's own rank statistics (:class:`NeuronRanks`: the sums behind its mean ρ and its
permutation null), from which ``netdyn.modes`` classifies neurons as order-preserving or not.

The scalar G (§6.3, U9) is minus the OLS slope of density against the bin centres over all bins. Variants (§6.3):
``G_half`` the same fit over bins with centre ≤ 0.5; ``G_log`` minus the slope of log density, leaving out bins with
zero density (NaN when fewer than two bins remain); ``contrast`` = mean density of bins with centre < 0.1 minus that
of bins with centre > 0.9.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from netdyn.layers import depth, is_general
from netdyn.layerview import example_input
from netdyn.layerview import readout as general_readout
from netdyn.layerview import readouts as general_readouts
from netdyn.pruning import lmap, lmap_all

DEFAULT_BINS = 50
# Most elements of h ranked per chunk: the workspace is at most ~32 bytes per element (the general path's sorted
# copy, indices and cell index), so about 130 MB whatever P and N are.
DEFAULT_CHUNK_ELEMENTS = 2**22
NOT_FINITE = "h contains NaN or infinite values; ranks would be undefined"


@torch.no_grad()
def lmap_readout(model: nn.Sequential, layer: int) -> torch.Tensor:
    """``A^{(m)}`` [N_m, C], float64: the L-map from hidden layer ``layer``'s field to the logits, BN folded (§6.1).

    ``A^{(m)} = M(m+1)ᵀ`` with ``M`` from :func:`netdyn.pruning.lmap` (biases do not enter the RPD). For the shallow
    net (m = 1 = D) this is the transposed output weight ``W^{(2)}``, as the paper notes.
    """
    if not 1 <= layer <= depth(model):
        raise ValueError(f"RPD layer must be a hidden layer 1..{depth(model)}, got {layer}")
    if is_general(model):
        return general_readout(model, layer, example_input(model))
    matrix, _ = lmap(model, layer + 1, fold_bn=True, bias=False)
    return matrix.T


def readout_signs(model: nn.Sequential, layer: int) -> torch.Tensor:
    """``sign(A^{(m)})`` [N_m, C] as int8 (−1, 0, +1): all the RPD uses of the readout (§6.2)."""
    return torch.sign(lmap_readout(model, layer)).to(torch.int8)


def _checked(h: Any, readout: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(h [P, N], target sign + 1 per neuron and class [N, C] int8, labels [P] int64)``, validated."""
    h = torch.as_tensor(h)
    if h.dim() != 2:
        raise ValueError(f"h must be [P, N], got shape {tuple(h.shape)}")
    count, neurons = h.shape
    if count < 2:
        raise ValueError("the RPD needs at least two samples")
    signs = torch.sign(torch.as_tensor(readout, device=h.device).to(torch.float64)).to(torch.int8)
    if signs.shape[0] != neurons:
        raise ValueError(f"readout has {signs.shape[0]} rows, h has {neurons} neurons")
    labels = torch.as_tensor(labels, device=h.device).to(torch.int64)
    if labels.shape != (count,):
        raise ValueError(f"labels must be [P] = [{count}], got shape {tuple(labels.shape)}")
    if bool((labels < 0).any()) or bool((labels >= signs.shape[1]).any()):
        raise ValueError(f"labels must be class indices 0..{signs.shape[1] - 1} (the readout's columns)")
    return h, signs + 1, labels


def _neuron_major(h: torch.Tensor, columns: slice, samples: torch.Tensor) -> torch.Tensor:
    """``h[samples, columns]ᵀ`` [n, P] contiguous, copied in blocks of samples (a plain transposing copy of a
    column slice is about 2.5x slower on the CPU: it walks memory with the stride of a full row of h)."""
    fields = h[:, columns]
    out = torch.empty((fields.shape[1], len(samples)), dtype=h.dtype, device=h.device)
    block = 512
    for start in range(0, len(samples), block):
        out[:, start : start + block] = fields.index_select(0, samples[start : start + block]).T
    return out


def _neuron_chunks(h: torch.Tensor, chunk_elements: int) -> Iterator[slice]:
    # Never more than 1/8 of h per chunk: the chunk's workspace (at most ~32 bytes per element, on the general
    # path) then stays within 4 bytes per element of h, one float32 copy of h.
    count, neurons = h.shape
    width = max(1, min(chunk_elements, h.numel() // 8) // count)
    for start in range(0, neurons, width):
        yield slice(start, min(start + width, neurons))


def _sort_rows(keys: torch.Tensor) -> torch.Tensor:
    """``keys`` [n, P] sorted along each row (in place with numpy's sort on the CPU)."""
    if keys.device.type == "cpu":
        keys.numpy().sort(axis=1)
        return keys
    return torch.sort(keys, dim=1).values


def _check_finite(values: torch.Tensor) -> None:
    if not bool(torch.isfinite(values).all()):
        raise ValueError(NOT_FINITE)


def _tie_runs(sorted_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The elements of ``sorted_rows`` [n, P] that tie with a neighbour: ``(row, position, first + last)``, with
    ``first``, ``last`` the 0-based positions that bound the element's run of equal values (few, so kept sparse)."""
    row, pair = (sorted_rows[:, 1:] == sorted_rows[:, :-1]).nonzero(as_tuple=True)  # pair ties with pair + 1
    starts = torch.ones_like(row, dtype=torch.bool)
    starts[1:] = (row[1:] != row[:-1]) | (pair[1:] != pair[:-1] + 1)
    ends = torch.ones_like(starts)
    ends[:-1] = starts[1:]
    doubled = pair[starts] + pair[ends] + 1  # first + last of each run
    run = starts.cumsum(0) - 1
    # Every tied pair's left element, then each run's last element.
    return torch.cat([row, row[ends]]), torch.cat([pair, pair[ends] + 1]), torch.cat([doubled[run], doubled])


def _doubled_positions(sorted_rows: torch.Tensor) -> torch.Tensor:
    """``first + last`` [n, P] int64 for every element of ``sorted_rows`` (see :func:`_tie_runs`), i.e.
    ``2 (r − 1)`` for its average rank ``r``: ``2 j`` at position ``j`` unless it ties."""
    rows, count = sorted_rows.shape
    doubled = (2 * torch.arange(count, device=sorted_rows.device)).repeat(rows, 1)
    row, position, tied = _tie_runs(sorted_rows)
    doubled[row, position] = tied
    return doubled


def _descending_doubled(sign: torch.Tensor, doubled: torch.Tensor, count: int) -> torch.Tensor:
    """``2 (r_desc − 1)`` from the target sign (−1, 0, +1) and ``2 (r − 1)`` of the ascending average rank."""
    return (count - 1) - sign * (doubled - (count - 1))


def _as_float32(values: torch.Tensor) -> torch.Tensor | None:
    """``values`` as float32 where that is exact (float32, float16, bfloat16, or float64 that round-trips)."""
    if values.dtype == torch.float32:
        return values
    single = values.float()
    return single if torch.equal(single.to(values.dtype), values) else None


def _compact_keys(columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Int32 sort keys [n, P] of float32 ``columns`` [n, P] with the 2 low bits zero (room for a payload), and the
    rows [n] they are exact for: those whose nonzero magnitudes lie within a factor 2^64 (2^29 codes)."""
    bits = columns.contiguous().view(torch.int32)
    codes = bits & 0x7FFFFFFF  # exponent and mantissa bits: increasing in |v|, 0 for ±0.0
    largest = codes.amax(dim=1, keepdim=True)
    if bool((largest >= 0x7F800000).any()):  # the exponent of inf and NaN
        raise ValueError(NOT_FINITE)
    smallest = (codes - 1).bitwise_and_(0x7FFFFFFF).amin(dim=1, keepdim=True) + 1  # of the nonzero codes
    fits = (largest - smallest < 2**29).squeeze(1)  # all-zero rows too (largest − smallest < 0)
    # Nonzero magnitudes become 1..2^29 and zero stays 0, so sign and code keep the floats' order in 30 bits.
    codes.sub_(torch.where(fits[:, None], smallest - 1, 0)).clamp_(min=0)
    negative = bits >> 31  # −1 where the sign bit is set, else 0
    codes.bitwise_xor_(negative).sub_(negative)  # negates where negative
    return codes.mul_(4), fits


class NeuronRanks(NamedTuple):
    """Per-neuron sums from the RPD's one sort, enough for each neuron's own rank statistics (netdyn.modes).

    With ``s_ν = sign(A_{i, y_ν})`` the target sign of sample ν and ``c_ν = (P − 1) − 2 (r_ν − 1)`` twice its
    centred ascending average rank (Σ_ν c_ν = 0, ties included), ``ρ_ν = 1/2 + s_ν c_ν / (2 (P − 1))``:

    * ``signed`` [N] int64: ``T = Σ_ν s_ν c_ν``, so the neuron's mean ρ is ``1/2 + T / (2 P (P − 1))``;
    * ``rank_square`` [N] int64: ``Σ_ν c_ν²`` (smaller than without ties);
    * ``sign_spread`` [N] float64: ``Σ_ν (s_ν − s̄)²``, from the readout signs and class sizes;
    * ``count``: P.
    """

    signed: torch.Tensor
    rank_square: torch.Tensor
    sign_spread: torch.Tensor
    count: int


def _cell_counts(
    columns: torch.Tensor, signs: torch.Tensor, class_sizes: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Counts [3 (2P − 1)] of samples per (target sign + 1, doubled ascending position ``first + last``) cell, and
    per row the sums ``Σ s c`` and ``Σ c²`` of :class:`NeuronRanks`.

    ``columns`` [n, P]: one neuron's fields per row, samples grouped by class (``class_sizes[k]`` of class k in
    turn); ``signs`` [n, C] int8: the sign + 1 of each neuron's readout to each class.
    """
    rows_total, count = columns.shape
    width = 2 * count - 1
    cells = torch.zeros(3 * width, dtype=torch.int64, device=columns.device)
    signed = torch.zeros(rows_total, dtype=torch.int64, device=columns.device)
    rank_square = torch.zeros(rows_total, dtype=torch.int64, device=columns.device)
    doubled = 2 * torch.arange(count, device=columns.device)

    def add(rows: torch.Tensor, sign_plus_one: torch.Tensor, sorted_rows: torch.Tensor) -> None:
        sign = sign_plus_one.to(torch.int64)
        index = sign.mul(width).add_(doubled)
        row, position, tied = _tie_runs(sorted_rows)
        correction = tied - 2 * position
        index[row, position] += correction
        cells.add_(torch.bincount(index.flatten(), minlength=3 * width))
        centred = (count - 1) - doubled.expand_as(index).clone()
        centred[row, position] -= correction
        signed[rows] = (sign.sub_(1) * centred).sum(1)
        rank_square[rows] = centred.square_().sum(1)

    single = _as_float32(columns)
    compact = torch.zeros(columns.shape[0], dtype=torch.bool, device=columns.device)
    if single is not None:
        keys, compact = _compact_keys(single)
        if bool(compact.any()):
            compact_signs = signs
            if not bool(compact.all()):
                keys, compact_signs = keys[compact], signs[compact]
            for k, block in enumerate(keys.split(class_sizes, dim=1)):
                block.add_(compact_signs[:, k : k + 1])  # the payload: this class's target sign + 1
            keys = _sort_rows(keys)
            add(compact.nonzero().squeeze(1), keys & 3, keys >> 2)
    if not bool(compact.all()):
        rest = columns[~compact]
        _check_finite(rest)
        ordered, order = torch.sort(rest, dim=1)
        target = signs[~compact].repeat_interleave(torch.tensor(class_sizes, device=signs.device), dim=1)
        add((~compact).nonzero().squeeze(1), target.gather(1, order), ordered)
    return cells, signed, rank_square


def _sign_spread(signs_plus_one: torch.Tensor, class_sizes: list[int]) -> torch.Tensor:
    """``Σ_ν (s_ν − s̄)²`` per neuron from its readout signs [N, C] (+1) and the class sizes, float64."""
    signs = signs_plus_one.to(torch.float64) - 1
    sizes = torch.tensor(class_sizes, dtype=torch.float64, device=signs.device)
    total = float(sizes.sum())
    return (signs.square() @ sizes) - (signs @ sizes).square() / total


def ascending_average_ranks(values: Any) -> torch.Tensor:
    """Column-wise ascending ranks 1..P of ``values`` [P, n], ties averaged, float64 (one sort per column)."""
    columns = torch.as_tensor(values).T
    ordered, order = torch.sort(columns, dim=1)
    ranks = _doubled_positions(ordered).to(torch.float64).div_(2).add_(1)
    return torch.empty_like(ranks).scatter_(1, order, ranks).T


def rank_positions(h: Any, readout: Any, labels: Any, *, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """Normalized descending rank positions ρ [P, N_m] (float64) of each sample w.r.t. its target class (§6.2).

    ``h`` [P, N_m] local fields (tensor or array), ``readout`` [N_m, C] the L-map ``A`` (only its sign is used),
    ``labels`` [P] class indices. ρ = 0 is the top of the neuron's ordering for that class. (:func:`rpd` computes
    the same values' histogram without going back to sample order.)
    """
    h, signs, labels = _checked(h, readout, labels)
    count = h.shape[0]
    rho = torch.empty(h.shape, dtype=torch.float64, device=h.device)
    for columns in _neuron_chunks(h, chunk_elements):
        _check_finite(h[:, columns])
        ordered, order = torch.sort(h[:, columns].T, dim=1)
        sign = signs[columns].index_select(1, labels).gather(1, order).to(torch.int64) - 1
        descending = _descending_doubled(sign, _doubled_positions(ordered), count)
        values = descending.to(torch.float64).div_(2 * (count - 1))  # (r_desc − 1)/(P − 1), exact to rounding
        rho[:, columns] = torch.empty_like(values).scatter_(1, order, values).T
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
    centers, density, _ = rpd_with_neurons(h, readout, labels, bins, chunk_elements=chunk_elements)
    return centers, density


def rpd_with_neurons(
    h: Any, readout: Any, labels: Any, bins: int = DEFAULT_BINS, *, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray, NeuronRanks]:
    """:func:`rpd` and, from the same single sort per neuron, each neuron's :class:`NeuronRanks`."""
    h, signs, labels = _checked(h, readout, labels)
    count, neurons = h.shape
    # Ranks do not depend on the samples' order: grouping them by class makes each class's target sign one
    # column of a neuron's readout, added block by block instead of gathered sample by sample.
    by_class = torch.argsort(labels, stable=True)
    class_sizes = torch.bincount(labels, minlength=signs.shape[1]).tolist()
    cells = torch.zeros(3 * (2 * count - 1), dtype=torch.int64, device=h.device)
    signed = torch.empty(neurons, dtype=torch.int64, device=h.device)
    rank_square = torch.empty(neurons, dtype=torch.int64, device=h.device)
    for columns in _neuron_chunks(h, chunk_elements):
        chunk_cells, signed[columns], rank_square[columns] = _cell_counts(
            _neuron_major(h, columns, by_class), signs[columns], class_sizes
        )
        cells += chunk_cells
    # Each (sign, first + last) cell's bin: floor(ρ B) with ρ = (r_desc − 1)/(P − 1), the last bin closed, in exact
    # integer arithmetic (the float histogram of rank_positions agrees: no ρ lies within rounding of an edge).
    sign = torch.arange(-1, 2, device=h.device)[:, None]
    doubled = torch.arange(2 * count - 1, device=h.device)[None, :]
    cell_bins = (_descending_doubled(sign, doubled, count) * bins).div_(2 * (count - 1), rounding_mode="floor")
    counts = torch.bincount(cell_bins.clamp_(max=bins - 1).flatten(), weights=cells.to(torch.float64), minlength=bins)
    counts = counts.cpu().numpy()
    density = counts / counts.sum() * bins
    centers = (np.arange(bins) + 0.5) / bins
    return centers, density, NeuronRanks(signed, rank_square, _sign_spread(signs, class_sizes), count)


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
    "contrast", "neurons"}`` (``neurons``: the layer's :class:`NeuronRanks`). ``hs`` = ``[h^{(1)}, ..., h^{(D)}]``
    of the analysis samples (tensors or arrays)."""
    if len(hs) != depth(model):
        raise ValueError(f"rpd_for_layers: need the fields of all {depth(model)} hidden layers, got {len(hs)}")
    if is_general(model):  # the layer view's A^{(m)}: per channel, summed over positions (methods.md §27)
        readouts = general_readouts(model, list(layers or range(1, len(hs) + 1)), example_input(model))
    else:
        maps = lmap_all(model, bias=False)  # one backward sweep; the readout of layer m is M(m + 1)ᵀ
        readouts = {layer: maps[layer][0].T for layer in layers or range(1, len(hs) + 1)}
    results = []
    for layer in layers or range(1, len(hs) + 1):
        readout = readouts[layer]
        centers, density, neurons = rpd_with_neurons(
            hs[layer - 1], readout, labels, bins, chunk_elements=chunk_elements
        )
        gradients = rpd_gradient(centers, density)
        results.append({"layer": layer, "bin_centers": centers, "density": density, **gradients, "neurons": neurons})
    return results
