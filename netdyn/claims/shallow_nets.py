"""Claims 5 and 12: Fig. 2's shallow nets (784-2048-10) across the training-set size (Fig. 2(a-d): the tanh NNN and
the linear LNN coincide at small n and diverge at large n, where the LNN's RPD is steeper; Fig. 2(e): the NNN's RPD
gradient G(t) rises, peaks and falls; report/claims.md, Claims 5 and 12)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from netdyn.claims.common import (
    FULL_N_TRAIN,
    MIN_TURNING_STEPS,
    Claim,
    by_key,
    dataset,
    design_role,
    diverged_note,
    is_full_mnist,
    layer_rows,
    missing,
    model_sizes,
    ok_runs,
    replicates,
    role_tables,
    run_final_values,
    training_sizes,
)
from netdyn.claims.paper_scale import PAPER_SHALLOW_WIDTH, REDUCED, label, optimizer
from netdyn.claims.stats import (
    INCONCLUSIVE,
    INTERVAL,
    MIN_REPLICATES,
    MIN_SWEEP_POINTS,
    TOO_FEW_SEEDS,
    Outcome,
    bootstrap,
    combine,
    decide,
    untestable,
)
from netdyn.tables import RunTables

# Claim 5: Fig. 2, NNN (tanh) vs LNN (linear) across the training-set size.
SMALL_N_MAX = 1_000
LARGE_N_MIN = 30_000
ACC_COINCIDE = 0.02
ACC_DIVERGE = 0.02
RPD_MATCH = 0.2
RPD_STEEPER = 0.2
PAPER_SMALLEST_N = 600

# Claim 12: Fig. 2(e), G(t) of the NNN rises, peaks and falls.
G_RISE = 0.05  # G units
G_FALL_FRACTION = 0.1  # the final G lies at least this fraction of the rise below the peak


def check_nnn_against_lnn(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = role_tables(tables_by_role, "shallow")
    if tables is None:
        return missing("shallow")
    runs, diverged = ok_runs(tables)
    frame = pd.DataFrame(
        {"run": runs["run"], "activation": runs.get("model.activation"), "n": training_sizes(runs, context)}
    )
    frame = frame[frame["activation"].isin(["tanh", "linear"])].dropna(subset=["n"])
    for column, metric, layer in (("acc", "test_acc", None), ("g", "rpd_gradient", 1)):
        frame = frame.merge(run_final_values(tables, metric, layer)[["run", "value"]], on="run", how="left")
        frame = frame.rename(columns={"value": column})
    frame["code"] = (frame["activation"] == "tanh").astype(float)
    note = diverged_note(diverged)
    sizes = sorted(
        n for n, group in frame.dropna(subset=["acc"]).groupby("n") if set(group["activation"]) == {"tanh", "linear"}
    )
    if len(sizes) < MIN_SWEEP_POINTS:
        return Outcome(INCONCLUSIVE, f"sizes {sizes}", f"< {MIN_SWEEP_POINTS} sizes with both activations" + note)
    n_min, n_max = min(sizes), max(sizes)
    if n_min > SMALL_N_MAX or n_max < LARGE_N_MIN:
        return Outcome(
            INCONCLUSIVE, f"sizes {int(n_min)}..{int(n_max)}", "sizes do not span the paper's 600..60000" + note
        )
    ends = frame[frame["n"].isin([n_min, n_max])]
    acc = by_key(ends.dropna(subset=["acc"]), ["n", "code"], "acc")

    def gap(means, n):
        return means.get((n, 1.0), math.nan) - means.get((n, 0.0), math.nan)

    def rel(means, n):
        lin, tanh = means.get((n, 0.0), math.nan), means.get((n, 1.0), math.nan)
        return (lin - tanh) / ((abs(lin) + abs(tanh)) / 2)

    parts = [
        decide("a1", bootstrap(acc, lambda m: abs(gap(m, n_min))), "<=", ACC_COINCIDE, f"|gap(n={int(n_min)})|"),
        decide(
            "a2",
            bootstrap(acc, lambda m: gap(m, n_max) - abs(gap(m, n_min))),
            ">=",
            ACC_DIVERGE,
            f"gap(n={int(n_max)}) - |gap(n={int(n_min)})|",
        ),
    ]
    g = by_key(ends.dropna(subset=["g"]), ["n", "code"], "g")
    if len(g) < 4:
        parts += [untestable("b1", "rpd_gradient of layer 1 missing"), untestable("b2", "rpd_gradient missing")]
    else:
        parts.append(
            decide("b1", bootstrap(g, lambda m: abs(rel(m, n_min))), "<=", RPD_MATCH, f"|rel(n={int(n_min)})|")
        )
        parts.append(decide("b2", bootstrap(g, lambda m: rel(m, n_max)), ">=", RPD_STEEPER, f"rel(n={int(n_max)})"))
    return combine(parts, note)


def check_rise_peak_fall(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = role_tables(tables_by_role, "shallow")
    if tables is None:
        return missing("shallow")
    runs, diverged = ok_runs(tables)
    note = diverged_note(diverged)
    runs = runs[runs.get("model.activation", pd.Series(index=runs.index, dtype=object)) == "tanh"]
    sizes = training_sizes(runs, context)
    if runs.empty or sizes.isna().all():
        return Outcome(INCONCLUSIVE, "", "no tanh run of known training size" + note)
    largest = runs[sizes == sizes.max()]
    metrics = tables.metrics
    rows = []
    for run in largest["run"]:
        curve = layer_rows(metrics, "rpd_gradient", 1) if metrics is not None and not metrics.empty else None
        curve = curve[curve["run"] == run].sort_values("step") if curve is not None else pd.DataFrame()
        values = pd.to_numeric(curve["value"], errors="coerce").dropna().to_numpy() if len(curve) else np.array([])
        if len(values) < MIN_TURNING_STEPS:
            continue
        peak = values.max()
        rise = peak - values[0]
        rows.append([rise, (peak - values[-1]) / rise if rise > 0 else 0.0])
    if not rows:
        return Outcome(INCONCLUSIVE, "", f"G(t) of the largest-n tanh run has < {MIN_TURNING_STEPS} steps" + note)
    groups = {"seeds": np.array(rows)}
    a = decide("a", bootstrap(groups, lambda m: m["seeds"][0]), ">=", G_RISE, f"rise of G (n={sizes.max():.0f})")
    b = decide("b", bootstrap(groups, lambda m: m["seeds"][1]), ">=", G_FALL_FRACTION, "fall / rise")
    return combine([a, b], note)


def shallow_scale(smallest_n: int | None):
    """The 784-2048-10 nets of Fig. 2 trained with Adam up to the full training set (and down to ``smallest_n``)."""

    def scale(runs: pd.DataFrame, context: Mapping[str, Any]) -> str:
        if runs.empty:
            return REDUCED
        _, width = model_sizes(runs)
        n = training_sizes(runs, context)
        sizes = bool((width == PAPER_SHALLOW_WIDTH).all()) and n.max() >= FULL_N_TRAIN and optimizer(runs, "adam")
        sizes &= smallest_n is None or n.min() <= smallest_n
        return label(sizes, is_full_mnist(dataset(runs, context), context))

    return scale


def design_nnn_against_lnn(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
    shallow = design_role(runs_by_role, "shallow")
    if shallow is None:
        return "no shallow role"
    sizes = training_sizes(shallow, context)
    activations = shallow["model.activation"]
    both = [n for n in sizes.dropna().unique() if set(activations[sizes == n]) >= {"tanh", "linear"}]
    if len(both) < MIN_SWEEP_POINTS or min(both) > SMALL_N_MAX or max(both) < LARGE_N_MIN:
        return f"sizes {sorted(int(n) for n in both)} do not span {SMALL_N_MAX}..{LARGE_N_MIN}"
    reps = replicates(shallow.assign(_n=sizes), ["_n", "model.activation"])
    return TOO_FEW_SEEDS if reps < MIN_REPLICATES else None


def design_rise_peak_fall(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
    shallow = design_role(runs_by_role, "shallow")
    if shallow is None:
        return "no shallow role"
    sizes = training_sizes(shallow, context)
    tanh = shallow[shallow["model.activation"] == "tanh"]
    largest = tanh[training_sizes(tanh, context) == sizes.max()] if len(tanh) else tanh
    if largest.empty:
        return "no tanh run at the largest n"
    return None if len(largest) >= MIN_REPLICATES else TOO_FEW_SEEDS


CLAIMS = (
    Claim(
        5,
        "Fig. 2: NNN and LNN coincide at small n, diverge at large n; LNN RPD steeper at large n",
        ("shallow",),
        "gap(n) = final test_acc(tanh) - test_acc(linear); rel(n) = (G_lin - G_tanh) / mean(|G_lin|, |G_tanh|) with "
        f"G = final rpd_gradient of layer 1; at the smallest and largest n; seeds averaged, {INTERVAL}",
        f"(a1) |gap(n_min)| <= {ACC_COINCIDE}; (a2) gap(n_max) - |gap(n_min)| >= {ACC_DIVERGE}; (b1) |rel(n_min)| <= "
        f"{RPD_MATCH}; (b2) rel(n_max) >= {RPD_STEEPER}; each decided by its interval. Reproduced if all hold; "
        f"inconclusive with fewer than {MIN_SWEEP_POINTS} sizes run with both activations, n_min > {SMALL_N_MAX} or "
        f"n_max < {LARGE_N_MIN}",
        check_nnn_against_lnn,
        shallow_scale(PAPER_SMALLEST_N),
        design_nnn_against_lnn,
    ),
    Claim(
        12,
        "Fig. 2(e): the NNN's RPD gradient G(t) rises, peaks and falls",
        ("shallow",),
        "rpd_gradient (layer 1) over the analysed steps of the tanh runs at the largest n: the rise G(t*) - G(first) "
        f"and the fall (G(t*) - G(final)) / rise, with t* = argmax G; seeds averaged, {INTERVAL}",
        f"(a) rise >= {G_RISE}; (b) fall >= {G_FALL_FRACTION}; each decided by its interval. Reproduced if both hold; "
        f"inconclusive with < {MIN_TURNING_STEPS} analysed steps",
        check_rise_peak_fall,
        shallow_scale(None),
        design_rise_peak_fall,
    ),
)
