"""Claims 7, 8 and 10: when deep BN nets grok (Fig. 7: train-mode BatchNorm at test time removes grokking; Fig. 8:
grokking appears with a larger batch or a smaller learning rate; Fig. 4 / §V: the most accurate net does not grok
and relies on NPM neurons; report/claims.md, Claims 7, 8 and 10). Readings come from events.json (netdyn.events)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from netdyn.claims.common import (
    MIN_HISTORY_POINTS,
    Claim,
    bn_lag,
    by_key,
    design_role,
    diverged_note,
    grokked,
    missing,
    model_sizes,
    ok_runs,
    replicates,
    role_tables,
    run_final_values,
    spec,
)
from netdyn.claims.paper_scale import deep_nets, sweep_nets
from netdyn.claims.stats import (
    INCONCLUSIVE,
    INTERVAL,
    MAJORITY,
    MIN_REPLICATES,
    MIN_RHO,
    MIN_SWEEP_POINTS,
    MIN_TREND_POINTS,
    TOO_FEW_SEEDS,
    Outcome,
    bootstrap,
    combine,
    decide,
    fmt,
    median_trend,
    untestable,
)
from netdyn.tables import RunTables

NPM_QUANTILE = 0.5  # claim 10: "NPM-rich" = a first-layer G at or below the sweep's median
AXES = (("batch", "batch", ("lr", "depth"), +1), ("lr", "lr", ("batch", "depth"), -1))  # claim 8: part, axis, fixed


def check_bn_train_mode(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = role_tables(tables_by_role, "depth")
    if tables is None:
        return missing("depth")
    runs, diverged = ok_runs(tables)
    note = diverged_note(diverged)
    lags = pd.Series({run: bn_lag(tables, run) for run in runs["run"]}, dtype=float)
    shown = ", ".join(f"{run}: {fmt(lag)}" for run, lag in lags.items()) or "no runs"
    if not (lags > 0).any():
        return Outcome(INCONCLUSIVE, f"bn_lag_steps {shown}", "no depth run shows any lag" + note)
    a = decide("a", bootstrap({"runs": lags.dropna().to_numpy()}, lambda m: m["runs"]), ">", 0.0, "mean BN lag (steps)")
    flags = [grokked(tables, run, "grokking_bntrain") for run in runs["run"]]
    flags = [float(flag) for flag in flags if flag is not None]
    if not flags:
        b = untestable("b", "no train-mode grokking reading")
    else:
        fraction = bootstrap({"runs": np.array(flags)}, lambda m: m["runs"])
        b = decide("b", fraction, "<", MAJORITY, "fraction of runs grokking in train mode")
    outcome = combine([a, b], note)
    return outcome._replace(value=f"{outcome.value}; per run: {shown}")


def design_bn_train_mode(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
    runs = design_role(runs_by_role, "depth")
    if runs is None:
        return "no depth role"
    return None if len(runs) >= MIN_REPLICATES else f"< {MIN_REPLICATES} depth runs"


def conditions_frame(runs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "batch": spec(runs, "train.batch_size"),
            "lr": spec(runs, "train.lr"),
            "depth": spec(runs, "model.depth"),
        }
    )


def lag_trend(frame: pd.DataFrame, axis: str, others: Sequence[str]) -> tuple[dict, list]:
    """Points ``(group..., axis value) -> lags`` of the groups (fixed ``others``) with enough axis values."""
    groups, names = {}, []
    for key, group in frame.dropna(subset=["lag"]).groupby(list(others), dropna=False):
        if group[axis].nunique() >= MIN_TREND_POINTS:
            names.append(key)
            for value, members in group.groupby(axis):
                groups[(*key, value)] = members["lag"].to_numpy(dtype=float)
    return groups, names


def check_conditions(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = role_tables(tables_by_role, "conditions")
    if tables is None:
        return missing("conditions")
    runs, diverged = ok_runs(tables)
    note = diverged_note(diverged)
    frame = conditions_frame(runs).assign(lag=[bn_lag(tables, run) for run in runs["run"]])
    shown = "; ".join(
        f"b{b:g} lr{lr:g}: {fmt(lag)}" for b, lr, lag in zip(frame["batch"], frame["lr"], frame["lag"], strict=True)
    )
    if not (frame["lag"] > 0).any():
        return Outcome(INCONCLUSIVE, f"bn_lag_steps {shown or 'none'}", "no condition run shows any lag" + note)
    parts = []
    for name, axis, others, sign in AXES:
        groups, names = lag_trend(frame, axis, others)
        if not names:
            parts.append(untestable(name, f"no group with >= {MIN_TREND_POINTS} values of {axis} that have a lag"))
            continue

        def trend(means, names=names):
            return median_trend(
                [sorted((point[-1], value) for point, value in means.items() if point[:-1] == key) for key in names]
            )

        op = ">=" if sign > 0 else "<="
        parts.append(decide(name, bootstrap(groups, trend), op, sign * MIN_RHO, f"rho({axis}, lag)"))
    outcome = combine(parts, note)
    return outcome._replace(value=f"{outcome.value}; lags: {shown}")


def design_conditions(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
    conditions = design_role(runs_by_role, "conditions")
    if conditions is None:
        return "no conditions role"
    frame = conditions_frame(conditions)
    reasons = []
    for _, axis, others, _ in AXES:
        groups = [g for _, g in frame.groupby(list(others), dropna=False) if g[axis].nunique() >= MIN_TREND_POINTS]
        if not groups:
            reasons.append(f"no group with >= {MIN_TREND_POINTS} values of {axis}")
        elif min(g.groupby(axis).size().min() for g in groups) < MIN_REPLICATES:
            reasons.append(f"{axis}: {TOO_FEW_SEEDS}")
    return "; ".join(reasons) or None


def check_best_net(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = role_tables(tables_by_role, "sweep")
    if tables is None:
        return missing("sweep")
    runs, diverged = ok_runs(tables)
    note = diverged_note(diverged)
    frame = pd.DataFrame({"run": runs["run"], "depth": spec(runs, "model.depth"), "width": spec(runs, "model.width")})
    frame = frame.merge(run_final_values(tables, "test_acc")[["run", "value"]], on="run")
    frame = frame.rename(columns={"value": "acc"})
    frame = frame.merge(run_final_values(tables, "rpd_gradient", 1)[["run", "value"]], on="run", how="left")
    frame = frame.rename(columns={"value": "g"}).dropna(subset=["acc", "depth", "width"])
    frame["grokked"] = [grokked(tables, run) for run in frame["run"]]
    if frame[["depth", "width"]].drop_duplicates().shape[0] < MIN_SWEEP_POINTS:
        return Outcome(INCONCLUSIVE, f"{len(frame)} run(s) with test_acc", f"< {MIN_SWEEP_POINTS} sweep points" + note)
    best_key = frame.groupby(["depth", "width"])["acc"].mean().idxmax()
    value_note = f"best point d{best_key[0]:g} w{best_key[1]:g}"
    readable = frame.dropna(subset=["grokked"])
    if readable.empty:
        a = untestable("a", f"no grokking reading (events or >= {MIN_HISTORY_POINTS} history rows)")
    elif not readable["grokked"].astype(bool).any():
        a = untestable("a", "no sweep run groks: that the best one does not says nothing")
    else:
        data = readable.assign(grokked=readable["grokked"].astype(float))
        groups = by_key(data, ["depth", "width"], ["acc", "grokked"])

        def best_groks(means):
            best = max(means, key=lambda key: means[key][0])
            return means[best][1]

        a = decide("a", bootstrap(groups, best_groks), "<", MAJORITY, "fraction of the best point's seeds grokking")
    with_g = frame.dropna(subset=["g"])
    if with_g[["depth", "width"]].drop_duplicates().shape[0] < MIN_SWEEP_POINTS:
        b = untestable("b", f"first-layer rpd_gradient of < {MIN_SWEEP_POINTS} points")
    else:
        groups = by_key(with_g, ["depth", "width"], ["acc", "g"])

        def flatter(means):
            best = max(means, key=lambda key: means[key][0])
            return means[best][1] - float(np.quantile([value[1] for value in means.values()], NPM_QUANTILE))

        b = decide("b", bootstrap(groups, flatter), "<=", 0.0, f"G1(best) - G1 {NPM_QUANTILE} quantile")
    outcome = combine([a, b], note)
    return outcome._replace(value=f"{value_note}; {outcome.value}")


def design_best_net(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
    sweep = design_role(runs_by_role, "sweep")
    if sweep is None:
        return "no sweep role"
    points = set(zip(*model_sizes(sweep), strict=True))
    enough = len(points) >= MIN_SWEEP_POINTS and replicates(sweep, ["model.depth", "model.width"]) >= MIN_REPLICATES
    return None if enough else TOO_FEW_SEEDS


CLAIMS = (
    Claim(
        7,
        "train-mode BN at test time removes grokking in deep nets",
        ("depth",),
        "events bn_grokking.bn_lag_steps (eval-mode test accuracy onset minus train-mode onset) and the train-mode "
        "grokking flag (grokking_bntrain) of the depth runs, every run a replicate; "
        f"{INTERVAL.replace('seeds', 'runs')}",
        "(a) mean lag > 0 (by its interval); (b) the fraction of runs that grok in train mode < "
        f"{MAJORITY} (by its interval). Reproduced if (a) and (b) hold; inconclusive when no run shows any lag",
        check_bn_train_mode,
        deep_nets,
        design_bn_train_mode,
    ),
    Claim(
        8,
        "grokking appears with a larger batch or a smaller lr: the BN lag grows with batch size, shrinks with lr",
        ("conditions",),
        "Spearman rho(train.batch_size, bn_lag_steps) at fixed train.lr and depth, and rho(train.lr, bn_lag_steps) at "
        f"fixed train.batch_size and depth (median over groups); seeds averaged, {INTERVAL}",
        f"batch: rho >= {MIN_RHO}; lr: rho <= -{MIN_RHO}; over groups with >= {MIN_TREND_POINTS} values of the axis "
        "that have a lag; each decided by its interval. Reproduced if both hold; inconclusive when no run shows any "
        "lag or an axis has no such group",
        check_conditions,
        deep_nets,
        design_conditions,
    ),
    Claim(
        10,
        "the most accurate DNN does not grok and relies on NPM neurons (flat first-layer RPD)",
        ("sweep",),
        "the sweep point with the highest mean final test_acc: the fraction of its seeds that grok, and its final "
        f"rpd_gradient (layer 1) minus the sweep's {NPM_QUANTILE} quantile; {INTERVAL}",
        f"(a) fraction < {MAJORITY}, testable only when some sweep run groks (not grokking says nothing when nothing "
        f"groks); (b) difference <= 0 (NPM-rich = flatter RPD). Reproduced if (a) and (b) hold; needs >= "
        f"{MIN_SWEEP_POINTS} points; 'from the beginning' is not scored",
        check_best_net,
        sweep_nets,
        design_best_net,
    ),
)
