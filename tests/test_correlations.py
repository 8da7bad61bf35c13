"""Rank correlations with bootstrap intervals (netdyn.correlations) against scipy, constructed orderings and noise
that must not look correlated."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from netdyn.correlations import _spearman, flatness_correlations, spearman_interval


def test_rho_is_scipys_with_ties_and_the_resample_statistic_agrees():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 40).astype(float)  # many ties
    y = x + rng.normal(0, 2, 40)
    found = spearman_interval(x, y, resamples=200)
    assert found["rho"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert float(_spearman(x, y)) == pytest.approx(found["rho"], abs=1e-12)
    assert found["low"] < found["rho"] < found["high"] and found["n"] == 40


def test_a_monotone_relation_has_rho_one_and_a_degenerate_interval():
    x = np.arange(12.0)
    up, down = spearman_interval(x, np.exp(x)), spearman_interval(x, -(x**3))
    assert (up["rho"], up["low"], up["high"]) == pytest.approx((1.0, 1.0, 1.0))
    assert (down["rho"], down["low"], down["high"]) == pytest.approx((-1.0, -1.0, -1.0))


def test_the_interval_covers_the_truth_and_independent_noise_rarely_looks_correlated():
    rng = np.random.default_rng(1)
    misses = 0
    for _ in range(20):
        x, y = rng.normal(size=30), rng.normal(size=30)
        found = spearman_interval(x, y, resamples=500, seed=int(rng.integers(1 << 30)))
        misses += not found["low"] <= 0.0 <= found["high"]
    assert misses <= 3  # a 95 % interval: about one miss in 20
    x = rng.normal(size=60)
    strong = spearman_interval(x, x + rng.normal(0, 0.5, 60), resamples=500)
    assert strong["low"] > 0.6


def test_too_few_pairs_constant_sides_and_missing_values_are_reasons_not_numbers():
    assert "too few" in spearman_interval([1, 2], [2, 1])["note"]
    constant = spearman_interval([1, 2, 3, 4], [5, 5, 5, 5])
    assert math.isnan(constant["rho"]) and "constant" in constant["note"]
    with_nan = spearman_interval([1, 2, np.nan, 4, 5], [1, 2, 3, 4, 5])
    assert with_nan["n"] == 4 and with_nan["rho"] == 1.0


def scalar_rows(run: str, step: int, **values: float) -> list[dict]:
    return [{"run": run, "step": float(step), "metric": metric, "layer": np.nan, "value": value, "note": "",
             "bound": "none", "bound_value": np.nan} for metric, value in values.items()]  # fmt: skip


def test_flatness_table_orders_each_measure_against_test_accuracy_at_the_final_step():
    rng = np.random.default_rng(2)
    rows, runs = [], [f"sweep/r{i}" for i in range(10)]
    accuracy = rng.uniform(0.5, 1.0, len(runs))
    for run, acc in zip(runs, accuracy, strict=True):
        rows += scalar_rows(run, 10, test_acc=0.1, basin_weight=99.0)  # an earlier step must not be read
        final = {"test_acc": acc, "basin_weight": acc**2, "hessian_max": 1 / acc}
        if run != runs[0]:
            final["hessian_trace"] = float(rng.normal())
        rows += scalar_rows(run, 100, **final)
    table = flatness_correlations(pd.DataFrame(rows), runs, resamples=300).set_index(["measure", "against"])
    assert table.loc[("basin_weight", "test_acc"), "rho"] == pytest.approx(1.0)
    assert table.loc[("hessian_max", "test_acc"), "rho"] == pytest.approx(-1.0)
    assert table.loc[("basin_weight", "hessian_max"), "rho"] == pytest.approx(-1.0)
    assert table.loc[("hessian_trace", "test_acc"), "n"] == 9  # the run without a trace is left out of that pair
    assert len(table) == 6
