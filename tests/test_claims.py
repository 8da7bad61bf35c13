"""Tests for netdyn.claims: for each claim, constructed tables (with seed replicates) that must give a reproduced, a
not-reproduced and an inconclusive verdict, including noise that straddles a criterion and single seeds that give no
interval; the bootstrap and decision rules; scale labels; the design check; the scorecard's agreement with
report/claims.md."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from netdyn import claims
from netdyn.claims import (
    BEYOND_PAPER,
    BEYOND_PAPER_CLAIMS,
    CLAIMS,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    PAPER,
    PAPER_CLAIMS,
    PAPER_SIZE,
    REDUCED,
    REPRODUCED,
    SCORECARD_COLUMNS,
    Estimate,
    bootstrap,
    decide,
    design_check,
    evaluate,
    scored_role,
)
from netdyn.claims.standard_structure import positions
from netdyn.claims.stats import spearman
from netdyn.metrics import METRIC_COLUMNS
from netdyn.tables import RunTables, make_tables

STEPS = [0, 10, 100, 1000, 10000]
FINAL = STEPS[-1]
SPEC = {
    "depth": "model.depth",
    "width": "model.width",
    "activation": "model.activation",
    "n_train": "train.n_train",
    "batch": "train.batch_size",
    "lr": "train.lr",
    "seed": "train.seed",
    "optimizer": "train.optimizer",
}
CONTEXT = {"datasets": ["mnist"], "sources": ["mnist"]}
MARKDOWN = Path(__file__).resolve().parents[1] / "report" / "claims.md"
SEEDS = (0, 1, 2)


def run(run_id: str, role: str, status: str = "completed", dataset: str = "mnist", **spec) -> dict:
    return {
        "run": run_id,
        "experiment": run_id.split("/")[0],
        "role": role,
        "status": status,
        "diverged_at": 5 if status == "diverged" else None,
        "dataset": dataset,
        "train.n_train": None,
        "train.optimizer": "adam",
        **{SPEC[key]: value for key, value in spec.items()},
    }


def metric(run_id: str, name: str, value: float, layer: int | None = None, step: int = FINAL, note=None) -> dict:
    """A metric row; a basin note ``beyond_grid: > 100`` / ``below_grid: < 1e-05`` comes with its bound columns, as
    the basins stage writes them."""
    bound, bound_value = "none", math.nan
    if isinstance(note, str) and note.startswith(("beyond_grid", "below_grid")):
        bound, bound_value = ("lower" if note.startswith("beyond") else "upper"), float(note.split()[-1])
    row = {"run": run_id, "step": step, "metric": name, "layer": layer, "value": value, "note": note}
    return {**row, "bound": bound, "bound_value": bound_value}


def event(grokked=None, bntrain=None, dd=None, before=None, after=None, lag=None, status="ok") -> dict:
    reading = None if grokked is None else {"grokked": grokked, "before_step": before, "after_step": after}
    return {
        "status": status,
        "grokking": reading,
        "grokking_bntrain": None if bntrain is None else {"grokked": bntrain},
        "bn_grokking": None if lag is None else {"bn_lag_steps": lag},
        "double_descent": None if dd is None else {"double_descent": dd},
    }


def tables(runs: list[dict], metrics: list[dict] = (), events: dict | None = None, steps=STEPS) -> RunTables:
    """RunTables of ``runs``; every run has a history with one row per step of ``steps`` (test_acc unknown)."""
    history = pd.DataFrame([{"run": r["run"], "step": s, "test_acc": math.nan} for r in runs for s in steps])
    frame = pd.DataFrame(list(metrics), columns=METRIC_COLUMNS)
    return make_tables(runs=pd.DataFrame(runs), history=history, metrics=frame, events=events)


def outcome(number: int, by_role: dict, context: dict = CONTEXT):
    result = CLAIMS[number].check(by_role, context)
    assert isinstance(result.value, str) and isinstance(result.reason, str)
    return result


def verdict(number: int, by_role: dict, context: dict = CONTEXT) -> str:
    return outcome(number, by_role, context).verdict


def jitter(seed: int, scale: float) -> float:
    """A fixed, seed-dependent offset in [-scale, scale]."""
    return scale * (np.random.default_rng(seed + 100).uniform(-1, 1))


# --------------------------------------------------------------------------------------------- bootstrap, decisions


def test_spearman_equals_scipys_with_ties_and_constants():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    for _ in range(200):
        x, y = rng.integers(0, 4, 7).astype(float), rng.normal(size=7)
        expected = spearmanr(x, y).statistic
        found = spearman(x, y)
        assert (math.isnan(expected) and math.isnan(found)) or found == pytest.approx(expected, abs=1e-12)
    assert math.isnan(spearman([1, 1, 1, 1], [1, 2, 3, 4]))


def test_bootstrap_reproduces_the_mean_and_a_textbook_interval():
    rng = np.random.default_rng(0)
    values = rng.normal(5.0, 1.0, 40)
    estimate = bootstrap({"x": values}, lambda m: m["x"])
    assert estimate.value == pytest.approx(values.mean()) and estimate.replicates == 40
    half = 1.96 * values.std(ddof=1) / np.sqrt(40)
    assert estimate.low == pytest.approx(values.mean() - half, abs=0.15 * half)
    assert estimate.high == pytest.approx(values.mean() + half, abs=0.15 * half)
    assert bootstrap({"x": values}, lambda m: m["x"]) == estimate  # fixed seed: the same interval every time


def test_one_replicate_gives_no_interval_and_no_verdict():
    estimate = bootstrap({"a": [1.0], "b": [2.0, 3.0]}, lambda m: m["b"] - m["a"])
    assert estimate.value == pytest.approx(1.5) and math.isnan(estimate.low) and estimate.replicates == 1
    part = decide("x", estimate, ">=", 0.0)
    assert part.verdict == INCONCLUSIVE and "no interval" in part.text


@pytest.mark.parametrize(
    ("low", "high", "op", "expected"),
    [
        (0.6, 0.9, ">=", REPRODUCED),
        (0.1, 0.4, ">=", NOT_REPRODUCED),
        (0.3, 0.7, ">=", INCONCLUSIVE),
        (0.1, 0.4, "<", REPRODUCED),
        (0.6, 0.9, "<", NOT_REPRODUCED),
        (0.5, 0.9, ">", INCONCLUSIVE),
        (0.2, 0.5, "<=", REPRODUCED),
    ],
)
def test_a_part_is_decided_only_when_its_whole_interval_is(low, high, op, expected):
    assert decide("x", Estimate((low + high) / 2, low, high, 3), op, 0.5).verdict == expected


def test_bounded_data_decide_only_when_the_bound_settles_it():
    optimistic, pessimistic = Estimate(2.0, 1.5, 2.5, 3), Estimate(0.8, 0.6, 1.0, 3)
    assert decide("x", optimistic, ">=", 0.5, low=pessimistic).verdict == REPRODUCED
    assert decide("x", optimistic, ">=", 1.2, low=pessimistic).verdict == INCONCLUSIVE
    assert decide("x", optimistic, ">=", 3.0, low=pessimistic).verdict == NOT_REPRODUCED


# ----------------------------------------------------------------------------------------------------------- claim 1


def claim1_tables(acc, depth=23, width=1024, dataset="mnist", status="completed", seeds=SEEDS, spread=0.001):
    rows, metrics = [], []
    for seed in seeds:
        rid = f"fig3_depth/d{depth}_s{seed}"
        rows.append(run(rid, "depth", status, dataset, depth=depth, width=width, seed=seed))
        # An earlier, better checkpoint must not count: the verdict uses the final step.
        metrics += [metric(rid, "test_acc", 0.999, step=1000), metric(rid, "test_acc", acc + jitter(seed, spread))]
    return {"depth": tables(rows, metrics)}


def test_claim1():
    assert verdict(1, claim1_tables(0.9845)) == REPRODUCED
    assert verdict(1, claim1_tables(0.970)) == NOT_REPRODUCED
    # The seeds straddle the threshold 0.981: no verdict.
    assert verdict(1, claim1_tables(0.981, spread=0.004)) == INCONCLUSIVE
    assert verdict(1, claim1_tables(0.990, seeds=(0,))) == INCONCLUSIVE  # one seed: no interval
    mnist5k = {"datasets": ["mnist5k"], "sources": ["mnist5k"]}
    assert verdict(1, claim1_tables(0.990, dataset="mnist5k"), mnist5k) == INCONCLUSIVE
    assert verdict(1, claim1_tables(0.990, width=64)) == INCONCLUSIVE
    assert verdict(1, claim1_tables(0.990, status="diverged")) == INCONCLUSIVE
    assert verdict(1, {}) == INCONCLUSIVE
    subset = claim1_tables(0.990)  # a training subset is not the full set
    subset["depth"].runs["train.n_train"] = 10_000
    assert verdict(1, subset) == INCONCLUSIVE
    result = outcome(1, claim1_tables(0.9845))
    assert result.low <= result.estimate <= result.high and result.replicates == 3 and result.decided_by == "a"


# ------------------------------------------------------------------------------------------------- claims 2, 3, 4, 10


def sweep(value_of, depths, widths=(128, 256, 512, 1024), name="test_acc", layer=None, seeds=SEEDS, noise=0.0):
    """A sweep role whose final ``name`` is value_of(depth, width) + seed noise (value_of may return (value, note))."""
    rows, metrics = [], []
    for depth in depths:
        for width in widths:
            for seed in seeds:
                rid = f"fig4/d{depth:02d}_w{width:04d}_s{seed}"
                rows.append(run(rid, "sweep", depth=depth, width=width, seed=seed))
                value = value_of(depth, width)
                value, note = value if isinstance(value, tuple) else (value, None)
                value = value + jitter(seed * 1000 + depth * 10 + width, noise) if not math.isnan(value) else value
                metrics.append(metric(rid, name, value, layer, note=note))
    return rows, metrics


DEPTHS = [2, 4, 6, 8, 12, 16]


def peaked(d, w):
    return 0.97 - 0.001 * (d - 7) ** 2 + 0.002 * np.log2(w / 128)


def test_claim2():
    assert verdict(2, {"sweep": tables(*sweep(peaked, DEPTHS))}) == REPRODUCED
    # Best depth 2 for every width.
    assert verdict(2, {"sweep": tables(*sweep(lambda d, w: 0.98 - 0.001 * d + 1e-5 * w, DEPTHS))}) == NOT_REPRODUCED
    # Peak inside [6, 8] but accuracy falls with width.
    assert verdict(2, {"sweep": tables(*sweep(lambda d, w: peaked(d, w) - 1e-5 * w, DEPTHS))}) == NOT_REPRODUCED
    # Seed noise much larger than the depth effect: the optimum moves from resample to resample.
    assert verdict(2, {"sweep": tables(*sweep(peaked, DEPTHS, noise=0.05))}) == INCONCLUSIVE
    # A grid that never reaches depth 6 cannot locate the optimum.
    assert verdict(2, {"sweep": tables(*sweep(peaked, [1, 2, 3]))}) == INCONCLUSIVE
    assert verdict(2, {"shallow": tables(*sweep(peaked, DEPTHS))}) == INCONCLUSIVE
    assert verdict(2, {"sweep": tables(*sweep(peaked, DEPTHS, seeds=(0,)))}) == INCONCLUSIVE


def test_claim2_trend_needs_four_widths():
    """Three widths give rho = 1 by chance one time in six: a trend part must not be read from them."""
    result = outcome(2, {"sweep": tables(*sweep(peaked, DEPTHS, widths=(128, 256, 512)))})
    assert result.verdict == INCONCLUSIVE and "(b) inconclusive: no depth with >= 4 widths" in result.reason


def test_claim2_skips_diverged_runs():
    rows, metrics = sweep(peaked, DEPTHS)
    for row in metrics:
        if "d02" in row["run"] and row["run"].endswith("s1"):
            row["value"] = 0.999
    assert verdict(2, {"sweep": tables(rows, metrics)}) != REPRODUCED  # depth 2 wins in a third of the resamples
    for row in rows:
        if "d02" in row["run"] and row["run"].endswith("s1"):
            row["status"] = "diverged"
    result = outcome(2, {"sweep": tables(rows, metrics)})
    assert result.verdict == REPRODUCED and "diverged" in result.reason


def test_claim3():
    def flattest_at_6(d, w):
        return 0.3 + 0.01 * (d - 6) ** 2 - 0.02 * np.log2(w / 128)

    def g(value_of, **kwargs):
        return {"sweep": tables(*sweep(value_of, DEPTHS, name="rpd_gradient", layer=1, **kwargs))}

    assert verdict(3, g(flattest_at_6)) == REPRODUCED
    assert verdict(3, g(lambda d, w: 1.0 - 0.01 * d - 0.001 * w)) == NOT_REPRODUCED  # smallest at the deepest depth
    # Smallest at depth 6 but rising with width: part (b) fails alone.
    result = outcome(3, g(lambda d, w: flattest_at_6(d, w) + 0.05 * np.log2(w / 128)))
    assert result.verdict == NOT_REPRODUCED and "(a) reproduced" in result.reason and result.decided_by == "b"
    other_layer = {"sweep": tables(*sweep(flattest_at_6, DEPTHS, name="rpd_gradient", layer=2))}
    assert verdict(3, other_layer) == INCONCLUSIVE  # the first layer's gradient is missing


def saturating(sign: float, at: int = 8):
    return lambda d, w: 10 ** (-1 + sign * 0.1 * min(d, at))


BASIN_DEPTHS = [1, 2, 4, 6, 8, 12, 16, 24]


def claim4_tables(input_of, weight_of, depths=BASIN_DEPTHS, seeds=SEEDS):
    rows, metrics = sweep(input_of, depths, widths=(256, 1024), name="basin_input", seeds=seeds)
    _, weight = sweep(weight_of, depths, widths=(256, 1024), name="basin_weight", seeds=seeds)
    return {"sweep": tables(rows, metrics + weight)}


def test_claim4():
    assert verdict(4, claim4_tables(saturating(+1), saturating(-1))) == REPRODUCED
    assert verdict(4, claim4_tables(saturating(+1, at=24), saturating(-1))) == NOT_REPRODUCED  # no saturation
    assert verdict(4, claim4_tables(saturating(+1), saturating(+1))) == NOT_REPRODUCED  # weight basin grows
    assert verdict(4, claim4_tables(saturating(+1), saturating(-1), depths=[1, 2, 3])) == INCONCLUSIVE
    # Three depths up to the pivot are too few to read the growth as a trend.
    assert verdict(4, claim4_tables(saturating(+1), saturating(-1), depths=[2, 4, 8, 16])) == INCONCLUSIVE
    assert verdict(4, claim4_tables(saturating(+1), saturating(-1), seeds=(0,))) == INCONCLUSIVE


def test_claim4_bounded_basins_take_their_bound():
    def input_of(d, w):
        return (math.nan, "beyond_grid: > 100") if d > 8 else saturating(+1)(d, w)

    assert verdict(4, claim4_tables(input_of, saturating(-1))) == NOT_REPRODUCED  # the bound is a large tail rise


def claim10_tables(grokked_best: bool, best_g: float, others_grok: bool = True, history_steps=STEPS):
    rows, metrics = sweep(lambda d, w: 0.9 + 0.001 * d, [2, 4, 6], widths=(256,))
    best = {r["run"] for r in rows if "d06" in r["run"]}
    for i, r in enumerate(rows):
        metrics.append(metric(r["run"], "rpd_gradient", best_g if r["run"] in best else 0.5 + i, layer=1))
    events = {}
    for r in rows:
        flag = grokked_best if r["run"] in best else (others_grok and "d02" in r["run"])
        events[r["run"]] = event(grokked=flag)
    return {"sweep": tables(rows, metrics, events, steps=history_steps)}


def test_claim10():
    assert verdict(10, claim10_tables(grokked_best=False, best_g=0.1)) == REPRODUCED
    assert verdict(10, claim10_tables(grokked_best=True, best_g=0.1)) == NOT_REPRODUCED
    assert verdict(10, claim10_tables(grokked_best=False, best_g=9.0)) == NOT_REPRODUCED  # steepest first layer
    # Nothing grokked anywhere: "the best run does not grok" says nothing.
    result = outcome(10, claim10_tables(grokked_best=False, best_g=0.1, others_grok=False))
    assert result.verdict == INCONCLUSIVE and "no sweep run groks" in result.reason
    # Two snapshots cannot show grokking.
    assert verdict(10, claim10_tables(grokked_best=False, best_g=0.1, history_steps=[0, FINAL])) == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------------- claim 5


def claim5_tables(sizes, acc, g, with_rpd=True, seeds=SEEDS):
    """acc/g: {activation: [value per size]}; n_train null for the largest size."""
    rows, metrics = [], []
    for activation in ("tanh", "linear"):
        for i, n in enumerate(sizes):
            for seed in seeds:
                rid = f"fig2/{activation}_n{n}_s{seed}"
                rows.append(run(rid, "shallow", activation=activation, n_train=None if n == 60_000 else n, seed=seed))
                metrics.append(metric(rid, "test_acc", acc[activation][i] + jitter(seed, 0.002)))
                if with_rpd:
                    metrics.append(metric(rid, "rpd_gradient", g[activation][i] + jitter(seed, 0.01), layer=1))
    return {"shallow": tables(rows, metrics)}


SIZES = [600, 5000, 60_000]
G_OK = {"tanh": [1.0, 0.9, 0.5], "linear": [1.05, 1.0, 1.0]}
ACC_OK = {"tanh": [0.88, 0.95, 0.98], "linear": [0.875, 0.91, 0.92]}


def test_claim5():
    assert verdict(5, claim5_tables(SIZES, ACC_OK, G_OK)) == REPRODUCED
    same = {"tanh": [0.88, 0.95, 0.98], "linear": [0.875, 0.945, 0.975]}
    assert verdict(5, claim5_tables(SIZES, same, G_OK)) == NOT_REPRODUCED  # the curves never separate
    apart = {"tanh": [0.5, 0.9, 0.5], "linear": [1.05, 1.0, 1.0]}
    assert verdict(5, claim5_tables(SIZES, ACC_OK, apart)) == NOT_REPRODUCED  # RPDs already differ at 600
    assert verdict(5, claim5_tables([100, 1000, 4000], ACC_OK, G_OK)) == INCONCLUSIVE  # sizes stop at 4,000
    assert verdict(5, claim5_tables(SIZES, ACC_OK, G_OK, with_rpd=False)) == INCONCLUSIVE
    assert verdict(5, claim5_tables(SIZES, ACC_OK, G_OK, seeds=(0,))) == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------------- claim 6


def claim6_tables(before, after, deep, grokked=True, deep_depth=12, seeds=SEEDS):
    """before/after/deep: basin_input values (log10 jittered by seed), or (nan, note) for a bounded basin."""
    rows, metrics, events = [], [], {}

    def basin(run_id, value, step, seed):
        value, note = value if isinstance(value, tuple) else (value * 10 ** jitter(seed, 0.02), None)
        return metric(run_id, "basin_input", value, step=step, note=note)

    for seed in seeds:
        rid = f"fig6_grokking/s{seed}"
        rows.append(run(rid, "grokking", depth=2, width=200, seed=seed))
        metrics += [basin(rid, before, 100, seed), basin(rid, after, 1000, seed)]
        events[rid] = event(grokked=grokked, before=100, after=1000)
    deep_rows, deep_metrics = [], []
    for seed in seeds:
        for depth in (deep_depth, 2):
            rid = f"fig4/d{depth}_s{seed}"
            deep_rows.append(run(rid, "sweep", depth=depth, width=256, seed=seed))
            deep_metrics.append(basin(rid, deep if depth == deep_depth else 1e-5, FINAL, seed + depth))
    return {"grokking": tables(rows, metrics, events), "sweep": tables(deep_rows, deep_metrics)}


def test_claim6():
    assert verdict(6, claim6_tables(10**-3.5, 1e-3, 1e-2)) == REPRODUCED
    # The transition's position is reported, never scored: far from 1e-3 it still reproduces.
    result = outcome(6, claim6_tables(0.1, 0.3, 3.0))
    assert result.verdict == REPRODUCED and "(a) reported, not scored" in result.reason
    assert verdict(6, claim6_tables(1e-3, 10**-3.3, 1e-2)) == NOT_REPRODUCED  # the basin shrinks after grokking
    assert verdict(6, claim6_tables(10**-3.5, 1e-3, 1e-3)) == NOT_REPRODUCED  # deep nets' basins are no larger
    assert verdict(6, claim6_tables(10**-3.5, 1e-3, 1e-2, grokked=False)) == INCONCLUSIVE  # nothing to compare
    assert verdict(6, claim6_tables(10**-3.5, 1e-3, 1e-2, deep_depth=4)) == INCONCLUSIVE  # only shallow sweep runs
    assert verdict(6, {"sweep": claim6_tables(1e-4, 1e-3, 1e-2)["sweep"]}) == INCONCLUSIVE
    assert verdict(6, claim6_tables(10**-3.5, 1e-3, 1e-2, seeds=(0,))) == INCONCLUSIVE


def test_claim6_bounded_basins_decide_only_when_the_bound_settles_it():
    assert verdict(6, claim6_tables(10**-3.5, 1e-3, (math.nan, "beyond_grid: > 100"))) == REPRODUCED
    assert verdict(6, claim6_tables((math.nan, "below_grid: < 1e-05"), 1e-3, 1e-2)) == REPRODUCED
    # Before grokking beyond 9e-4, after at 1e-3: the growth is at most 0.05 decades, certainly below 0.1.
    assert verdict(6, claim6_tables((math.nan, "beyond_grid: > 0.0009"), 1e-3, 1e-2)) == NOT_REPRODUCED
    # Before grokking only known to be below 1e-2, after at 1e-3: the growth is undecided, the rest holds.
    assert verdict(6, claim6_tables((math.nan, "below_grid: < 0.01"), 1e-3, 1e-2)) == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------------- claim 7


def claim7_tables(readings: dict[int, tuple], steps=STEPS):
    """readings: {depth: (bn lag, train-mode grokked)}; one run per depth, each a replicate."""
    rows = [run(f"fig3_depth/d{d}", "depth", depth=d, width=1024) for d in readings]
    events = {f"fig3_depth/d{d}": event(grokked=False, bntrain=t, lag=lag) for d, (lag, t) in readings.items()}
    return {"depth": tables(rows, [], events, steps=steps)}


def test_claim7():
    assert verdict(7, claim7_tables({12: (20, False), 23: (40, False), 32: (60, False)})) == REPRODUCED
    # Eval-mode test accuracy leads the train-mode one: no removal to speak of.
    assert verdict(7, claim7_tables({12: (-20, False), 23: (-40, False), 32: (10, False)})) == INCONCLUSIVE
    assert verdict(7, claim7_tables({12: (-20, False), 23: (-40, False), 32: (-10, False)})) == INCONCLUSIVE
    assert verdict(7, claim7_tables({12: (20, True), 23: (40, True), 32: (60, True)})) == NOT_REPRODUCED
    # No run shows any lag: inconclusive, not "not reproduced".
    result = outcome(7, claim7_tables({12: (0, False), 23: (0, False)}))
    assert result.verdict == INCONCLUSIVE and "no depth run shows any lag" in result.reason
    assert verdict(7, claim7_tables({23: (40, False)})) == INCONCLUSIVE  # one run: no interval
    assert verdict(7, claim7_tables({12: (20, False), 23: (40, False)}, steps=[0, FINAL])) == INCONCLUSIVE


def test_claim7_negative_lags_everywhere_are_not_reproduced():
    readings = {d: (-30 - d, False) for d in (8, 12, 16, 23)}
    readings[32] = (5, False)  # one run lags a little: the lag exists, the mean says otherwise
    assert verdict(7, claim7_tables(readings)) == NOT_REPRODUCED


# ----------------------------------------------------------------------------------------------------------- claim 8


def claim8_tables(lag_of, batches=(16, 64, 256, 1024), lrs=(3e-4, 1e-3, 3e-3, 1e-2), seeds=SEEDS, noise=1.0):
    """lag_of(batch, lr) -> the BN lag; a batch axis at lr 1e-3 and an lr axis at batch 128."""
    rows, events = [], {}
    points = [(b, 1e-3) for b in batches] + [(128, lr) for lr in lrs]
    for batch, lr in points:
        for seed in seeds:
            rid = f"fig8/b{batch}_lr{lr:g}_s{seed}"
            rows.append(run(rid, "conditions", depth=23, width=1024, batch=batch, lr=lr, seed=seed))
            lag = lag_of(batch, lr)
            events[rid] = event(grokked=False, lag=None if lag is None else lag + jitter(seed + batch, noise))
    return {"conditions": tables(rows, [], events)}


def paper_lag(batch, lr):
    return 5 * np.log2(batch) - 4 * np.log10(lr)


def test_claim8():
    assert verdict(8, claim8_tables(paper_lag)) == REPRODUCED
    assert verdict(8, claim8_tables(lambda b, lr: 100 - 5 * np.log2(b) - 4 * np.log10(lr))) == NOT_REPRODUCED
    # Seed noise swamps the trend.
    assert verdict(8, claim8_tables(paper_lag, noise=60.0)) == INCONCLUSIVE
    # Three batch sizes: no trend can be read.
    assert verdict(8, claim8_tables(paper_lag, batches=(16, 128, 1024))) == INCONCLUSIVE
    result = outcome(8, claim8_tables(lambda b, lr: 0.0, noise=0.0))
    assert result.verdict == INCONCLUSIVE and "no condition run shows any lag" in result.reason
    assert verdict(8, claim8_tables(paper_lag, seeds=(0,))) == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------------- claim 9


def g_curves(rid: str, peaks: list[int], steps=(1, 10, 100, 1000, 10000)) -> list[dict]:
    """rpd_gradient of layer m peaking at peaks[m-1]."""
    return [
        metric(rid, "rpd_gradient", -abs(np.log10(s) - np.log10(peak)), layer=m, step=s)
        for m, peak in enumerate(peaks, start=1)
        for s in steps
    ]


def claim9_tables(dd: dict[int, bool], peaks: dict[int, list[int]], steps=(1, 10, 100, 1000, 10000), seeds=SEEDS):
    rows, metrics, events = [], [], {}
    for d in dd:
        for seed in seeds:
            rid = f"fig3_depth/d{d}_s{seed}"
            rows.append(run(rid, "depth", depth=d, width=1024, seed=seed))
            jittered = [max(1, int(p * 10 ** jitter(seed + m, 0.05))) for m, p in enumerate(peaks[d])]
            metrics += g_curves(rid, jittered, steps)
            events[rid] = event(grokked=True, dd=dd[d])
    return {"depth": tables(rows, metrics, events)}


SYNC, STAGGERED, RISING = [100, 100, 100], [10, 100, 1000], [10000, 10000, 10000]


def test_claim9():
    assert verdict(9, claim9_tables({23: False, 32: True}, {23: STAGGERED, 32: SYNC})) == REPRODUCED
    assert verdict(9, claim9_tables({23: True, 32: True}, {23: STAGGERED, 32: SYNC})) == NOT_REPRODUCED
    assert verdict(9, claim9_tables({23: False, 32: True}, {23: SYNC, 32: STAGGERED})) == NOT_REPRODUCED
    assert verdict(9, claim9_tables({12: False, 23: False}, {12: STAGGERED, 23: SYNC})) == INCONCLUSIVE
    few_steps = claim9_tables({23: False, 32: True}, {23: STAGGERED, 32: SYNC}, steps=(10, 100, 1000))
    assert verdict(9, few_steps) == INCONCLUSIVE
    assert verdict(9, claim9_tables({23: False, 32: True}, {23: STAGGERED, 32: SYNC}, seeds=(0,))) == INCONCLUSIVE


def test_claim9_a_gradient_rising_to_the_end_has_no_synchronous_turning_points():
    """Every layer peaks at the last analysed step: 'synchronous turning points' must not pass."""
    result = outcome(9, claim9_tables({23: False, 32: True}, {23: STAGGERED, 32: RISING}))
    assert result.verdict == NOT_REPRODUCED and "no synchronous turning points" in result.reason


# ---------------------------------------------------------------------------------------------------- claims 11, 12


def claim11_tables(lp_first: dict[int, int], lmap_first: dict[int, int], reference=0.98, role="depth"):
    """Per depth, the first start layer at which LP (L-map) pruning is accurate; below it, accuracy 0.5."""
    rows, metrics = [], []
    for depth in lp_first:
        rid = f"fig3_{role}/d{depth}"
        rows.append(run(rid, role, depth=depth, width=1024))
        metrics.append(metric(rid, "test_acc", reference))
        for layer in range(1, depth + 2):
            metrics.append(metric(rid, "lp_acc", reference if layer >= lp_first[depth] else 0.5, layer=layer))
            metrics.append(metric(rid, "lmap_acc", reference - 0.01 if layer >= lmap_first[depth] else 0.3, layer))
    return {role: tables(rows, metrics)}


def test_claim11_standard_structure():
    depths = (8, 12, 16)
    assert verdict(11, claim11_tables({d: 2 for d in depths}, {d: d for d in depths})) == REPRODUCED
    # L-map pruning already works from the second layer: the net is linear throughout.
    assert verdict(11, claim11_tables({d: 2 for d in depths}, {d: 2 for d in depths})) == NOT_REPRODUCED
    # LP needs the last layers too.
    assert verdict(11, claim11_tables({d: d for d in depths}, {d: d + 1 for d in depths})) == NOT_REPRODUCED
    assert verdict(11, claim11_tables({12: 2}, {12: 12})) == INCONCLUSIVE  # one run: no interval
    found = positions(claim11_tables({12: 4}, {12: 10})["depth"], "fig3_depth/d12")
    assert found == pytest.approx((3 / 12, 9 / 12))


def claim12_tables(curve, seeds=SEEDS, sizes=(600, 60_000)):
    rows, metrics = [], []
    for n in sizes:
        for seed in seeds:
            rid = f"fig2/tanh_n{n}_s{seed}"
            rows.append(run(rid, "shallow", activation="tanh", n_train=None if n == 60_000 else n, seed=seed))
            values = curve if n == max(sizes) else [0.0] * len(curve)
            for step, value in zip(STEPS, values, strict=True):
                metrics.append(metric(rid, "rpd_gradient", value + jitter(seed + step, 0.01), layer=1, step=step))
    return {"shallow": tables(rows, metrics)}


def test_claim12_rise_peak_fall():
    assert verdict(12, claim12_tables([0.1, 0.6, 1.2, 0.9, 0.7])) == REPRODUCED
    assert verdict(12, claim12_tables([0.1, 0.4, 0.7, 1.0, 1.2])) == NOT_REPRODUCED  # rises to the end
    assert verdict(12, claim12_tables([1.2, 1.0, 0.8, 0.6, 0.4])) == NOT_REPRODUCED  # never rises
    assert verdict(12, claim12_tables([0.1, 0.6, 1.2, 0.9, 0.7], seeds=(0,))) == INCONCLUSIVE


# ------------------------------------------------------------------------------------ claims 13-15: CNNs (beyond paper)

CNN_DEPTHS = (2, 4, 6, 8)


def cnn_tables(profile, depths=CNN_DEPTHS, widths=(8, 16), seeds=SEEDS, noise=0.0, head=1, basins=None):
    """A ``cnn`` role: per run, rpd_gradient and opm_fraction at every analysed layer (``depth`` conv layers and
    ``head`` hidden head layers) = profile(layer) + seed noise; ``basins(depth) -> (input, weight)`` final basins."""
    rows, metrics = [], []
    for depth in depths:
        for width in widths:
            for seed in seeds:
                rid = f"figS3_cnn/d{depth}_w{width}_s{seed}"
                rows.append(run(rid, "cnn", depth=depth, width=width, seed=seed) | {"model.arch": "cnn"})
                for layer in range(1, depth + head + 1):
                    for name in ("rpd_gradient", "opm_fraction"):
                        value = profile(layer) + jitter(seed * 1000 + depth * 100 + width + layer, noise)
                        metrics.append(metric(rid, name, value, layer=layer))
                if basins is not None:
                    for name, value in zip(("basin_input", "basin_weight"), basins(depth), strict=True):
                        metrics.append(metric(rid, name, value * 10 ** jitter(seed + depth, 0.02)))
    return {"cnn": tables(rows, metrics)}


def test_cnn_layer_structure():
    assert verdict(13, cnn_tables(lambda layer: 0.1 * layer)) == REPRODUCED  # G and OPM fraction rise with the layer
    assert verdict(13, cnn_tables(lambda layer: 1 - 0.1 * layer)) == NOT_REPRODUCED  # early layers the most linear
    # Seed noise of the order of the rise: the median rho's interval straddles the criterion.
    assert verdict(13, cnn_tables(lambda layer: 0.02 * layer, noise=0.15)) == INCONCLUSIVE
    # Noise far above a faint rise: the seed-averaged curves have no trend, and the interval says so.
    assert verdict(13, cnn_tables(lambda layer: 0.01 * layer, noise=0.3)) == NOT_REPRODUCED
    assert verdict(13, cnn_tables(lambda layer: 0.1 * layer, seeds=(0,))) == INCONCLUSIVE  # no interval
    # Nets of 2 conv layers and a 1-layer head: 3 layers are too few to read a trend.
    result = outcome(13, cnn_tables(lambda layer: 0.1 * layer, depths=(2,)))
    assert result.verdict == INCONCLUSIVE and ">= 4 layers" in result.reason
    # The MLP roles do not stand in for the CNN's.
    assert "role 'cnn' missing" in outcome(13, {"depth": cnn_tables(lambda layer: 0.1 * layer)["cnn"]}).reason


def test_cnn_pruning_positions_are_claim_11s_criterion_on_the_cnn_role():
    depths = (4, 6, 8)
    tables_of = {d: 2 for d in depths}, {d: d for d in depths}
    assert verdict(14, claim11_tables(*tables_of, role="cnn")) == REPRODUCED
    assert verdict(14, claim11_tables({d: 2 for d in depths}, {d: 2 for d in depths}, role="cnn")) == NOT_REPRODUCED
    assert verdict(14, claim11_tables(*tables_of, role="depth")) == INCONCLUSIVE  # an MLP depth role is not a CNN
    assert verdict(14, claim11_tables({6: 2}, {6: 6}, role="cnn")) == INCONCLUSIVE  # one run: no interval


def test_cnn_basin_trends():
    def grows_and_shrinks(depth):
        return 10 ** (-2 + 0.2 * depth), 10 ** (0 - 0.1 * depth)

    assert verdict(15, cnn_tables(lambda layer: 0.0, basins=grows_and_shrinks)) == REPRODUCED
    assert verdict(15, cnn_tables(lambda layer: 0.0, basins=lambda d: (10 ** (-0.2 * d), 1.0 / d))) == NOT_REPRODUCED
    flat = outcome(15, cnn_tables(lambda layer: 0.0, basins=lambda d: (1e-2, 1.0)))
    assert flat.verdict == NOT_REPRODUCED  # no trend at all is not the claimed trend
    three = outcome(15, cnn_tables(lambda layer: 0.0, depths=(2, 4, 6), basins=grows_and_shrinks))
    assert three.verdict == INCONCLUSIVE and "no width with >= 4 depths" in three.reason
    assert verdict(15, cnn_tables(lambda layer: 0.0, seeds=(0,), basins=grows_and_shrinks)) == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------- the scorecard


def test_evaluate_shape_and_empty_input():
    card = evaluate({}, CONTEXT)
    assert list(card.columns) == SCORECARD_COLUMNS
    assert card["claim"].tolist() == list(range(1, 16)) == [*PAPER_CLAIMS, *BEYOND_PAPER_CLAIMS]
    assert (card["verdict"] == INCONCLUSIVE).all() and card["reason"].str.contains("missing").all()
    scales = card.set_index("claim")["scale"]
    assert (scales[list(PAPER_CLAIMS)] == REDUCED).all() and (scales[list(BEYOND_PAPER_CLAIMS)] == BEYOND_PAPER).all()


def test_evaluate_combines_roles_and_reports_the_interval():
    by_role = {**claim1_tables(0.9845), **claim8_tables(paper_lag)}
    card = evaluate(by_role, CONTEXT).set_index("claim")
    assert card.loc[1, "verdict"] == REPRODUCED and card.loc[8, "verdict"] == REPRODUCED
    assert card.loc[1, "criterion"] == CLAIMS[1].criterion
    assert card.loc[1, "interval_low"] <= card.loc[1, "estimate"] <= card.loc[1, "interval_high"]
    assert card.loc[1, "replicates"] == 3 and card.loc[1, "scale"] == PAPER
    assert card.loc[8, "scale"] == PAPER  # Adam at 23 x 1024 on the full MNIST
    # A sweep of narrow nets is not the paper's scale.
    assert (
        evaluate({"sweep": tables(*sweep(peaked, DEPTHS, widths=(32, 64, 96, 128)))}, CONTEXT)
        .set_index("claim")
        .loc[2, "scale"]
        == REDUCED
    )


def test_scale_labels_follow_data_sizes_and_optimizer():
    runs = claim1_tables(0.99)["depth"].runs
    assert claims.scale(1, {"depth": runs}, CONTEXT) == PAPER
    assert claims.scale(1, {"depth": runs.assign(dataset="mnist5k")}, {"datasets": ["mnist5k"]}) == REDUCED
    assert claims.scale(1, {"depth": runs.assign(**{"model.width": 64})}, CONTEXT) == REDUCED
    assert claims.scale(1, {"depth": runs.assign(**{"train.optimizer": "sgd"})}, CONTEXT) == REDUCED
    sweep_runs = pd.DataFrame(sweep(peaked, DEPTHS, widths=(128, 1280))[0])
    assert claims.scale(2, {"sweep": sweep_runs}, CONTEXT) == PAPER
    grok = pd.DataFrame([run("g/s0", "grokking", depth=2, width=200, n_train=1000, optimizer="adamw")])
    assert claims.scale(6, {"grokking": grok}, CONTEXT) == PAPER
    assert claims.scale(6, {"grokking": grok.assign(dataset="fashion")}, {"datasets": ["fashion"]}) == PAPER_SIZE
    assert claims.scale(6, {"grokking": grok.assign(**{"train.n_train": 2000})}, CONTEXT) == REDUCED


def test_the_paper_sizes_on_other_data_are_labelled_paper_size():
    runs = claim1_tables(0.99)["depth"].runs.assign(dataset="fashion")
    fashion = {"datasets": ["fashion"], "sources": ["idx"], "n_train": 60000}
    assert claims.scale(1, {"depth": runs}, fashion) == PAPER_SIZE
    assert claims.scale(1, {"depth": runs}, {**fashion, "n_train": 30000}) == REDUCED  # a smaller training set
    assert claims.scale(1, {"depth": runs}, {"datasets": ["fashion"], "sources": ["idx"]}) == REDUCED  # size unknown
    assert claims.scale(1, {"depth": runs.assign(**{"model.depth": 8})}, fashion) == REDUCED
    shallow = pd.DataFrame(
        [run(f"s/n{n}", "shallow", depth=1, width=2048, n_train=n, optimizer="adam") for n in (600, 60000)]
    ).assign(dataset="fashion")
    assert claims.scale(5, {"shallow": shallow}, fashion) == PAPER_SIZE
    assert claims.scale(5, {"shallow": shallow.assign(dataset="mnist")}, CONTEXT) == PAPER


def test_tables_holding_several_roles_are_restricted_to_the_role():
    depth = claim1_tables(0.97)["depth"]
    rows, metrics = sweep(lambda d, w: 0.99, [23], widths=(1024,))
    merged = depth._replace(
        runs=pd.concat([depth.runs, pd.DataFrame(rows)], ignore_index=True),
        metrics=pd.concat([depth.metrics, pd.DataFrame(metrics)], ignore_index=True),
    )
    assert verdict(1, {"depth": merged, "sweep": merged}) == NOT_REPRODUCED


def test_design_check_names_what_a_design_lacks():
    sweep_runs = pd.DataFrame(sweep(peaked, [1, 2, 4, 7, 12], widths=(16, 32, 64, 128))[0])
    found = design_check({"sweep": sweep_runs}, {"datasets": ["mnist5k"]})
    assert found[2] is None and found[3] is None and found[4] is None and found[10] is None
    assert found[1] == "no depth role" and found[8] == "no conditions role"
    narrow = pd.DataFrame(sweep(peaked, [1, 2, 4, 8], widths=(32, 128))[0])  # the old Fashion grid
    found = design_check({"sweep": narrow}, {"datasets": ["fashion"]})
    assert "around [6, 8]" in found[2] and "pivot" in found[4]
    single = pd.DataFrame(sweep(peaked, [1, 2, 4, 7, 12], widths=(16, 32, 64, 128), seeds=(0,))[0])
    assert "seeds" in design_check({"sweep": single}, CONTEXT)[2]


def test_design_check_of_the_cnn_rows():
    design = design_runs_of(cnn_tables(lambda layer: 0.1 * layer)["cnn"].runs)
    assert all(design[n] is None for n in BEYOND_PAPER_CLAIMS)
    shallow_nets = design_runs_of(cnn_tables(lambda layer: 0.1 * layer, depths=(2,))["cnn"].runs)
    assert shallow_nets[13] == "no cnn run with >= 4 analysed layers" and "4 depths" in shallow_nets[15]
    two_layer_head = cnn_tables(lambda layer: 0.1 * layer, depths=(2,))["cnn"].runs
    assert design_runs_of(two_layer_head.assign(**{"model.head_widths": "[64, 64]"}))[13] is None  # 2 + 2 layers
    single = design_runs_of(cnn_tables(lambda layer: 0.1 * layer, seeds=(0,))["cnn"].runs)
    assert "seeds" in single[13] and "seeds" in single[15] and single[14] is None  # 8 runs, each a replicate
    assert all(why == "no cnn role" for n, why in design_check({}, CONTEXT).items() if n in BEYOND_PAPER_CLAIMS)


def design_runs_of(cnn_runs: pd.DataFrame) -> dict:
    """The design check of a cnn role's runs, with the preset's one-layer head where they name none."""
    head = cnn_runs.get("model.head_widths", "[64]")
    return design_check({"cnn": cnn_runs.assign(**{"model.head_widths": head})}, {})


def test_only_the_paper_figures_and_fig_s3s_cnn_role_feed_the_scorecard():
    assert scored_role("fig4", "sweep") and scored_role("fig3", "depth") and scored_role("figS3", "cnn")
    assert not scored_role("figS1", "sweep") and not scored_role("figS3", "mlp") and not scored_role("figS2", "runs")


def test_markdown_states_every_criterion_and_constant():
    text = MARKDOWN.read_text()
    for number, claim in CLAIMS.items():
        assert f"## Claim {number}: {claim.title}" in text
        assert f"> {claim.criterion}" in text
        assert f"> {claim.quantity}" in text
    constants = re.findall(r"`([A-Z][A-Z0-9_]+)` = (-?[0-9]+(?:\.[0-9]+)?|\([-0-9., ]+\))", text)
    assert len(constants) > 30
    modules = [claims.stats, claims.common, claims.paper_scale, *claims.GROUPS]
    for name, value in constants:
        defined = [getattr(module, name) for module in modules if name in assigned_names(module)]
        assert len(defined) == 1, f"{name} is assigned in {len(defined)} claims modules"
        assert defined[0] == pytest.approx(ast.literal_eval(value)), name


def assigned_names(module) -> set[str]:
    """The names a module assigns at its top level (not those it imports)."""
    tree = ast.parse(Path(module.__file__).read_text())
    targets = [target for node in tree.body if isinstance(node, ast.Assign) for target in node.targets]
    return {name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)}
