"""Tests for netdyn.claims: for each claim of methods.md §14, constructed tables that must give a reproduced, a
not-reproduced and an inconclusive verdict; plus the scorecard's shape and its agreement with report/claims.md."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from netdyn import claims
from netdyn.claims import CLAIMS, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, evaluate
from netdyn.collection import RunTables

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
}
CONTEXT = {"datasets": ["mnist"], "sources": ["mnist"]}
MARKDOWN = Path(__file__).resolve().parents[1] / "report" / "claims.md"


def run(run_id: str, role: str, status: str = "completed", dataset: str = "mnist", **spec) -> dict:
    return {
        "run": run_id,
        "experiment": run_id.split("/")[0],
        "role": role,
        "status": status,
        "diverged_at": 5 if status == "diverged" else None,
        "dataset": dataset,
        "train.n_train": None,
        **{SPEC[key]: value for key, value in spec.items()},
    }


def metric(run_id: str, name: str, value: float, layer: int | None = None, step: int = FINAL, note=None) -> dict:
    return {"run": run_id, "step": step, "metric": name, "layer": layer, "value": value, "note": note}


def event(grokked=None, bntrain=None, dd=None, before=None, after=None, status="ok") -> dict:
    reading = None if grokked is None else {"grokked": grokked, "before_step": before, "after_step": after}
    return {
        "status": status,
        "grokking": reading,
        "grokking_bntrain": None if bntrain is None else {"grokked": bntrain},
        "double_descent": None if dd is None else {"double_descent": dd},
    }


def tables(runs: list[dict], metrics: list[dict] = (), events: dict | None = None, steps=STEPS) -> RunTables:
    """RunTables of ``runs``; every run has a history with one row per step of ``steps`` (test_acc unknown)."""
    history = pd.DataFrame([{"run": r["run"], "step": s, "test_acc": math.nan} for r in runs for s in steps])
    columns = ["run", "step", "metric", "layer", "value", "note"]
    empty = pd.DataFrame()
    return RunTables(
        pd.DataFrame(runs),
        history,
        pd.DataFrame(list(metrics), columns=columns),
        empty,
        empty,
        empty,
        empty,
        events or {},
    )


def verdict(number: int, by_role: dict, context: dict = CONTEXT) -> str:
    outcome = claims.CHECKS[number](by_role, context)
    assert isinstance(outcome.value, str) and isinstance(outcome.reason, str)
    return outcome.verdict


# ----------------------------------------------------------------------------------------------------------- claim 1


def claim1_tables(acc: float, depth: int = 23, width: int = 1024, dataset: str = "mnist", status="completed"):
    rid = f"fig3_depth/d{depth}"
    rows = [run(rid, "depth", status, dataset, depth=depth, width=width)]
    # An earlier, better checkpoint must not count: the verdict uses the final step.
    return {"depth": tables(rows, [metric(rid, "test_acc", 0.999, step=1000), metric(rid, "test_acc", acc)])}


def test_claim1():
    assert verdict(1, claim1_tables(0.9835)) == REPRODUCED
    assert verdict(1, claim1_tables(0.970)) == NOT_REPRODUCED
    assert verdict(1, claim1_tables(0.990, dataset="mnist5k"), {"datasets": ["mnist5k"], "sources": ["mnist5k"]}) == (
        INCONCLUSIVE
    )
    assert verdict(1, claim1_tables(0.990, width=64)) == INCONCLUSIVE
    assert verdict(1, claim1_tables(0.990, status="diverged")) == INCONCLUSIVE
    assert verdict(1, {}) == INCONCLUSIVE
    # A training subset is not the full set.
    subset = claim1_tables(0.990)
    subset["depth"].runs["train.n_train"] = 10_000
    assert verdict(1, subset) == INCONCLUSIVE


# ------------------------------------------------------------------------------------------------- claims 2, 3, 4, 10


def sweep(value_of, depths, widths=(128, 256, 512), name="test_acc", layer=None, seeds=(0,), extra=(), events=None):
    """A sweep role whose final ``name`` is value_of(depth, width) (value_of may return (value, note))."""
    rows, metrics = [], list(extra)
    for depth in depths:
        for width in widths:
            for seed in seeds:
                rid = f"fig4/d{depth:02d}_w{width:04d}_s{seed}"
                rows.append(run(rid, "sweep", depth=depth, width=width, seed=seed))
                value = value_of(depth, width)
                value, note = value if isinstance(value, tuple) else (value, None)
                metrics.append(metric(rid, name, value, layer, note=note))
    return rows, metrics


DEPTHS = [2, 4, 6, 8, 12, 16]


def test_claim2():
    def peaked(d, w):
        return 0.97 - 0.001 * (d - 7) ** 2 + 0.002 * np.log2(w / 128)

    assert verdict(2, {"sweep": tables(*sweep(peaked, DEPTHS))}) == REPRODUCED
    # Best depth 2 for every width.
    assert verdict(2, {"sweep": tables(*sweep(lambda d, w: 0.98 - 0.001 * d + 1e-5 * w, DEPTHS))}) == NOT_REPRODUCED
    # Peak inside [6, 8] but accuracy falls with width.
    assert verdict(2, {"sweep": tables(*sweep(lambda d, w: peaked(d, w) - 1e-4 * w, DEPTHS))}) == NOT_REPRODUCED
    # The quick grid never reaches depth 6: the optimum cannot be located.
    assert verdict(2, {"sweep": tables(*sweep(peaked, [1, 2, 3]))}) == INCONCLUSIVE
    assert verdict(2, {"shallow": tables(*sweep(peaked, DEPTHS))}) == INCONCLUSIVE


def test_claim2_averages_seeds_and_skips_diverged():
    rows, metrics = sweep(lambda d, w: 0.97 - 0.001 * (d - 7) ** 2 + 0.002 * np.log2(w / 128), DEPTHS, seeds=(0, 1))
    # Seed 1 of depth 2 is far better; averaged with seed 0 it still loses to depth 6-8 unless it exceeds by 2x.
    for row in metrics:
        if "d02" in row["run"] and row["run"].endswith("s1"):
            row["value"] = 0.999
    assert verdict(2, {"sweep": tables(rows, metrics)}) == NOT_REPRODUCED
    # Marking those runs diverged drops them: the remaining seed gives the peak back.
    for row in rows:
        if "d02" in row["run"] and row["run"].endswith("s1"):
            row["status"] = "diverged"
    outcome = claims.claim_2({"sweep": tables(rows, metrics)}, CONTEXT)
    assert outcome.verdict == REPRODUCED and "diverged" in outcome.reason


def test_claim3():
    def flattest_at_6(d, w):
        return 0.3 + 0.01 * (d - 6) ** 2 - 0.02 * np.log2(w / 128)

    assert verdict(3, {"sweep": tables(*sweep(flattest_at_6, DEPTHS, name="rpd_gradient", layer=1))}) == REPRODUCED
    # Smallest at the deepest depth.
    rising = sweep(lambda d, w: 1.0 - 0.01 * d - 0.001 * w, DEPTHS, name="rpd_gradient", layer=1)
    assert verdict(3, {"sweep": tables(*rising)}) == NOT_REPRODUCED
    # Smallest at depth 6 but rising with width: part (b) fails alone.
    wider_steeper = sweep(
        lambda d, w: flattest_at_6(d, w) + 0.05 * np.log2(w / 128), DEPTHS, name="rpd_gradient", layer=1
    )
    outcome = claims.claim_3({"sweep": tables(*wider_steeper)}, CONTEXT)
    assert outcome.verdict == NOT_REPRODUCED and "(a) reproduced" in outcome.reason
    # Layer 2 only: the first layer's gradient is missing.
    other_layer = sweep(flattest_at_6, DEPTHS, name="rpd_gradient", layer=2)
    assert verdict(3, {"sweep": tables(*other_layer)}) == INCONCLUSIVE


def saturating(sign: float, at: int = 8):
    return lambda d, w: 10 ** (-1 + sign * 0.1 * min(d, at))


BASIN_DEPTHS = [1, 2, 4, 6, 8, 12, 16, 24]


def claim4_tables(input_of, weight_of, depths=BASIN_DEPTHS):
    rows, metrics = sweep(input_of, depths, widths=(256, 1024), name="basin_input")
    _, weight = sweep(weight_of, depths, widths=(256, 1024), name="basin_weight")
    return {"sweep": tables(rows, metrics + weight)}


def test_claim4():
    assert verdict(4, claim4_tables(saturating(+1), saturating(-1))) == REPRODUCED
    # The input basin keeps growing far beyond depth 8 (no saturation).
    assert verdict(4, claim4_tables(saturating(+1, at=24), saturating(-1))) == NOT_REPRODUCED
    # The weight basin grows instead of shrinking.
    assert verdict(4, claim4_tables(saturating(+1), saturating(+1))) == NOT_REPRODUCED
    # A shallow grid has no depth near 8.
    assert verdict(4, claim4_tables(saturating(+1), saturating(-1), depths=[1, 2, 3])) == INCONCLUSIVE


def test_claim4_bounded_basins_take_their_bound():
    # Beyond depth 8 the input basin leaves the grid ("> 100"): the bound (log10 = 2) is a large rise in the tail.
    def input_of(d, w):
        return (math.nan, "beyond_grid: > 100") if d > 8 else saturating(+1)(d, w)

    assert verdict(4, claim4_tables(input_of, saturating(-1))) == NOT_REPRODUCED


def claim10_tables(best_grokked: bool, best_g: float, history_steps=STEPS):
    rows, metrics = sweep(lambda d, w: 0.9 + 0.001 * d, [2, 4, 6], widths=(256,))
    best = rows[-1]["run"]
    g = {r["run"]: 0.5 + i for i, r in enumerate(rows)}
    g[best] = best_g
    metrics += [metric(rid, "rpd_gradient", value, layer=1) for rid, value in g.items()]
    events = {r["run"]: event(grokked=r["run"] == best and best_grokked) for r in rows}
    return {"sweep": tables(rows, metrics, events, steps=history_steps)}


def test_claim10():
    assert verdict(10, claim10_tables(best_grokked=False, best_g=0.1)) == REPRODUCED
    assert verdict(10, claim10_tables(best_grokked=True, best_g=0.1)) == NOT_REPRODUCED
    # Steepest first layer of the sweep: relies on OPM, not NPM neurons.
    assert verdict(10, claim10_tables(best_grokked=False, best_g=9.0)) == NOT_REPRODUCED
    # Two snapshots cannot show grokking.
    assert verdict(10, claim10_tables(best_grokked=False, best_g=0.1, history_steps=[0, FINAL])) == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------------- claim 5


def claim5_tables(sizes, acc, g, with_rpd=True):
    """acc/g: {activation: [value per size]}; one run per size and activation, n_train null for the largest."""
    rows, metrics = [], []
    for activation in ("tanh", "linear"):
        for i, n in enumerate(sizes):
            rid = f"fig2/{activation}_n{n}"
            rows.append(run(rid, "shallow", activation=activation, n_train=None if n == 60_000 else n))
            metrics.append(metric(rid, "test_acc", acc[activation][i]))
            if with_rpd:
                metrics.append(metric(rid, "rpd_gradient", g[activation][i], layer=1))
    return {"shallow": tables(rows, metrics)}


SIZES = [600, 5000, 60_000]
G_OK = {"tanh": [1.0, 0.9, 0.5], "linear": [1.05, 1.0, 1.0]}


def test_claim5():
    acc = {"tanh": [0.88, 0.95, 0.98], "linear": [0.875, 0.91, 0.92]}
    assert verdict(5, claim5_tables(SIZES, acc, G_OK)) == REPRODUCED
    # The accuracy curves never separate.
    same = {"tanh": [0.88, 0.95, 0.98], "linear": [0.875, 0.945, 0.975]}
    assert verdict(5, claim5_tables(SIZES, same, G_OK)) == NOT_REPRODUCED
    # The RPDs already differ at 600 samples.
    apart = {"tanh": [0.5, 0.9, 0.5], "linear": [1.05, 1.0, 1.0]}
    assert verdict(5, claim5_tables(SIZES, acc, apart)) == NOT_REPRODUCED
    # The quick preset's sizes stop at 4,000 images.
    assert verdict(5, claim5_tables([100, 1000, 4000], acc, G_OK)) == INCONCLUSIVE
    # Accuracy passes but the RPD analysis is missing.
    assert verdict(5, claim5_tables(SIZES, acc, G_OK, with_rpd=False)) == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------------- claim 6


def claim6_tables(before, after, deep, grokked=True, deep_depth=12):
    """before/after/deep: basin_input values, or (nan, note) for a bounded basin."""
    rid = "fig6_grokking/base"

    def basin(run_id, value, step):
        value, note = value if isinstance(value, tuple) else (value, None)
        return metric(run_id, "basin_input", value, step=step, note=note)

    grok = tables(
        [run(rid, "grokking", depth=2, width=200)],
        [basin(rid, before, 100), basin(rid, after, 1000)],
        {rid: event(grokked=grokked, before=100, after=1000)},
    )
    deep_rows = [run(f"fig4/d{deep_depth}", "sweep", depth=deep_depth, width=256), run("fig4/d2", "sweep", depth=2)]
    deep_metrics = [basin(f"fig4/d{deep_depth}", deep, FINAL), basin("fig4/d2", 1e-5, FINAL)]
    return {"grokking": grok, "sweep": tables(deep_rows, deep_metrics)}


def test_claim6():
    assert verdict(6, claim6_tables(10**-3.5, 1e-3, 1e-2)) == REPRODUCED
    # The transition sits at 0.3, decades above 1e-3.
    assert verdict(6, claim6_tables(0.1, 0.3, 3.0)) == NOT_REPRODUCED
    # The basin shrinks after grokking.
    assert verdict(6, claim6_tables(1e-3, 10**-3.3, 1e-2)) == NOT_REPRODUCED
    # Deep nets' basins are no larger.
    assert verdict(6, claim6_tables(10**-3.5, 1e-3, 1e-3)) == NOT_REPRODUCED
    # No grokking: nothing to compare before and after.
    assert verdict(6, claim6_tables(10**-3.5, 1e-3, 1e-2, grokked=False)) == INCONCLUSIVE
    # Only shallow sweep runs.
    assert verdict(6, claim6_tables(10**-3.5, 1e-3, 1e-2, deep_depth=4)) == INCONCLUSIVE
    assert verdict(6, {"sweep": claim6_tables(1e-4, 1e-3, 1e-2)["sweep"]}) == INCONCLUSIVE


def test_claim6_bounded_basins_decide_only_when_the_bound_settles_it():
    # The deep basin is beyond the grid (> 100): certainly larger than 1e-3 by half a decade.
    assert verdict(6, claim6_tables(10**-3.5, 1e-3, (math.nan, "beyond_grid: > 100"))) == REPRODUCED
    # The basin before grokking is only known to be below 1e-5: certainly smaller than after.
    assert verdict(6, claim6_tables((math.nan, "below_grid: < 1e-05"), 1e-3, 1e-2)) == REPRODUCED
    # After grokking it is beyond the grid: far from 1e-3 whatever its value.
    assert verdict(6, claim6_tables(1e-4, (math.nan, "beyond_grid: > 100"), 1e-2)) == NOT_REPRODUCED
    # Before grokking beyond 9e-4, after at 1e-3: the growth is at most 0.05 decades, certainly below 0.1.
    assert verdict(6, claim6_tables((math.nan, "beyond_grid: > 0.0009"), 1e-3, 1e-2)) == NOT_REPRODUCED
    # Before grokking only known to be below 1e-2, after at 1e-3: the growth is undecided, the rest holds.
    assert verdict(6, claim6_tables((math.nan, "below_grid: < 0.01"), 1e-3, 1e-2)) == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------------- claim 7


def claim7_tables(flags: dict[int, tuple], steps=STEPS):
    """flags: {depth: (eval-mode grokked, train-mode grokked)}."""
    rows = [run(f"fig3_depth/d{d}", "depth", depth=d, width=1024) for d in flags]
    events = {f"fig3_depth/d{d}": event(grokked=e, bntrain=t) for d, (e, t) in flags.items()}
    return {"depth": tables(rows, [], events, steps=steps)}


def test_claim7():
    assert verdict(7, claim7_tables({12: (False, False), 23: (True, False), 32: (True, False)})) == REPRODUCED
    assert verdict(7, claim7_tables({23: (True, False), 32: (True, True)})) == NOT_REPRODUCED
    assert verdict(7, claim7_tables({12: (False, False), 23: (False, False)})) == INCONCLUSIVE
    assert verdict(7, claim7_tables({23: (True, None)})) == INCONCLUSIVE
    assert verdict(7, claim7_tables({23: (True, False)}, steps=[0, FINAL])) == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------------- claim 8


def claim8_tables(grokked: dict[tuple[int, float], bool | None], diverged=()):
    """grokked: {(batch size, lr): flag}."""
    rows, events = [], {}
    for (batch, lr), flag in grokked.items():
        rid = f"fig8/b{batch}_lr{lr:g}"
        status = "diverged" if (batch, lr) in diverged else "completed"
        rows.append(run(rid, "conditions", status, depth=23, width=1024, batch=batch, lr=lr))
        events[rid] = event(grokked=flag)
    return {"conditions": tables(rows, [], events)}


PAPER_FIG8 = {(16, 1e-3): False, (128, 1e-3): True, (1024, 1e-3): True, (128, 1e-2): False}


def test_claim8():
    assert verdict(8, claim8_tables(PAPER_FIG8)) == REPRODUCED
    assert verdict(8, claim8_tables({**PAPER_FIG8, (16, 1e-3): True})) == NOT_REPRODUCED
    assert verdict(8, claim8_tables({**PAPER_FIG8, (128, 1e-2): True, (128, 1e-3): False})) == NOT_REPRODUCED
    # The lr axis alone: the batch axis cannot be tested.
    assert verdict(8, claim8_tables({(128, 1e-3): True, (128, 1e-2): False})) == INCONCLUSIVE
    # The large-lr run diverged: the lr axis has nothing to compare.
    assert verdict(8, claim8_tables(PAPER_FIG8, diverged=[(128, 1e-2)])) == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------------- claim 9


def g_curves(rid: str, peaks: list[int], steps=(1, 10, 100, 1000, 10000)) -> list[dict]:
    """rpd_gradient of layer m peaking at peaks[m-1]."""
    return [
        metric(rid, "rpd_gradient", -abs(np.log10(s) - np.log10(peak)), layer=m, step=s)
        for m, peak in enumerate(peaks, start=1)
        for s in steps
    ]


def claim9_tables(dd: dict[int, bool], peaks: dict[int, list[int]], steps=(1, 10, 100, 1000, 10000)):
    rows = [run(f"fig3_depth/d{d}", "depth", depth=d, width=1024) for d in dd]
    metrics = [row for d in dd for row in g_curves(f"fig3_depth/d{d}", peaks[d], steps)]
    events = {f"fig3_depth/d{d}": event(grokked=True, dd=flag) for d, flag in dd.items()}
    return {"depth": tables(rows, metrics, events)}


SYNC, STAGGERED = [100, 100, 100], [10, 100, 1000]


def test_claim9():
    assert verdict(9, claim9_tables({23: False, 32: True}, {23: STAGGERED, 32: SYNC})) == REPRODUCED
    assert verdict(9, claim9_tables({23: True, 32: True}, {23: STAGGERED, 32: SYNC})) == NOT_REPRODUCED
    assert verdict(9, claim9_tables({23: False, 32: True}, {23: SYNC, 32: STAGGERED})) == NOT_REPRODUCED
    assert verdict(9, claim9_tables({12: False, 23: False}, {12: STAGGERED, 23: SYNC})) == INCONCLUSIVE
    few_steps = claim9_tables({23: False, 32: True}, {23: STAGGERED, 32: SYNC}, steps=(10, 100, 1000))
    assert verdict(9, few_steps) == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------- the scorecard


def test_evaluate_shape_and_empty_input():
    card = evaluate({}, CONTEXT)
    assert list(card.columns) == ["claim", "title", "quantity", "criterion", "value", "verdict", "reason"]
    assert card["claim"].tolist() == list(range(1, 11))
    assert (card["verdict"] == INCONCLUSIVE).all()
    assert card["reason"].str.contains("missing").all()


def test_evaluate_combines_roles():
    by_role = {**claim1_tables(0.99), **claim8_tables(PAPER_FIG8)}
    card = evaluate(by_role, CONTEXT).set_index("claim")
    assert card.loc[1, "verdict"] == REPRODUCED and card.loc[8, "verdict"] == REPRODUCED
    assert card.loc[1, "criterion"] == CLAIMS[1].criterion
    assert "0.99" in card.loc[1, "value"]


def test_tables_holding_several_roles_are_restricted_to_the_role():
    # One RunTables for every role: claim 1 must not pick the sweep's runs.
    depth = claim1_tables(0.97)["depth"]
    rows, metrics = sweep(lambda d, w: 0.99, [23], widths=(1024,))
    merged = RunTables(
        pd.concat([depth.runs, pd.DataFrame(rows)], ignore_index=True),
        depth.history,
        pd.concat([depth.metrics, pd.DataFrame(metrics)], ignore_index=True),
        *depth[3:],
    )
    assert verdict(1, {"depth": merged, "sweep": merged}) == NOT_REPRODUCED


def test_markdown_states_every_criterion_and_constant():
    text = MARKDOWN.read_text()
    for number, claim in CLAIMS.items():
        assert f"## Claim {number}: {claim.title}" in text
        assert f"> {claim.criterion}" in text
        assert f"> {claim.quantity}" in text
    constants = re.findall(r"`([A-Z][A-Z0-9_]+)` = (-?[0-9.]+|\([-0-9., ]+\))", text)
    assert len(constants) > 20
    for name, value in constants:
        assert getattr(claims, name) == pytest.approx(ast.literal_eval(value)), name
