"""Claims scorecard: a verdict for each of the ten claims of methods.md §14, computed from the run tables.

For each claim this module measures one quantity from the collected tables (``netdyn.collection.RunTables``, one per
experiment role), compares it with a criterion fixed in advance (report/claims.md, built from the constants below)
and returns a verdict: ``reproduced``, ``not reproduced`` or ``inconclusive`` (the runs cannot test the claim: a role
or an analysis is missing, the sweep is too small, runs diverged, or the setup is smaller than the paper's).
A claim that fails to reproduce with a correct implementation is a finding, not a bug.

Conventions shared by every claim:

* A run's *final* value of a metric is its value at the run's final step (the largest ``step`` of its history, or
  of its metrics without a history); runs analysed at the final step only are fine.
* Diverged runs (``runs.status`` or ``events.status`` "diverged") are left out and counted in the reason.
* Sweep points with several seeds are averaged (mean over runs with the same spec but ``train.seed``).
* Basin sizes given only as a bound (``note`` ``beyond_grid: > 100`` / ``below_grid: < 1e-05``) take the bound;
  ``degenerate`` basins are left out.
* A claim made of several parts is ``not reproduced`` when any part fails, else ``inconclusive`` when any part
  cannot be tested, else ``reproduced``.
* A grokking flag (``events.json``) counts only for runs whose history has at least ``MIN_HISTORY_POINTS`` rows.

``context`` gives what the tables do not, all keys optional: ``dataset`` (a name) or ``datasets`` (names), used when
the runs table has no ``dataset`` column; ``sources`` (the data sources of those datasets, e.g. ``["mnist"]``); and
``n_train`` (the full training-set size, for runs with ``train.n_train`` null; otherwise ``KNOWN_TRAIN_SIZES`` of the
dataset name or of the single source). ``evaluate(tables_by_role, context)`` returns one row per claim: claim, title,
quantity, criterion, value, verdict, reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from netdyn.collection import RunTables
from netdyn.dynamics import turning_point_spread

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"

# General requirements.
MIN_SWEEP_POINTS = 3  # points along a swept axis needed to read a trend or an optimum
MIN_WIDTHS = 2  # widths needed to call a depth optimum "independent of width"
MIN_HISTORY_POINTS = 5  # history rows needed before a grokking flag means anything
MAJORITY = 0.5  # "for at least half of the widths / depths"
MIN_RHO = 0.5  # |Spearman rho| that counts as a monotone trend

# Claim 1: the 23 x 1024 ReLU net on full MNIST reaches 98.6 %.
PAPER_ACC = 0.986
ACC_TOLERANCE = 0.005
PAPER_DEPTH, PAPER_WIDTH = 23, 1024
FULL_DATASETS = ("mnist",)  # dataset names, or the single data source, that mean the full torchvision MNIST
FULL_N_TRAIN = 60_000
KNOWN_TRAIN_SIZES = {"mnist": 60_000, "fashion_mnist": 60_000, "kmnist": 60_000, "mnist5k": 4_000}

# Claim 2: best depth 6-8, accuracy grows with width.
BEST_DEPTH_RANGE = (6, 8)

# Claim 3: first-layer RPD gradient smallest near depth 6, falls with width.
FLATTEST_DEPTH_RANGE = (5, 7)

# Claim 4: basins vs depth, saturating near 8 layers.
SATURATION_DEPTH = 8
PIVOT_TOLERANCE = 2  # the grid depth nearest SATURATION_DEPTH must lie within this many layers of it
SATURATION_RATIO = 0.5  # |change beyond the pivot| <= ratio * |change up to the pivot| (log10 basin)

# Claim 5: Fig. 2, NNN (tanh) vs LNN (linear) across the training-set size.
SMALL_N_MAX = 1_000
LARGE_N_MIN = 30_000
ACC_COINCIDE = 0.02
ACC_DIVERGE = 0.02
RPD_MATCH = 0.2
RPD_STEEPER = 0.2

# Claim 6: Fig. 6 input basin of the grokking net, and deep nets' basins.
PAPER_TRANSITION_LOG10 = -3.0
TRANSITION_TOLERANCE = 0.5  # decades
BASIN_GROWTH = 0.1  # decades: one step of the 10-per-decade amplitude grid
DEEP_MIN_DEPTH = 8
DEEP_LARGER = 0.5  # decades

# Claim 9: double descent at 32 layers, none at 23; synchronous turning points.
DD_DEPTH, NO_DD_DEPTH = 32, 23
SPREAD_RATIO = 0.5
MIN_TURNING_STEPS = 5

# Claim 10: the most accurate sweep run does not grok and has a flat (NPM-rich) first layer.
NPM_QUANTILE = 0.5


class Claim(NamedTuple):
    title: str
    roles: tuple[str, ...]
    quantity: str
    criterion: str


class Outcome(NamedTuple):
    verdict: str
    value: str
    reason: str


CLAIMS: dict[int, Claim] = {
    1: Claim(
        "23x1024 ReLU DNN reaches 98.6% on MNIST",
        ("depth",),
        f"final test_acc of the depth runs with model.depth = {PAPER_DEPTH} and model.width = {PAPER_WIDTH} "
        "(mean over seeds)",
        f"reproduced if test_acc >= {PAPER_ACC} - {ACC_TOLERANCE}; not reproduced if below; inconclusive unless the "
        f"data is full MNIST (dataset name, or the single data source, in {list(FULL_DATASETS)}) with >= "
        f"{FULL_N_TRAIN} training images and a non-diverged {PAPER_DEPTH}x{PAPER_WIDTH} run exists",
    ),
    2: Claim(
        "best depth 6-8, roughly independent of width; accuracy grows with width",
        ("sweep",),
        "per width: argmax over depth of final test_acc; per depth: Spearman rho(width, final test_acc)",
        f"(a) argmax depth in {list(BEST_DEPTH_RANGE)} for at least {MAJORITY:.0%} of the widths whose depth grid "
        f"has >= {MIN_SWEEP_POINTS} depths including one below, one inside and one above that range (needs >= "
        f"{MIN_WIDTHS} such widths); (b) median over depths with >= {MIN_SWEEP_POINTS} widths of rho >= {MIN_RHO}. "
        "Reproduced if (a) and (b) hold",
    ),
    3: Claim(
        "first-layer RPD gradient smallest near depth 6, falls with width",
        ("sweep",),
        "per width: argmin over depth of final rpd_gradient (layer 1); per depth: Spearman rho(width, rpd_gradient)",
        f"(a) argmin depth in {list(FLATTEST_DEPTH_RANGE)} for at least {MAJORITY:.0%} of the widths whose depth grid "
        f"has >= {MIN_SWEEP_POINTS} depths including one below, one inside and one above that range (needs >= "
        f"{MIN_WIDTHS} such widths); (b) median over depths with >= {MIN_SWEEP_POINTS} widths of rho <= -{MIN_RHO}. "
        "Reproduced if (a) and (b) hold; saturation is not scored",
    ),
    4: Claim(
        "input basin grows, weight basin shrinks with depth; both saturate near 8 layers",
        ("sweep",),
        "per width, log10 of final basin_input / basin_weight vs depth: Spearman rho over depths <= pivot (the grid "
        f"depth nearest {SATURATION_DEPTH}), change up to the pivot (head) and beyond it (tail)",
        f"per width (pivot within {PIVOT_TOLERANCE} of {SATURATION_DEPTH}, >= {MIN_SWEEP_POINTS} depths <= pivot, "
        f">= 1 beyond): input holds if rho >= {MIN_RHO}, head > 0 and |tail| <= {SATURATION_RATIO} * |head|; weight "
        f"holds if rho <= -{MIN_RHO}, head < 0 and |tail| <= {SATURATION_RATIO} * |head|. Reproduced if each holds "
        f"for at least {MAJORITY:.0%} of the testable widths",
    ),
    5: Claim(
        "Fig. 2: NNN and LNN coincide at small n, diverge at large n; LNN RPD steeper at large n",
        ("shallow",),
        "gap(n) = final test_acc(tanh) - test_acc(linear); rel(n) = (G_lin - G_tanh) / mean(|G_lin|, |G_tanh|) with "
        "G = final rpd_gradient of layer 1; at the smallest and largest n",
        f"(a) |gap(n_min)| <= {ACC_COINCIDE} and gap(n_max) - |gap(n_min)| >= {ACC_DIVERGE}; (b) |rel(n_min)| <= "
        f"{RPD_MATCH} and rel(n_max) >= {RPD_STEEPER}. Reproduced if (a) and (b) hold; inconclusive with fewer than "
        f"{MIN_SWEEP_POINTS} sizes run with both activations, n_min > {SMALL_N_MAX} or n_max < {LARGE_N_MIN}",
    ),
    6: Claim(
        "Fig. 6: input-noise transition near 1e-3, basin grows after grokking, deep nets' basins larger",
        ("grokking", "sweep"),
        "log10 basin_input of the grokking run at the events' before/after steps; median final log10 basin_input of "
        f"sweep runs with model.depth >= {DEEP_MIN_DEPTH}",
        f"(a) |log10 basin(after) - ({PAPER_TRANSITION_LOG10})| <= {TRANSITION_TOLERANCE}; (b) the run grokked and "
        f"log10 basin(after) - log10 basin(before) >= {BASIN_GROWTH}; (c) deep median - log10 basin(after) >= "
        f"{DEEP_LARGER}. Reproduced if (a), (b) and (c) hold (bounded basins decide only when the bound settles it); "
        "the 'gentler transition' is not scored",
    ),
    7: Claim(
        "train-mode BN at test time removes grokking in deep nets",
        ("depth",),
        "events grokking (eval-mode BN) and grokking_bntrain (train-mode BN) flags of the depth runs",
        "reproduced if at least one depth run groks in eval mode and none of those groks in train mode; not "
        "reproduced if any of them also groks in train mode; inconclusive if no run groks in eval mode or the "
        "train-mode reading is missing",
    ),
    8: Claim(
        "grokking appears with a larger batch or a smaller lr",
        ("conditions",),
        "events grokking flags of the condition runs, compared along train.batch_size (at fixed train.lr, depth) and "
        "along train.lr (at fixed train.batch_size, depth)",
        "batch: in every group with >= 2 batch sizes the largest batch groks and the smallest does not; lr: in every "
        "group with >= 2 learning rates the smallest lr groks and the largest does not. Reproduced if both hold; not "
        "reproduced if a testable axis fails; inconclusive if an axis has no such group",
    ),
    9: Claim(
        f"double descent at {DD_DEPTH} layers (synchronous G_m turning points), none at {NO_DD_DEPTH}",
        ("depth",),
        "events double_descent flags and the spread (std of log10 argmax_t G_m(t) across hidden layers, "
        f"netdyn.dynamics.turning_point_spread) of rpd_gradient for the {DD_DEPTH}- and {NO_DD_DEPTH}-layer runs",
        f"(a) double descent at depth {DD_DEPTH} and none at depth {NO_DD_DEPTH} (flag of at least half of the seeds); "
        f"(b) spread({DD_DEPTH}) <= {SPREAD_RATIO} * spread({NO_DD_DEPTH}). Reproduced if (a) and (b) hold; "
        f"inconclusive without both depths or with < {MIN_TURNING_STEPS} analysed steps or < 2 layers",
    ),
    10: Claim(
        "the most accurate DNN does not grok and relies on NPM neurons (flat first-layer RPD)",
        ("sweep",),
        "the sweep run with the highest final test_acc: its events grokking flag and its final rpd_gradient "
        "(layer 1) vs the sweep's",
        f"(a) it does not grok; (b) its first-layer rpd_gradient <= the {NPM_QUANTILE} quantile of the sweep runs' "
        f"(NPM-rich = flatter RPD). Reproduced if (a) and (b) hold; needs >= {MIN_SWEEP_POINTS} runs; 'from the "
        "beginning' is not scored",
    ),
}


# ----------------------------------------------------------------------------------------------------------------
# Table helpers.


def _role_tables(tables_by_role: Mapping[str, RunTables], role: str) -> RunTables | None:
    """The tables of ``role``, restricted to its runs when the runs table says which runs play it."""
    tables = tables_by_role.get(role)
    if tables is None or tables.runs is None or tables.runs.empty:
        return None
    runs = tables.runs
    if "role" in runs.columns and (runs["role"] == role).any():
        keep = set(runs.loc[runs["role"] == role, "run"])
        tables = RunTables(
            *(
                frame[frame["run"].isin(keep)] if isinstance(frame, pd.DataFrame) and "run" in frame.columns else frame
                for frame in tables[:-1]
            ),
            {run: value for run, value in tables.events.items() if run in keep},
        )
    return tables


def _ok_runs(tables: RunTables) -> tuple[pd.DataFrame, list[str]]:
    """Runs that did not diverge, and the ids of those that did."""
    runs = tables.runs
    bad = runs["status"].eq("diverged") if "status" in runs.columns else pd.Series(False, index=runs.index)
    bad |= runs["run"].map(lambda run: (tables.events.get(run) or {}).get("status") == "diverged")
    return runs[~bad].copy(), sorted(runs.loc[bad, "run"])


def _final_steps(tables: RunTables) -> pd.Series:
    """run -> final step (history if present, else metrics)."""
    steps = pd.Series(dtype=float)
    for frame in (tables.metrics, tables.history):
        if frame is not None and not frame.empty and "step" in frame.columns:
            steps = frame.groupby("run")["step"].max().combine_first(steps)
    return steps


def _layer_rows(frame: pd.DataFrame, metric: str, layer: int | None) -> pd.DataFrame:
    rows = frame[frame["metric"] == metric]
    layers = pd.to_numeric(rows["layer"], errors="coerce") if "layer" in rows.columns else pd.Series(np.nan, rows.index)
    return rows[layers.isna()] if layer is None else rows[layers == layer]


def _bounded(value: Any, note: Any) -> float:
    """A value, or the bound written in a basin note (``beyond_grid: > 100``); NaN when neither exists."""
    value = pd.to_numeric(value, errors="coerce")
    if pd.notna(value):
        return float(value)
    match = re.search(r"[<>]\s*([-+0-9.eE]+)", str(note)) if isinstance(note, str) else None
    return float(match.group(1)) if match else math.nan


def _final_values(tables: RunTables, metric: str, layer: int | None = None) -> pd.DataFrame:
    """Columns run, value, note: each run's ``metric`` at its final step (history fills in network metrics)."""
    final = _final_steps(tables)
    out = pd.DataFrame(columns=["run", "value", "note"])
    metrics = tables.metrics
    if metrics is not None and not metrics.empty and "metric" in metrics.columns:
        rows = _layer_rows(metrics, metric, layer)
        rows = rows[rows["step"] == rows["run"].map(final)]
        note = rows["note"] if "note" in rows.columns else pd.Series(np.nan, rows.index)
        out = pd.DataFrame({"run": rows["run"], "value": pd.to_numeric(rows["value"], errors="coerce"), "note": note})
        out = out.drop_duplicates("run", keep="last")
    history = tables.history
    if layer is None and history is not None and not history.empty and metric in history.columns:
        rows = history[history["step"] == history["run"].map(final)]
        rows = rows[~rows["run"].isin(out.loc[out["value"].notna(), "run"])]
        extra = pd.DataFrame({"run": rows["run"], "value": pd.to_numeric(rows[metric], errors="coerce"), "note": None})
        out = pd.concat([out[~out["run"].isin(extra["run"])], extra], ignore_index=True)
    return out.reset_index(drop=True)


def _value_at(tables: RunTables, run: str, step: int | None, metric: str, layer: int | None = None) -> float:
    """``metric`` of ``run`` at ``step`` (basin bounds allowed); NaN when absent."""
    metrics = tables.metrics
    if step is None or metrics is None or metrics.empty or "metric" not in metrics.columns:
        return math.nan
    rows = _layer_rows(metrics, metric, layer)
    rows = rows[(rows["run"] == run) & (rows["step"] == step)]
    if rows.empty:
        return math.nan
    last = rows.iloc[-1]
    return math.nan if str(last.get("note", "")).startswith("degenerate") else _bounded(last["value"], last.get("note"))


def _spec(runs: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(runs[column], errors="coerce") if column in runs.columns else pd.Series(np.nan, runs.index)


def _grid(tables: RunTables, metric: str, layer: int | None = None, basin: bool = False) -> tuple[pd.DataFrame, list]:
    """Sweep grid: columns depth, width, value (mean over seeds of final values) and the diverged run ids."""
    runs, diverged = _ok_runs(tables)
    values = _final_values(tables, metric, layer)
    if basin:
        values = values[~values["note"].astype(str).str.startswith("degenerate")]
        values["value"] = [_bounded(v, n) for v, n in zip(values["value"], values["note"], strict=True)]
    frame = pd.DataFrame({"run": runs["run"], "depth": _spec(runs, "model.depth"), "width": _spec(runs, "model.width")})
    frame = frame.merge(values[["run", "value"]], on="run").dropna()
    frame["value"] = frame["value"].astype(float)
    return frame.groupby(["depth", "width"], as_index=False)["value"].mean(), diverged


def _dataset(runs: pd.DataFrame, context: Mapping[str, Any]) -> str | None:
    """The runs' dataset name (the first one), else the context's."""
    if "dataset" in runs.columns and runs["dataset"].notna().any():
        return str(runs["dataset"].dropna().iloc[0])
    names = context.get("datasets") or ([context["dataset"]] if context.get("dataset") else [])
    return str(names[0]) if len(names) == 1 else None


def _single_source(context: Mapping[str, Any]) -> str | None:
    sources = context.get("sources") or []
    return str(sources[0]) if len(sources) == 1 else None


def _is_full_mnist(dataset: str | None, context: Mapping[str, Any]) -> bool:
    return dataset in FULL_DATASETS or _single_source(context) in FULL_DATASETS


def _training_sizes(runs: pd.DataFrame, context: Mapping[str, Any]) -> pd.Series:
    """train.n_train per run; a null (the whole training set) becomes the dataset's full size, or NaN if unknown."""
    full = context.get("n_train")
    if full is None:
        dataset = _dataset(runs, context)
        full = KNOWN_TRAIN_SIZES.get(dataset, KNOWN_TRAIN_SIZES.get(_single_source(context) or "", math.nan))
        full = FULL_N_TRAIN if math.isnan(full) and _is_full_mnist(dataset, context) else full
    return _spec(runs, "train.n_train").fillna(float(full))


def _grokked(tables: RunTables, run: str, key: str = "grokking") -> bool | None:
    """The run's grokking flag from events.json, or None (no events, no reading, history too short)."""
    reading = (tables.events.get(run) or {}).get(key)
    if not reading or "grokked" not in reading:
        return None
    history = tables.history
    points = 0 if history is None or history.empty else int((history["run"] == run).sum())
    return bool(reading["grokked"]) if points >= MIN_HISTORY_POINTS else None


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) < 2 or np.ptp(np.asarray(x, float)) == 0 or np.ptp(np.asarray(y, float)) == 0:
        return math.nan
    return float(spearmanr(x, y).statistic)


def _combine(parts: Sequence[tuple[str, str, str]]) -> tuple[str, str]:
    """Parts (verdict, name, text) -> the claim's verdict and a reason listing the parts."""
    verdicts = [verdict for verdict, _, _ in parts]
    verdict = NOT_REPRODUCED if NOT_REPRODUCED in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else REPRODUCED
    return verdict, "; ".join(f"({name}) {part_verdict}: {text}" for part_verdict, name, text in parts)


def _diverged_note(diverged: Sequence[str]) -> str:
    return f" [left out, diverged: {', '.join(diverged)}]" if diverged else ""


def _fmt(x: float) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _missing(role: str) -> Outcome:
    return Outcome(INCONCLUSIVE, "", f"role '{role}' missing or has no runs")


# ----------------------------------------------------------------------------------------------------------------
# Claims.


def claim_1(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "depth")
    if tables is None:
        return _missing("depth")
    runs, diverged = _ok_runs(tables)
    runs = runs[(_spec(runs, "model.depth") == PAPER_DEPTH) & (_spec(runs, "model.width") == PAPER_WIDTH)]
    if runs.empty:
        return Outcome(
            INCONCLUSIVE, "", f"no non-diverged {PAPER_DEPTH}x{PAPER_WIDTH} depth run{_diverged_note(diverged)}"
        )
    dataset = _dataset(runs, context)
    n_train = _training_sizes(runs, context).min()
    acc = _final_values(tables, "test_acc").set_index("run")["value"].reindex(runs["run"]).dropna()
    value = f"test_acc={_fmt(acc.mean())} over {len(acc)} run(s); dataset={dataset}, n_train={n_train:.0f}"
    if not _is_full_mnist(dataset, context) or not n_train >= FULL_N_TRAIN:
        return Outcome(INCONCLUSIVE, value, f"needs full MNIST ({FULL_N_TRAIN} training images)")
    if acc.empty:
        return Outcome(INCONCLUSIVE, value, "no final test_acc")
    passed = acc.mean() >= PAPER_ACC - ACC_TOLERANCE
    return Outcome(REPRODUCED if passed else NOT_REPRODUCED, value, f"threshold {PAPER_ACC - ACC_TOLERANCE:.3f}")


def _optimum_part(grid: pd.DataFrame, pick: Callable[[pd.Series], Any], window: tuple[int, int]) -> tuple[str, str]:
    """Per width: depth of the optimum (``pick`` = idxmax/idxmin) and whether it lies in ``window``."""
    low, high = window
    hits, found = [], []
    for width, curve in grid.groupby("width"):
        depths = curve["depth"]
        bracketed = (depths < low).any() and depths.between(low, high).any() and (depths > high).any()
        if len(curve) < MIN_SWEEP_POINTS or not bracketed:
            continue
        best = int(curve.loc[pick(curve["value"]), "depth"])
        hits.append(low <= best <= high)
        found.append(f"w{int(width)}:d{best}")
    text = f"optimum depth {', '.join(found) or 'none'}"
    if len(hits) < MIN_WIDTHS:
        return INCONCLUSIVE, f"{text}; < {MIN_WIDTHS} widths with a depth grid around {list(window)}"
    verdict = REPRODUCED if np.mean(hits) >= MAJORITY else NOT_REPRODUCED
    return verdict, f"{text}; {sum(hits)}/{len(hits)} in {list(window)}"


def _trend_part(grid: pd.DataFrame, sign: int) -> tuple[str, str]:
    """Median over depths of Spearman rho(width, value); holds when sign * median >= MIN_RHO."""
    rhos = {
        int(depth): _spearman(curve["width"], curve["value"])
        for depth, curve in grid.groupby("depth")
        if curve["width"].nunique() >= MIN_SWEEP_POINTS
    }
    rhos = {depth: rho for depth, rho in rhos.items() if math.isfinite(rho)}
    if not rhos:
        return INCONCLUSIVE, f"no depth with >= {MIN_SWEEP_POINTS} widths"
    median = float(np.median(list(rhos.values())))
    return (REPRODUCED if sign * median >= MIN_RHO else NOT_REPRODUCED), f"median rho(width)={median:.2f}"


def claim_2(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "sweep")
    if tables is None:
        return _missing("sweep")
    grid, diverged = _grid(tables, "test_acc")
    a = _optimum_part(grid, pd.Series.idxmax, BEST_DEPTH_RANGE)
    b = _trend_part(grid, +1)
    verdict, reason = _combine([(a[0], "a", a[1]), (b[0], "b", b[1])])
    return Outcome(verdict, f"{a[1]}; {b[1]}", reason + _diverged_note(diverged))


def claim_3(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "sweep")
    if tables is None:
        return _missing("sweep")
    grid, diverged = _grid(tables, "rpd_gradient", layer=1)
    if grid.empty:
        return Outcome(INCONCLUSIVE, "", "no final rpd_gradient of layer 1" + _diverged_note(diverged))
    a = _optimum_part(grid, pd.Series.idxmin, FLATTEST_DEPTH_RANGE)
    b = _trend_part(grid, -1)
    verdict, reason = _combine([(a[0], "a", a[1]), (b[0], "b", b[1])])
    return Outcome(verdict, f"{a[1]}; {b[1]}", reason + _diverged_note(diverged))


def _saturation_part(grid: pd.DataFrame, sign: int) -> tuple[str, str]:
    """Per width: monotone (sign) growth of log10 basin up to the pivot depth, small change beyond it."""
    hits, found = [], []
    for width, curve in grid.groupby("width"):
        curve = curve.sort_values("depth")
        depth, logs = curve["depth"].to_numpy(), np.log10(curve["value"].to_numpy(dtype=float))
        pivot = depth[np.argmin(np.abs(depth - SATURATION_DEPTH))]
        head = depth <= pivot
        if abs(pivot - SATURATION_DEPTH) > PIVOT_TOLERANCE or head.sum() < MIN_SWEEP_POINTS or head.all():
            continue
        rho = _spearman(depth[head], logs[head])
        rise, tail = logs[head][-1] - logs[0], logs[-1] - logs[head][-1]
        ok = sign * rho >= MIN_RHO and sign * rise > 0 and abs(tail) <= SATURATION_RATIO * abs(rise)
        hits.append(bool(ok))
        found.append(f"w{int(width)}: rho={rho:.2f} head={rise:+.2f} tail={tail:+.2f}")
    text = "; ".join(found) or "none"
    if not hits:
        return INCONCLUSIVE, f"no width with a depth grid around {SATURATION_DEPTH}"
    return (REPRODUCED if np.mean(hits) >= MAJORITY else NOT_REPRODUCED), f"{sum(hits)}/{len(hits)} widths [{text}]"


def claim_4(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "sweep")
    if tables is None:
        return _missing("sweep")
    parts = []
    for name, metric, sign in (("input", "basin_input", +1), ("weight", "basin_weight", -1)):
        grid, diverged = _grid(tables, metric, basin=True)
        grid = grid[grid["value"] > 0]
        verdict, text = _saturation_part(grid, sign)
        parts.append((verdict, name, text))
    verdict, reason = _combine(parts)
    value = " | ".join(f"{name}: {text}" for _, name, text in parts)
    return Outcome(verdict, value, reason + _diverged_note(diverged))


def claim_5(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "shallow")
    if tables is None:
        return _missing("shallow")
    runs, diverged = _ok_runs(tables)
    frame = pd.DataFrame(
        {
            "run": runs["run"],
            "activation": runs.get("model.activation"),
            "n": _training_sizes(runs, context),
        }
    )
    frame = frame[frame["activation"].isin(["tanh", "linear"])].dropna(subset=["n"])
    for column, metric, layer in (("acc", "test_acc", None), ("g", "rpd_gradient", 1)):
        frame = frame.merge(_final_values(tables, metric, layer)[["run", "value"]], on="run", how="left")
        frame = frame.rename(columns={"value": column})
    table = frame.groupby(["n", "activation"])[["acc", "g"]].mean().unstack("activation")
    sizes = [n for n in table.index if table.loc[n, "acc"].notna().sum() == 2] if len(table) else []
    if "tanh" not in frame["activation"].values or "linear" not in frame["activation"].values:
        sizes = []
    note = _diverged_note(diverged)
    if len(sizes) < MIN_SWEEP_POINTS:
        return Outcome(INCONCLUSIVE, f"sizes {sizes}", f"< {MIN_SWEEP_POINTS} sizes with both activations" + note)
    n_min, n_max = min(sizes), max(sizes)
    gap = {n: table.loc[n, ("acc", "tanh")] - table.loc[n, ("acc", "linear")] for n in (n_min, n_max)}

    def rel(n: float) -> float:
        lin, tanh = table.loc[n, ("g", "linear")], table.loc[n, ("g", "tanh")]
        return (lin - tanh) / ((abs(lin) + abs(tanh)) / 2)

    rels = {n: rel(n) if math.isfinite(table.loc[n, "g"].sum()) else math.nan for n in (n_min, n_max)}
    value = (
        f"n={int(n_min)}: gap={_fmt(gap[n_min])}, rel={_fmt(rels[n_min])}; "
        f"n={int(n_max)}: gap={_fmt(gap[n_max])}, rel={_fmt(rels[n_max])}"
    )
    if n_min > SMALL_N_MAX or n_max < LARGE_N_MIN:
        return Outcome(
            INCONCLUSIVE, value, f"sizes {int(n_min)}..{int(n_max)} do not span the paper's 600..60000" + note
        )
    a_ok = abs(gap[n_min]) <= ACC_COINCIDE and gap[n_max] - abs(gap[n_min]) >= ACC_DIVERGE
    a = (REPRODUCED if a_ok else NOT_REPRODUCED, "a", "accuracy gap")
    if not all(math.isfinite(r) for r in rels.values()):
        b = (INCONCLUSIVE, "b", "rpd_gradient of layer 1 missing")
    else:
        b_ok = abs(rels[n_min]) <= RPD_MATCH and rels[n_max] >= RPD_STEEPER
        b = (REPRODUCED if b_ok else NOT_REPRODUCED, "b", "RPD gradients")
    verdict, reason = _combine([a, b])
    return Outcome(verdict, value, reason + note)


def _at_least(a: tuple[float, float], b: tuple[float, float], margin: float) -> bool | None:
    """Is a - b >= margin for log10 intervals a, b (lo, hi)? None when the bounds leave it open."""
    if a[0] - b[1] >= margin:
        return True
    if a[1] - b[0] < margin:
        return False
    return None


def _log_interval(tables: RunTables, run: str, step: int | None) -> tuple[float, float] | None:
    """log10 input basin of ``run`` at ``step`` as an interval: exact (v, v), beyond (v, inf), below (-inf, v)."""
    metrics = tables.metrics
    if step is None or metrics is None or metrics.empty:
        return None
    rows = _layer_rows(metrics, "basin_input", None)
    rows = rows[(rows["run"] == run) & (rows["step"] == step)]
    if rows.empty:
        return None
    value, note = pd.to_numeric(rows["value"].iloc[-1], errors="coerce"), str(rows["note"].iloc[-1])
    if pd.notna(value) and value > 0:
        return (math.log10(value), math.log10(value))
    bound = _bounded(value, note)
    if not (bound > 0):
        return None
    log = math.log10(bound)
    return (log, math.inf) if note.startswith("beyond") else (-math.inf, log) if note.startswith("below") else None


def _verdict(flag: bool | None) -> str:
    return INCONCLUSIVE if flag is None else REPRODUCED if flag else NOT_REPRODUCED


def claim_6(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "grokking")
    if tables is None:
        return _missing("grokking")
    runs, diverged = _ok_runs(tables)
    if runs.empty:
        return Outcome(INCONCLUSIVE, "", "the grokking run diverged" + _diverged_note(diverged))
    run = sorted(runs["run"])[0]
    reading = (tables.events.get(run) or {}).get("grokking") or {}
    after = _log_interval(tables, run, reading.get("after_step"))
    before = _log_interval(tables, run, reading.get("before_step"))
    grokked = _grokked(tables, run)

    def show(x: tuple[float, float] | None) -> str:
        return "nan" if x is None else _fmt(x[0]) if x[0] == x[1] else f"[{_fmt(x[0])}, {_fmt(x[1])}]"

    if after is None:
        a = (INCONCLUSIVE, "a", "no basin_input at the after step")
    else:
        target = (PAPER_TRANSITION_LOG10, PAPER_TRANSITION_LOG10)
        inside = (_at_least(after, target, -TRANSITION_TOLERANCE), _at_least(target, after, -TRANSITION_TOLERANCE))
        flag = None if None in inside else all(inside)
        flag = False if False in inside else flag
        a = (_verdict(flag), "a", f"log10 basin(after)={show(after)}")
    if grokked is not True or before is None or after is None:
        why = "the run did not grok" if grokked is False else "no grokking reading or basin before/after"
        b = (INCONCLUSIVE, "b", why)
    else:
        b = (_verdict(_at_least(after, before, BASIN_GROWTH)), "b", f"log10 basin(before)={show(before)}")
    sweep = _role_tables(tables_by_role, "sweep")
    if sweep is None or after is None:
        c = (INCONCLUSIVE, "c", "no sweep role" if sweep is None else "no basin after grokking")
    else:
        deep_runs, _ = _ok_runs(sweep)
        deep_runs = deep_runs[_spec(deep_runs, "model.depth") >= DEEP_MIN_DEPTH]
        final = _final_steps(sweep)
        logs = [_log_interval(sweep, r, final.get(r)) for r in deep_runs["run"]]
        logs = [x for x in logs if x is not None]
        if not logs:
            c = (INCONCLUSIVE, "c", f"no final basin_input of a sweep run with depth >= {DEEP_MIN_DEPTH}")
        else:
            deep = (float(np.median([x[0] for x in logs])), float(np.median([x[1] for x in logs])))
            c = (_verdict(_at_least(deep, after, DEEP_LARGER)), "c", f"deep median log10 basin={show(deep)}")
    verdict, reason = _combine([a, b, c])
    value = "; ".join(text for _, _, text in (a, b, c))
    return Outcome(verdict, value, reason + _diverged_note(diverged))


def claim_7(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "depth")
    if tables is None:
        return _missing("depth")
    runs, diverged = _ok_runs(tables)
    flags = {run: (_grokked(tables, run), _grokked(tables, run, "grokking_bntrain")) for run in sorted(runs["run"])}
    grokkers = {run: bntrain for run, (evalmode, bntrain) in flags.items() if evalmode}
    value = ", ".join(f"{run}: eval={e} train={t}" for run, (e, t) in flags.items()) or "no runs"
    note = _diverged_note(diverged)
    if not grokkers:
        return Outcome(INCONCLUSIVE, value, "no depth run groks in eval mode: nothing to remove" + note)
    if any(bntrain is True for bntrain in grokkers.values()):
        return Outcome(NOT_REPRODUCED, value, "a run still groks with train-mode BN" + note)
    if any(bntrain is None for bntrain in grokkers.values()):
        return Outcome(INCONCLUSIVE, value, "train-mode BN reading missing for a grokking run" + note)
    return Outcome(REPRODUCED, value, f"{len(grokkers)} eval-mode grokking run(s), none groks in train mode" + note)


def _axis_part(runs: pd.DataFrame, axis: str, other: str, groks_at_max: bool) -> tuple[str, str]:
    """Within each group of fixed ``other`` (and depth): grokking at one end of ``axis``, none at the other."""
    results, texts = [], []
    for key, group in runs.groupby([other, "depth"], dropna=False):
        group = group.dropna(subset=[axis]).groupby(axis)["grokked"].agg(lambda f: None if f.isna().any() else any(f))
        if len(group) < 2:
            continue
        low, high = group.iloc[0], group.iloc[-1]
        if low is None or high is None:
            results.append(None)
        else:
            results.append(bool(high and not low) if groks_at_max else bool(low and not high))
        texts.append(f"{other}={key[0]:g}: " + ", ".join(f"{x:g}->{g}" for x, g in group.items()))
    text = "; ".join(texts) or "none"
    if not results:
        return INCONCLUSIVE, f"no group with >= 2 values of {axis}"
    flag = False if False in results else None if None in results else True
    return _verdict(flag), text


def claim_8(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "conditions")
    if tables is None:
        return _missing("conditions")
    runs, diverged = _ok_runs(tables)
    runs = runs.assign(
        batch=_spec(runs, "train.batch_size"),
        lr=_spec(runs, "train.lr"),
        depth=_spec(runs, "model.depth"),
        grokked=[_grokked(tables, run) for run in runs["run"]],
    )
    batch = _axis_part(runs, "batch", "lr", groks_at_max=True)
    lr = _axis_part(runs, "lr", "batch", groks_at_max=False)
    verdict, reason = _combine([(batch[0], "batch", batch[1]), (lr[0], "lr", lr[1])])
    return Outcome(verdict, f"batch: {batch[1]} | lr: {lr[1]}", reason + _diverged_note(diverged))


def claim_9(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "depth")
    if tables is None:
        return _missing("depth")
    runs, diverged = _ok_runs(tables)
    depth = _spec(runs, "model.depth")
    note = _diverged_note(diverged)
    metrics = tables.metrics
    g = metrics[metrics["metric"] == "rpd_gradient"] if metrics is not None and "metric" in metrics.columns else None
    found: dict[int, tuple[bool | None, float]] = {}
    for d in (DD_DEPTH, NO_DD_DEPTH):
        ids = sorted(runs.loc[depth == d, "run"])
        if not ids:
            return Outcome(INCONCLUSIVE, "", f"no non-diverged {d}-layer depth run" + note)
        flags = [((tables.events.get(r) or {}).get("double_descent") or {}).get("double_descent") for r in ids]
        flag = None if None in flags else bool(np.mean(flags) >= MAJORITY)
        spreads = []
        for r in ids:
            rows = g[g["run"] == r] if g is not None else pd.DataFrame(columns=["step", "layer", "value"])
            if rows["step"].nunique() >= MIN_TURNING_STEPS:
                spread = turning_point_spread(rows)["spread"]
                spreads.append(math.nan if spread is None else spread)
        found[d] = (flag, float(np.mean(spreads)) if spreads else math.nan)
    (dd_flag, dd_spread), (no_flag, no_spread) = found[DD_DEPTH], found[NO_DD_DEPTH]
    value = (
        f"d{DD_DEPTH}: double_descent={dd_flag}, spread={_fmt(dd_spread)}; "
        f"d{NO_DD_DEPTH}: double_descent={no_flag}, spread={_fmt(no_spread)}"
    )
    a = _verdict(None if dd_flag is None or no_flag is None else dd_flag and not no_flag)
    if math.isfinite(dd_spread) and math.isfinite(no_spread):
        b = _verdict(dd_spread <= SPREAD_RATIO * no_spread)
    else:
        b = INCONCLUSIVE
    b_text = "turning-point spreads" if b != INCONCLUSIVE else f"< {MIN_TURNING_STEPS} analysed steps or < 2 layers"
    verdict, reason = _combine([(a, "a", "double-descent flags"), (b, "b", b_text)])
    return Outcome(verdict, value, reason + note)


def claim_10(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "sweep")
    if tables is None:
        return _missing("sweep")
    runs, diverged = _ok_runs(tables)
    note = _diverged_note(diverged)
    acc = _final_values(tables, "test_acc").set_index("run")["value"].reindex(runs["run"]).dropna()
    if len(acc) < MIN_SWEEP_POINTS:
        return Outcome(INCONCLUSIVE, f"{len(acc)} run(s) with test_acc", f"< {MIN_SWEEP_POINTS} sweep runs" + note)
    best = str(acc.idxmax())
    grokked = _grokked(tables, best)
    g = _final_values(tables, "rpd_gradient", 1).set_index("run")["value"].reindex(runs["run"]).dropna()
    value = f"best {best} (test_acc={_fmt(acc[best])}): grokked={grokked}"
    if grokked is None:
        a = (INCONCLUSIVE, "a", f"no grokking reading (events or >= {MIN_HISTORY_POINTS} history rows)")
    else:
        a = (_verdict(not grokked), "a", "grokking flag")
    if best not in g.index or len(g) < MIN_SWEEP_POINTS:
        b = (INCONCLUSIVE, "b", f"first-layer rpd_gradient of the best run or of >= {MIN_SWEEP_POINTS} runs missing")
    else:
        cut = float(g.quantile(NPM_QUANTILE))
        value += f", G1={_fmt(g[best])} vs sweep {NPM_QUANTILE} quantile {_fmt(cut)}"
        b = (_verdict(bool(g[best] <= cut)), "b", "first-layer RPD gradient")
    verdict, reason = _combine([a, b])
    return Outcome(verdict, value, reason + note)


CHECKS: dict[int, Callable[[Mapping[str, RunTables], Mapping[str, Any]], Outcome]] = {
    1: claim_1,
    2: claim_2,
    3: claim_3,
    4: claim_4,
    5: claim_5,
    6: claim_6,
    7: claim_7,
    8: claim_8,
    9: claim_9,
    10: claim_10,
}


def evaluate(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per claim of methods.md §14: claim, title, quantity, criterion, value, verdict, reason."""
    context = dict(context or {})
    rows = []
    for number, claim in CLAIMS.items():
        outcome = CHECKS[number](tables_by_role, context)
        rows.append(
            {
                "claim": number,
                "title": claim.title,
                "quantity": claim.quantity,
                "criterion": claim.criterion,
                **outcome._asdict(),
            }
        )
    return pd.DataFrame(rows, columns=["claim", "title", "quantity", "criterion", "value", "verdict", "reason"])
