"""Neuron modes: each hidden neuron order-preserving (OPM) or not (NPM), from its own rank positions (docs/methods.md
§19; the paper's §II, methods.md §6).

The RPD of a layer (netdyn.rpd) pools, over all its neurons, the normalized rank ρ of every sample ν within the
column of its target class: ``ρ = 0`` when the neuron's contribution ``h_i A_{i, y_ν}`` to the sample's own class is
the largest of all samples. A neuron's own share of that histogram says whether *it* preserves the class order:

* ``score = 1 − 2 · mean_ν ρ`` in [−1, 1]. 0 when its order says nothing about the classes, 1 when every sample sits
  at the top of its target column. (For a density on [0, 1] the OLS slope over equal bins is ``12 (mean − 1/2)``,
  so ``score ≈ G_i / 6`` with ``G_i`` the neuron's own RPD gradient: the per-neuron reading of the layer's G.)
* The null is the neuron with its labels shuffled. With ``s_ν = sign(A_{i, y_ν})`` and ``c_ν`` the centred
  ascending rank of ``h_i(ν)`` (netdyn.rpd.NeuronRanks), ``mean ρ = 1/2 + T / (2P(P − 1))`` with ``T = Σ s_ν c_ν``.
  Shuffling the labels permutes the ``s`` against the ``c``, so ``T`` is a linear permutation statistic with exact
  mean 0 and variance ``Σ(s − s̄)² Σ c² / (P − 1)`` (ties included). ``z = −T / √Var`` (positive = order-
  preserving); by the combinatorial central limit theorem z is close to standard normal under the null. This is a
  two-sample rank test (Mann–Whitney type) between the samples of the classes the neuron's readout excites and
  those of the classes it inhibits.
* **Rule**: a neuron is OPM when ``z ≥ z_{1−α}`` (the one-sided normal quantile; ``alpha`` default 0.01, so a
  neuron without class order is called OPM with probability ≈ α) and ``score ≥ min_score`` (default 0: the test
  alone). A neuron whose readout has the same sign for every class (nothing to order) or whose field is constant
  has ``z`` NaN and is NPM.

``tests/test_modes.py`` checks the moments against brute-force label shuffles, that constructed class-aligned
neurons are OPM and that random neurons are called OPM at the rate α.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from netdyn.rpd import NeuronRanks

DEFAULT_ALPHA = 0.01
DEFAULT_MIN_SCORE = 0.0


def mean_rank_positions(ranks: NeuronRanks) -> np.ndarray:
    """Each neuron's mean normalized rank position ρ over the P samples (0.5 for a neuron without class order)."""
    count = ranks.count
    return 0.5 + ranks.signed.double().cpu().numpy() / (2.0 * count * (count - 1))


def null_z(ranks: NeuronRanks) -> np.ndarray:
    """``z = −T / √Var_perm(T)`` per neuron; NaN where the null variance is zero (one readout sign, constant field)."""
    variance = ranks.sign_spread.double() * ranks.rank_square.double() / (ranks.count - 1)
    z = -ranks.signed.double() / variance.sqrt()
    return torch.where(variance > 0, z, torch.full_like(z, math.nan)).cpu().numpy()


def classify(
    ranks: NeuronRanks, *, alpha: float = DEFAULT_ALPHA, min_score: float = DEFAULT_MIN_SCORE
) -> dict[str, Any]:
    """Per neuron: ``score``, ``z`` and ``opm`` (bool) by the rule of the module docstring; plus the layer's
    ``opm_fraction`` and the ``threshold`` z_{1−α} used."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    score = 1.0 - 2.0 * mean_rank_positions(ranks)
    z = null_z(ranks)
    threshold = NormalDist().inv_cdf(1.0 - alpha)
    opm = np.nan_to_num(z, nan=-np.inf) >= threshold
    opm &= score >= min_score
    return {
        "score": score,
        "z": z,
        "opm": opm,
        "opm_fraction": float(opm.mean()) if len(opm) else math.nan,
        "threshold": threshold,
    }
