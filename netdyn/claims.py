"""Claims scorecard: a verdict on each claim of methods.md §14 (and two central ones it leaves implicit), computed
from the run tables, with an interval that says how far the verdict can be trusted (docs/methods.md §21).

For each claim this module measures one quantity per part from the collected tables (``netdyn.tables.RunTables``,
one per experiment role), compares it with a criterion fixed in advance (report/claims.md, built from the constants
below) and returns a verdict: ``reproduced``, ``not reproduced`` or ``inconclusive``. A claim that fails to reproduce
with a correct implementation is a finding, not a bug.

Conventions shared by every claim:

* **Final value**: a run's metric at its final step (the largest ``step`` of its history, or of its metrics without a
  history).
* **Diverged runs** (``runs.status`` or ``events.status`` "diverged") are left out and named in the reason.
* **Replicates and intervals**: runs that differ only in ``train.seed`` are replicates of one sweep point. Each part's
  quantity is computed on the replicate means, and a percentile bootstrap (``BOOTSTRAP_RESAMPLES`` resamples of the
  replicates of every point, with replacement, fixed seed) gives its ``INTERVAL_LEVEL`` interval. A part is
  ``reproduced`` only when the whole interval meets the criterion, ``not reproduced`` only when the whole interval
  fails it, else ``inconclusive``; with fewer than ``MIN_REPLICATES`` replicates per point there is no interval and
  the part is inconclusive. Claims about deep BN nets in general (7, 11) take every run of the role as a replicate.
* **Power**: an optimum needs a grid of at least ``MIN_SWEEP_POINTS`` points that brackets the window; a trend
  (Spearman rho) needs at least ``MIN_TREND_POINTS`` points: three points give rho of ±1 or ±0.5 by chance too often.
* **Basin bounds**: a basin beyond or below the amplitude grid is known only as a bound. Claim 4 takes the bound;
  claim 6 carries it as an interval (a pessimistic and an optimistic value), so a bound decides only when it settles
  the criterion. ``degenerate`` basins are left out.
* **Several parts**: the claim is ``not reproduced`` when any part fails, else ``inconclusive`` when any part cannot be
  decided, else ``reproduced``; ``decided_by`` names the part whose interval the scorecard's numeric columns show.
* **Scale**: ``paper`` when the claim's runs use the paper's data (full MNIST, 60,000 training images; the Omnigrok
  1,000-image subset for claim 6), model sizes and optimizer for that claim (methods.md §3, §12); ``paper-size``
  when they use the paper's model and training-set sizes and optimizer on other data (Fashion-MNIST's 60,000
  images, say); else ``reduced``: a verdict at reduced scale is a finding about the small reproduction, and one at
  paper size a finding about the paper's setup on another dataset, neither about the paper itself.

``context`` gives what the tables do not, all keys optional: ``dataset`` (a name) or ``datasets`` (names), used when
the runs table has no ``dataset`` column; ``sources`` (the data sources of those datasets, e.g. ``["mnist"]``); and
``n_train`` (the full training-set size, for runs with ``train.n_train`` null; otherwise ``KNOWN_TRAIN_SIZES`` of the
dataset name or of the single source). ``evaluate(tables_by_role, context)`` returns one row per claim;
``design_check(runs_by_role, context)`` says, before anything runs, which claims a design can settle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from netdyn.config import KNOWN_TRAIN_SIZES
from netdyn.events import turning_point_spread
from netdyn.tables import RunTables, final_steps, final_values, live_runs, scalars

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
PAPER, PAPER_SIZE, REDUCED = "paper", "paper-size", "reduced"

# General requirements.
MIN_SWEEP_POINTS = 3  # points along a swept axis needed to locate an optimum
MIN_TREND_POINTS = 4  # points needed to read a trend (Spearman rho)
MIN_WIDTHS = 2  # widths needed to call a depth optimum "independent of width"
MIN_HISTORY_POINTS = 5  # history rows needed before a grokking flag means anything
MIN_REPLICATES = 2  # replicates (seeds) per point needed for an interval
MAJORITY = 0.5  # "for at least half of the widths / runs"
MIN_RHO = 0.5  # |Spearman rho| that counts as a monotone trend
BOOTSTRAP_RESAMPLES = 2000
INTERVAL_LEVEL = 0.95
BOOTSTRAP_SEED = 0

# Claim 1: the 23 x 1024 ReLU net on full MNIST reaches 98.6 %.
PAPER_ACC = 0.986
ACC_TOLERANCE = 0.005
PAPER_DEPTH, PAPER_WIDTH = 23, 1024
FULL_DATASETS = ("mnist",)  # dataset names, or the single data source, that mean the full torchvision MNIST
FULL_N_TRAIN = 60_000

# Claim 2: best depth 6-8, accuracy grows with width.
BEST_DEPTH_RANGE = (6, 8)

# Claim 3: first-layer RPD gradient smallest near depth 6, falls with width.
FLATTEST_DEPTH_RANGE = (5, 7)

# Claim 4: basins vs depth, saturating near 8 layers.
SATURATION_DEPTH = 8
PIVOT_TOLERANCE = 2  # the grid depth nearest SATURATION_DEPTH must lie within this many layers of it
SATURATION_RATIO = 0.5  # |change beyond the pivot| <= ratio * |change up to the pivot| (log10 basin)

# Claims 2-4, 10: the paper's widths run from 128 to 1280.
PAPER_MIN_WIDTH, PAPER_WIDE = 128, 1024

# Claim 5: Fig. 2, NNN (tanh) vs LNN (linear) across the training-set size.
SMALL_N_MAX = 1_000
LARGE_N_MIN = 30_000
ACC_COINCIDE = 0.02
ACC_DIVERGE = 0.02
RPD_MATCH = 0.2
RPD_STEEPER = 0.2
PAPER_SHALLOW_WIDTH = 2048

# Claim 6: Fig. 6 input basin of the grokking net, and deep nets' basins.
PAPER_TRANSITION_LOG10 = -3.0  # reported beside the measurement, not scored: the paper gives no unit (methods.md U10)
BASIN_GROWTH = 0.1  # decades: one step of the 10-per-decade amplitude grid
DEEP_MIN_DEPTH = 8
DEEP_LARGER = 0.5  # decades
GROKKING_N_TRAIN, GROKKING_WIDTH, GROKKING_DEPTH = 1000, 200, 2

# Claim 9: double descent at 32 layers, none at 23; synchronous turning points.
DD_DEPTH, NO_DD_DEPTH = 32, 23
SPREAD_RATIO = 0.5
MIN_TURNING_STEPS = 5

# Claim 10: the most accurate sweep run does not grok and has a flat (NPM-rich) first layer.
NPM_QUANTILE = 0.5

# Claim 11: the standard structure of Fig. 3(a).
PRUNING_TOLERANCE = 0.02  # "accurate": within this of the unpruned test accuracy
LP_EARLY = 0.25  # LP accurate from a start layer in the first quarter of the net
LMAP_LATE = 0.5  # L-map accurate only from a start layer in the second half

# Claim 12: Fig. 2(e), G(t) of the NNN rises, peaks and falls.
G_RISE = 0.05  # G units
G_FALL_FRACTION = 0.1  # the final G lies at least this fraction of the rise below the peak


class Claim(NamedTuple):
    title: str
    roles: tuple[str, ...]
    quantity: str
    criterion: str


class Part(NamedTuple):
    """One part of a claim: its verdict (None for a part reported but not scored), name, text and interval."""

    verdict: str | None
    name: str
    text: str
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    replicates: int = 0


class Outcome(NamedTuple):
    verdict: str
    value: str
    reason: str
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    replicates: int = 0
    decided_by: str = ""


class Estimate(NamedTuple):
    """A quantity computed on the replicate means, its bootstrap interval and the fewest replicates of a point."""

    value: float
    low: float
    high: float
    replicates: int


INTERVAL = f"{INTERVAL_LEVEL:.0%} bootstrap interval over seeds"

CLAIMS: dict[int, Claim] = {
    1: Claim(
        "23x1024 ReLU DNN reaches 98.6% on MNIST",
        ("depth",),
        f"final test_acc of the depth runs with model.depth = {PAPER_DEPTH} and model.width = {PAPER_WIDTH} "
        f"(mean over seeds, {INTERVAL})",
        f"reproduced if the interval lies at or above {PAPER_ACC} - {ACC_TOLERANCE}; not reproduced if it lies below; "
        f"inconclusive otherwise, with < {MIN_REPLICATES} seeds, or unless the data is full MNIST (dataset name, or "
        f"the single data source, in {list(FULL_DATASETS)}) with >= {FULL_N_TRAIN} training images",
    ),
    2: Claim(
        "best depth 6-8, roughly independent of width; accuracy grows with width",
        ("sweep",),
        "(a) the fraction of widths whose argmax over depth of final test_acc lies in the window; (b) the median over "
        f"depths of Spearman rho(width, final test_acc); seeds averaged, {INTERVAL}",
        f"(a) fraction >= {MAJORITY} over the widths whose depth grid has >= {MIN_SWEEP_POINTS} depths including one "
        f"below, one inside and one above {list(BEST_DEPTH_RANGE)} (needs >= {MIN_WIDTHS} such widths); (b) median "
        f"rho >= {MIN_RHO} over depths with >= {MIN_TREND_POINTS} widths. Each part decided by its interval; "
        "reproduced if (a) and (b) hold",
    ),
    3: Claim(
        "first-layer RPD gradient smallest near depth 6, falls with width",
        ("sweep",),
        "(a) the fraction of widths whose argmin over depth of final rpd_gradient (layer 1) lies in the window; (b) "
        f"the median over depths of Spearman rho(width, rpd_gradient); seeds averaged, {INTERVAL}",
        f"(a) fraction >= {MAJORITY} over the widths whose depth grid has >= {MIN_SWEEP_POINTS} depths including one "
        f"below, one inside and one above {list(FLATTEST_DEPTH_RANGE)} (needs >= {MIN_WIDTHS} such widths); (b) median "
        f"rho <= -{MIN_RHO} over depths with >= {MIN_TREND_POINTS} widths. Each part decided by its interval; "
        "reproduced if (a) and (b) hold; saturation is not scored",
    ),
    4: Claim(
        "input basin grows, weight basin shrinks with depth; both saturate near 8 layers",
        ("sweep",),
        "per space, the fraction of testable widths whose log10 final basin vs depth is monotone up to the pivot (the "
        f"grid depth nearest {SATURATION_DEPTH}: Spearman rho, change head) and flat beyond it (change tail); seeds "
        f"averaged, {INTERVAL}",
        f"a width is testable with its pivot within {PIVOT_TOLERANCE} of {SATURATION_DEPTH}, >= {MIN_TREND_POINTS} "
        f"depths <= pivot and >= 1 beyond; input holds for it if rho >= {MIN_RHO}, head > 0 and |tail| <= "
        f"{SATURATION_RATIO} * |head|; weight if rho <= -{MIN_RHO}, head < 0 and |tail| <= {SATURATION_RATIO} * "
        f"|head|. Each space reproduced if its fraction >= {MAJORITY} (by its interval)",
    ),
    5: Claim(
        "Fig. 2: NNN and LNN coincide at small n, diverge at large n; LNN RPD steeper at large n",
        ("shallow",),
        "gap(n) = final test_acc(tanh) - test_acc(linear); rel(n) = (G_lin - G_tanh) / mean(|G_lin|, |G_tanh|) with "
        f"G = final rpd_gradient of layer 1; at the smallest and largest n; seeds averaged, {INTERVAL}",
        f"(a1) |gap(n_min)| <= {ACC_COINCIDE}; (a2) gap(n_max) - |gap(n_min)| >= {ACC_DIVERGE}; (b1) |rel(n_min)| <= "
        f"{RPD_MATCH}; (b2) rel(n_max) >= {RPD_STEEPER}; each decided by its interval. Reproduced if all hold; "
        f"inconclusive with fewer than {MIN_SWEEP_POINTS} sizes run with both activations, n_min > {SMALL_N_MAX} or "
        f"n_max < {LARGE_N_MIN}",
    ),
    6: Claim(
        "Fig. 6: the input basin grows after grokking, and deep nets' basins are larger",
        ("grokking", "sweep"),
        "log10 basin_input of the grokking runs at the events' before/after steps; median final log10 basin_input of "
        f"sweep runs with model.depth >= {DEEP_MIN_DEPTH}; seeds averaged, {INTERVAL}",
        "(a) reported, not scored: log10 basin(after) beside the paper's transition near "
        f"1e{PAPER_TRANSITION_LOG10:g}, whose unit the paper never gives; (b) over the runs that grokked, log10 "
        f"basin(after) - log10 basin(before) "
        f">= {BASIN_GROWTH}; (c) deep median - log10 basin(after) >= {DEEP_LARGER}. Reproduced if (b) and (c) hold "
        "(bounded basins decide only when the bound settles it); the 'gentler transition' is not scored",
    ),
    7: Claim(
        "train-mode BN at test time removes grokking in deep nets",
        ("depth",),
        "events bn_grokking.bn_lag_steps (eval-mode test accuracy onset minus train-mode onset) and the train-mode "
        "grokking flag (grokking_bntrain) of the depth runs, every run a replicate; "
        f"{INTERVAL.replace('seeds', 'runs')}",
        "(a) mean lag > 0 (by its interval); (b) the fraction of runs that grok in train mode < "
        f"{MAJORITY} (by its interval). Reproduced if (a) and (b) hold; inconclusive when no run shows any lag",
    ),
    8: Claim(
        "grokking appears with a larger batch or a smaller lr: the BN lag grows with batch size, shrinks with lr",
        ("conditions",),
        "Spearman rho(train.batch_size, bn_lag_steps) at fixed train.lr and depth, and rho(train.lr, bn_lag_steps) at "
        f"fixed train.batch_size and depth (median over groups); seeds averaged, {INTERVAL}",
        f"batch: rho >= {MIN_RHO}; lr: rho <= -{MIN_RHO}; over groups with >= {MIN_TREND_POINTS} values of the axis "
        "that have a lag; each decided by its interval. Reproduced if both hold; inconclusive when no run shows any "
        "lag or an axis has no such group",
    ),
    9: Claim(
        f"double descent at {DD_DEPTH} layers (synchronous G_m turning points), none at {NO_DD_DEPTH}",
        ("depth",),
        "events double_descent flags, and the spread (std of log10 t*_m across the hidden layers whose G_m turns, "
        f"netdyn.events.turning_point_spread) of rpd_gradient for the {DD_DEPTH}- and {NO_DD_DEPTH}-layer runs; "
        f"{INTERVAL}",
        f"(a1) fraction of {DD_DEPTH}-layer seeds with double descent >= {MAJORITY}; (a2) fraction of "
        f"{NO_DD_DEPTH}-layer seeds with it < {MAJORITY}; (b) spread({DD_DEPTH}) - {SPREAD_RATIO} * "
        f"spread({NO_DD_DEPTH}) <= 0, not reproduced when G_m turns in fewer than 2 layers of most {DD_DEPTH}-layer "
        f"seeds (a maximum at the first or last analysed step is no turning point). Reproduced if all hold; "
        f"inconclusive without both depths or with < {MIN_TURNING_STEPS} analysed steps",
    ),
    10: Claim(
        "the most accurate DNN does not grok and relies on NPM neurons (flat first-layer RPD)",
        ("sweep",),
        "the sweep point with the highest mean final test_acc: the fraction of its seeds that grok, and its final "
        f"rpd_gradient (layer 1) minus the sweep's {NPM_QUANTILE} quantile; {INTERVAL}",
        f"(a) fraction < {MAJORITY}, testable only when some sweep run groks (not grokking says nothing when nothing "
        f"groks); (b) difference <= 0 (NPM-rich = flatter RPD). Reproduced if (a) and (b) hold; needs >= "
        f"{MIN_SWEEP_POINTS} points; 'from the beginning' is not scored",
    ),
    11: Claim(
        "the standard structure: LP accurate from early layers, L-map only from a late layer (Fig. 3(a))",
        ("depth",),
        "per depth run at its final step, the first start layer l whose lp_acc (lmap_acc) is within "
        f"{PRUNING_TOLERANCE} of the unpruned test_acc, as a position (l - 1) / D in the net; every run a replicate; "
        f"{INTERVAL.replace('seeds', 'runs')}",
        f"(a) mean LP position <= {LP_EARLY}; (b) mean L-map position >= {LMAP_LATE}; each decided by its interval. "
        "Reproduced if (a) and (b) hold",
    ),
    12: Claim(
        "Fig. 2(e): the NNN's RPD gradient G(t) rises, peaks and falls",
        ("shallow",),
        "rpd_gradient (layer 1) over the analysed steps of the tanh runs at the largest n: the rise G(t*) - G(first) "
        f"and the fall (G(t*) - G(final)) / rise, with t* = argmax G; seeds averaged, {INTERVAL}",
        f"(a) rise >= {G_RISE}; (b) fall >= {G_FALL_FRACTION}; each decided by its interval. Reproduced if both hold; "
        f"inconclusive with < {MIN_TURNING_STEPS} analysed steps",
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
        frames = {
            field: frame[frame["run"].isin(keep)]
            if isinstance(frame, pd.DataFrame) and "run" in frame.columns
            else frame
            for field, frame in tables._asdict().items()
            if field != "events"
        }
        tables = RunTables(**frames, events={run: value for run, value in tables.events.items() if run in keep})
    return tables


def _ok_runs(tables: RunTables) -> tuple[pd.DataFrame, list[str]]:
    """Runs that did not diverge, and the ids of those that did (netdyn.tables.live_runs)."""
    live = live_runs(tables.runs)
    return live.copy(), sorted(set(tables.runs["run"]) - set(live["run"])) if "run" in tables.runs.columns else []


def _layer_rows(frame: pd.DataFrame, metric: str, layer: int | None) -> pd.DataFrame:
    rows = frame[frame["metric"] == metric]
    layers = pd.to_numeric(rows["layer"], errors="coerce") if "layer" in rows.columns else pd.Series(np.nan, rows.index)
    return rows[layers.isna()] if layer is None else rows[layers == layer]


def _bounded(value: Any, bound: Any, bound_value: Any) -> float:
    """A value, or the grid's bound of a missing one (a basin beyond the amplitude grid); NaN when neither exists."""
    value = pd.to_numeric(value, errors="coerce")
    if pd.notna(value):
        return float(value)
    return float(bound_value) if bound in ("lower", "upper") and pd.notna(bound_value) else math.nan


def _final_steps(tables: RunTables) -> dict[str, int]:
    return final_steps(scalars(tables))


def _final_values(tables: RunTables, metric: str, layer: int | None = None) -> pd.DataFrame:
    """Each run's ``metric`` at its final step (netdyn.tables.final_values: history fills in network metrics)."""
    return final_values(scalars(tables), metric, layer)


def _spec(runs: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(runs[column], errors="coerce") if column in runs.columns else pd.Series(np.nan, runs.index)


def _grid(
    tables: RunTables, metric: str, layer: int | None = None, basin: bool = False
) -> tuple[dict[tuple, np.ndarray], list[str]]:
    """Sweep points ``(depth, width) -> final values of its replicates`` and the diverged run ids."""
    runs, diverged = _ok_runs(tables)
    values = _final_values(tables, metric, layer)
    if basin:
        values = values[~values["note"].astype(str).str.startswith("degenerate")]
        values["value"] = [
            _bounded(v, b, bv) for v, b, bv in zip(values["value"], values["bound"], values["bound_value"], strict=True)
        ]
    frame = pd.DataFrame({"run": runs["run"], "depth": _spec(runs, "model.depth"), "width": _spec(runs, "model.width")})
    frame = frame.merge(values[["run", "value"]], on="run").dropna()
    return _by_key(frame, ["depth", "width"]), diverged


def _by_key(frame: pd.DataFrame, keys: Sequence[str], value: str | Sequence[str] = "value") -> dict[tuple, np.ndarray]:
    """``{key tuple: replicate values}`` (1-D, or 2-D rows of several ``value`` columns)."""
    columns = [value] if isinstance(value, str) else list(value)
    groups = {}
    for key, group in frame.groupby(list(keys), sort=True):
        data = group[columns].to_numpy(dtype=float)
        groups[tuple(float(k) for k in key)] = data[:, 0] if isinstance(value, str) else data
    return groups


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


def _history_points(tables: RunTables, run: str) -> int:
    history = tables.history
    return 0 if history is None or history.empty else int((history["run"] == run).sum())


def _grokked(tables: RunTables, run: str, key: str = "grokking") -> bool | None:
    """The run's grokking flag from events.json, or None (no events, no reading, history too short)."""
    reading = (tables.events.get(run) or {}).get(key)
    if not reading or "grokked" not in reading:
        return None
    return bool(reading["grokked"]) if _history_points(tables, run) >= MIN_HISTORY_POINTS else None


def _bn_lag(tables: RunTables, run: str) -> float:
    """The run's bn_lag_steps (events.json bn_grokking), NaN when there is none."""
    reading = (tables.events.get(run) or {}).get("bn_grokking") or {}
    lag = reading.get("bn_lag_steps")
    return float(lag) if lag is not None and _history_points(tables, run) >= MIN_HISTORY_POINTS else math.nan


def _average_ranks(values: Sequence[float]) -> list[float]:
    """0-based ranks, ties averaged (as scipy's rankdata, minus one)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        stop = start
        while stop + 1 < len(order) and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        for position in range(start, stop + 1):
            ranks[order[position]] = (start + stop) / 2
        start = stop + 1
    return ranks


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (scipy.stats.spearmanr's statistic; NaN for a constant input), in plain Python: the bootstrap
    calls it on a handful of points thousands of times, where scipy's per-call overhead is ~80x the work."""
    rx, ry = _average_ranks([float(v) for v in x]), _average_ranks([float(v) for v in y])
    if len(rx) < 2:
        return math.nan
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return math.nan
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True)) / math.sqrt(sxx * syy)


def _fmt(x: float | None) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _missing(role: str) -> Outcome:
    return Outcome(INCONCLUSIVE, "", f"role '{role}' missing or has no runs")


def _diverged_note(diverged: Sequence[str]) -> str:
    return f" [left out, diverged: {', '.join(diverged)}]" if diverged else ""


# ----------------------------------------------------------------------------------------------------------------
# Intervals and decisions.


def bootstrap(
    groups: Mapping[Any, np.ndarray],
    statistic: Callable[[dict[Any, Any]], float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = INTERVAL_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """``statistic`` of the replicate means of every group, and its percentile bootstrap interval.

    ``groups`` maps a point to its replicates (1-D values, or 2-D rows resampled together); each resample draws every
    point's replicates with replacement. Resamples where the statistic is NaN are left out. With fewer than
    ``MIN_REPLICATES`` replicates at some point the interval is NaN (no spread to estimate).
    """
    groups = {key: np.asarray(values, dtype=float) for key, values in groups.items() if len(values)}
    if not groups:
        return Estimate(math.nan, math.nan, math.nan, 0)
    replicates = min(len(values) for values in groups.values())
    value = float(statistic({key: values.mean(axis=0) for key, values in groups.items()}))
    if replicates < MIN_REPLICATES:
        return Estimate(value, math.nan, math.nan, replicates)
    rng = np.random.default_rng(seed)
    draws = {key: rng.integers(0, len(values), (resamples, len(values))) for key, values in groups.items()}
    samples = np.array(
        [statistic({key: groups[key][draws[key][b]].mean(axis=0) for key in groups}) for b in range(resamples)],
        dtype=float,
    )
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return Estimate(value, math.nan, math.nan, replicates)
    tail = 100 * (1 - level) / 2
    # Bounded basins make some statistics infinite; percentiles interpolate, so compute them on large finite stand-ins.
    low, high = np.percentile(np.clip(samples, -_HUGE, _HUGE), [tail, 100 - tail])
    return Estimate(value, _unclip(low), _unclip(high), replicates)


_HUGE = 1e300


def _unclip(x: float) -> float:
    return math.copysign(math.inf, x) if abs(x) >= _HUGE else float(x)


def _interval_text(estimate: Estimate) -> str:
    if math.isnan(estimate.low):
        return f"{_fmt(estimate.value)} (n={estimate.replicates}, no interval)"
    return f"{_fmt(estimate.value)} [{_fmt(estimate.low)}, {_fmt(estimate.high)}] (n={estimate.replicates})"


def decide(
    name: str, estimate: Estimate, op: str, threshold: float, text: str = "", *, low: Estimate | None = None
) -> Part:
    """A part decided by its interval: ``op`` in ">=", ">", "<=", "<" against ``threshold``.

    Reproduced when the whole interval meets the criterion, not reproduced when the whole interval fails it, else
    inconclusive (also without an interval). ``low`` (optional) is a pessimistic estimate for bounded data: its
    interval decides "reproduced" while ``estimate`` (the optimistic one) decides "not reproduced".
    """
    optimistic, pessimistic = estimate, low or estimate
    label = f"{text}{' ' if text else ''}{_interval_text(optimistic)}"
    if low is not None and (pessimistic.value != optimistic.value or pessimistic.low != optimistic.low):
        label += f", bounded: pessimistic {_interval_text(pessimistic)}"
    if math.isnan(optimistic.value):
        return Part(INCONCLUSIVE, name, f"{text or 'quantity'} not measured", replicates=optimistic.replicates)
    if math.isnan(optimistic.low) or math.isnan(pessimistic.low):
        why = f"{label}: < {MIN_REPLICATES} seeds per point, no interval"
        return Part(INCONCLUSIVE, name, why, optimistic.value, math.nan, math.nan, optimistic.replicates)
    ok = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less}[op]
    # For ">=" / ">" the pessimistic interval's low end must pass; for "<=" / "<" its high end.
    holds = ok(pessimistic.low if op in (">=", ">") else pessimistic.high, threshold)
    fails = not ok(optimistic.high if op in (">=", ">") else optimistic.low, threshold)
    verdict = REPRODUCED if holds else NOT_REPRODUCED if fails else INCONCLUSIVE
    text = f"{label} {op} {_fmt(threshold)}?"
    return Part(verdict, name, text, optimistic.value, optimistic.low, optimistic.high, optimistic.replicates)


def untestable(name: str, why: str) -> Part:
    return Part(INCONCLUSIVE, name, why)


def _combine(parts: Sequence[Part], note: str = "") -> Outcome:
    """Parts -> the claim's outcome: verdict, value, reason and the deciding part's interval."""
    scored = [part for part in parts if part.verdict is not None]
    verdicts = [part.verdict for part in scored]
    verdict = NOT_REPRODUCED if NOT_REPRODUCED in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else REPRODUCED
    deciding = next((part for part in scored if part.verdict == verdict), scored[0] if scored else None)
    reason = "; ".join(f"({part.name}) {part.verdict or 'reported, not scored'}: {part.text}" for part in parts) + note
    value = "; ".join(f"({part.name}) {part.text}" for part in parts)
    if deciding is None:
        return Outcome(verdict, value, reason)
    return Outcome(
        verdict, value, reason, deciding.estimate, deciding.low, deciding.high, deciding.replicates, deciding.name
    )


# ----------------------------------------------------------------------------------------------------------------
# Sweep shapes shared by the claims and the design check.


def _bracketed(depths: Sequence[float], window: tuple[int, int]) -> bool:
    depths = np.asarray(depths, dtype=float)
    low, high = window
    bracket = (depths < low).any() and ((depths >= low) & (depths <= high)).any() and (depths > high).any()
    return bool(len(depths) >= MIN_SWEEP_POINTS and bracket)


def _optimum_widths(keys: Sequence[tuple], window: tuple[int, int]) -> list[float]:
    """Widths whose depth grid can locate an optimum in ``window``."""
    by_width: dict[float, list[float]] = {}
    for depth, width in keys:
        by_width.setdefault(width, []).append(depth)
    return sorted(width for width, depths in by_width.items() if _bracketed(depths, window))


def _trend_depths(keys: Sequence[tuple]) -> list[float]:
    """Depths with enough widths to read a trend over width."""
    counts: dict[float, set] = {}
    for depth, width in keys:
        counts.setdefault(depth, set()).add(width)
    return sorted(depth for depth, widths in counts.items() if len(widths) >= MIN_TREND_POINTS)


def _pivot_widths(keys: Sequence[tuple]) -> list[float]:
    """Widths whose depth grid can test growth up to a pivot near SATURATION_DEPTH and saturation beyond it."""
    by_width: dict[float, list[float]] = {}
    for depth, width in keys:
        by_width.setdefault(width, []).append(depth)
    testable = []
    for width, depths in by_width.items():
        depths = np.sort(np.asarray(depths, dtype=float))
        pivot = depths[np.argmin(np.abs(depths - SATURATION_DEPTH))]
        head = depths <= pivot
        if abs(pivot - SATURATION_DEPTH) <= PIVOT_TOLERANCE and head.sum() >= MIN_TREND_POINTS and not head.all():
            testable.append(width)
    return sorted(testable)


def _optimum_fraction(means: Mapping[tuple, float], pick: Callable, window: tuple[int, int]) -> float:
    widths = _optimum_widths(list(means), window)
    if len(widths) < MIN_WIDTHS:
        return math.nan
    hits = []
    for width in widths:
        curve = sorted((depth, value) for (depth, w), value in means.items() if w == width)
        best = curve[int(pick([value for _, value in curve]))][0]
        hits.append(window[0] <= best <= window[1])
    return float(np.mean(hits))


def _width_trend(means: Mapping[tuple, float]) -> float:
    rhos = []
    for depth in _trend_depths(list(means)):
        curve = sorted((w, value) for (d, w), value in means.items() if d == depth)
        rhos.append(_spearman([w for w, _ in curve], [v for _, v in curve]))
    rhos = [rho for rho in rhos if math.isfinite(rho)]
    return float(np.median(rhos)) if rhos else math.nan


def _saturation_fraction(means: Mapping[tuple, float], sign: int) -> float:
    widths = _pivot_widths(list(means))
    if not widths:
        return math.nan
    hits = []
    for width in widths:
        curve = sorted((d, v) for (d, w), v in means.items() if w == width and v > 0)
        depth = np.array([d for d, _ in curve])
        logs = np.log10([v for _, v in curve])
        if len(depth) < 2:
            return math.nan
        pivot = depth[np.argmin(np.abs(depth - SATURATION_DEPTH))]
        head = depth <= pivot
        if head.sum() < MIN_TREND_POINTS or head.all():
            return math.nan
        rho = _spearman(depth[head], logs[head])
        rise, tail = logs[head][-1] - logs[0], logs[-1] - logs[head][-1]
        hits.append(sign * rho >= MIN_RHO and sign * rise > 0 and abs(tail) <= SATURATION_RATIO * abs(rise))
    return float(np.mean(hits))


# ----------------------------------------------------------------------------------------------------------------
# Claims.


def claim_1(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "depth")
    if tables is None:
        return _missing("depth")
    runs, diverged = _ok_runs(tables)
    runs = runs[(_spec(runs, "model.depth") == PAPER_DEPTH) & (_spec(runs, "model.width") == PAPER_WIDTH)]
    note = _diverged_note(diverged)
    if runs.empty:
        return Outcome(INCONCLUSIVE, "", f"no non-diverged {PAPER_DEPTH}x{PAPER_WIDTH} depth run{note}")
    dataset = _dataset(runs, context)
    n_train = _training_sizes(runs, context).min()
    acc = _final_values(tables, "test_acc").set_index("run")["value"].reindex(runs["run"]).dropna()
    where = f"dataset={dataset}, n_train={n_train:.0f}"
    if not _is_full_mnist(dataset, context) or not n_train >= FULL_N_TRAIN:
        return Outcome(INCONCLUSIVE, f"test_acc over {len(acc)} run(s); {where}", f"needs full MNIST ({FULL_N_TRAIN})")
    estimate = bootstrap({"runs": acc.to_numpy()}, lambda m: m["runs"])
    return _combine([decide("a", estimate, ">=", PAPER_ACC - ACC_TOLERANCE, "test_acc")], note)


def _sweep_claim(
    tables_by_role: Mapping[str, RunTables], metric: str, layer: int | None, pick: Callable, window, sign: int
) -> Outcome:
    tables = _role_tables(tables_by_role, "sweep")
    if tables is None:
        return _missing("sweep")
    grid, diverged = _grid(tables, metric, layer)
    note = _diverged_note(diverged)
    if not grid:
        return Outcome(INCONCLUSIVE, "", f"no final {metric}" + (f" of layer {layer}" if layer else "") + note)
    widths = _optimum_widths(list(grid), window)
    if len(widths) < MIN_WIDTHS:
        a = untestable("a", f"{len(widths)} width(s) with a depth grid around {list(window)} (need {MIN_WIDTHS})")
    else:
        fraction = bootstrap(grid, lambda m: _optimum_fraction(m, pick, window))
        a = decide("a", fraction, ">=", MAJORITY, f"fraction of widths with the optimum in {list(window)}")
    if not _trend_depths(list(grid)):
        b = untestable("b", f"no depth with >= {MIN_TREND_POINTS} widths")
    else:
        trend = bootstrap(grid, _width_trend)
        b = decide("b", trend, ">=" if sign > 0 else "<=", sign * MIN_RHO, "median rho(width)")
    return _combine([a, b], note)


def claim_2(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    return _sweep_claim(tables_by_role, "test_acc", None, np.argmax, BEST_DEPTH_RANGE, +1)


def claim_3(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    return _sweep_claim(tables_by_role, "rpd_gradient", 1, np.argmin, FLATTEST_DEPTH_RANGE, -1)


def claim_4(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "sweep")
    if tables is None:
        return _missing("sweep")
    parts, diverged = [], []
    for name, metric, sign in (("input", "basin_input", +1), ("weight", "basin_weight", -1)):
        grid, diverged = _grid(tables, metric, basin=True)
        grid = {key: values[values > 0] for key, values in grid.items() if (values > 0).any()}
        if not _pivot_widths(list(grid)):
            parts.append(
                untestable(name, f"no width with {MIN_TREND_POINTS} depths up to a pivot near {SATURATION_DEPTH}")
            )
            continue
        fraction = bootstrap(grid, lambda m, sign=sign: _saturation_fraction(m, sign))
        parts.append(decide(name, fraction, ">=", MAJORITY, "fraction of widths that hold"))
    return _combine(parts, _diverged_note(diverged))


def claim_5(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "shallow")
    if tables is None:
        return _missing("shallow")
    runs, diverged = _ok_runs(tables)
    frame = pd.DataFrame(
        {"run": runs["run"], "activation": runs.get("model.activation"), "n": _training_sizes(runs, context)}
    )
    frame = frame[frame["activation"].isin(["tanh", "linear"])].dropna(subset=["n"])
    for column, metric, layer in (("acc", "test_acc", None), ("g", "rpd_gradient", 1)):
        frame = frame.merge(_final_values(tables, metric, layer)[["run", "value"]], on="run", how="left")
        frame = frame.rename(columns={"value": column})
    frame["code"] = (frame["activation"] == "tanh").astype(float)
    note = _diverged_note(diverged)
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
    acc = _by_key(ends.dropna(subset=["acc"]), ["n", "code"], "acc")

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
    g = _by_key(ends.dropna(subset=["g"]), ["n", "code"], "g")
    if len(g) < 4:
        parts += [untestable("b1", "rpd_gradient of layer 1 missing"), untestable("b2", "rpd_gradient missing")]
    else:
        parts.append(
            decide("b1", bootstrap(g, lambda m: abs(rel(m, n_min))), "<=", RPD_MATCH, f"|rel(n={int(n_min)})|")
        )
        parts.append(decide("b2", bootstrap(g, lambda m: rel(m, n_max)), ">=", RPD_STEEPER, f"rel(n={int(n_max)})"))
    return _combine(parts, note)


def _log_bounds(tables: RunTables, run: str, step: int | None, final: bool = False) -> tuple[float, float]:
    """log10 input basin of ``run`` at ``step`` as (low, high): exact (v, v), beyond (v, inf), below (-inf, v)."""
    metrics = tables.metrics
    if final:
        step = _final_steps(tables).get(run)
    if step is None or metrics is None or metrics.empty or pd.isna(step):
        return (math.nan, math.nan)
    rows = _layer_rows(metrics, "basin_input", None)
    rows = rows[(rows["run"] == run) & (rows["step"] == step)]
    if rows.empty:
        return (math.nan, math.nan)
    row = rows.iloc[-1]
    value = pd.to_numeric(row["value"], errors="coerce")
    if pd.notna(value) and value > 0:
        return (math.log10(value), math.log10(value))
    bound = _bounded(value, row.get("bound"), row.get("bound_value"))
    if not bound > 0:
        return (math.nan, math.nan)
    log = math.log10(bound)
    return {"lower": (log, math.inf), "upper": (-math.inf, log)}.get(row.get("bound"), (math.nan, math.nan))


def _bounded_decide(name: str, groups: dict, statistic: Callable, op: str, threshold: float, text: str) -> Part:
    """Decide a part on bounded data: ``groups`` hold (low, high) rows; ``statistic(means, side)`` with side
    "pessimistic" / "optimistic" picks the end of each bound that makes the criterion hardest / easiest to meet."""
    sides = {side: bootstrap(groups, lambda m, side=side: statistic(m, side)) for side in ("pessimistic", "optimistic")}
    if math.isnan(sides["optimistic"].value):
        return untestable(name, f"{text}: no basin value")
    return decide(name, sides["optimistic"], op, threshold, text, low=sides["pessimistic"])


def claim_6(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "grokking")
    if tables is None:
        return _missing("grokking")
    runs, diverged = _ok_runs(tables)
    note = _diverged_note(diverged)
    if runs.empty:
        return Outcome(INCONCLUSIVE, "", "every grokking run diverged" + note)
    readings = {run: (tables.events.get(run) or {}).get("grokking") or {} for run in runs["run"]}
    after = {run: _log_bounds(tables, run, reading.get("after_step")) for run, reading in readings.items()}
    before = {run: _log_bounds(tables, run, reading.get("before_step")) for run, reading in readings.items()}
    known = [bounds for bounds in after.values() if not math.isnan(bounds[0])]
    shown = [b[0] for b in known if math.isfinite(b[0])] or [b[1] for b in known if math.isfinite(b[1])]
    a = Part(
        None,
        "a",
        f"log10 basin(after) = {_fmt(float(np.mean(shown)) if shown else math.nan)} (input units); the paper's "
        f"transition near 1e{PAPER_TRANSITION_LOG10:g} has no stated unit",
    )
    grokked = [run for run in runs["run"] if _grokked(tables, run) is True]
    if not grokked:
        b = untestable("b", "no grokking run grokked: no 'after grokking' to compare")
    else:
        measured = [r for r in grokked if not (math.isnan(after[r][0]) or math.isnan(before[r][0]))]
        rows = np.array([[*after[r], *before[r]] for r in measured])
        if not len(rows):
            b = untestable("b", "no basin_input at the before/after steps")
        else:

            def growth(means, side):
                after_low, after_high, before_low, before_high = means["runs"]
                return after_low - before_high if side == "pessimistic" else after_high - before_low

            b = _bounded_decide("b", {"runs": rows}, growth, ">=", BASIN_GROWTH, "log10 basin(after) - (before)")
    sweep = _role_tables(tables_by_role, "sweep")
    after_rows = np.array([bounds for bounds in after.values() if not math.isnan(bounds[0])])
    if sweep is None or not len(after_rows):
        c = untestable("c", "no sweep role" if sweep is None else "no basin after grokking")
    else:
        deep_runs, _ = _ok_runs(sweep)
        deep_runs = deep_runs[_spec(deep_runs, "model.depth") >= DEEP_MIN_DEPTH]
        deep = np.array([_log_bounds(sweep, r, None, final=True) for r in deep_runs["run"]]).reshape(-1, 2)
        deep = deep[~np.isnan(deep[:, 0])]
        if not len(deep):
            c = untestable("c", f"no final basin_input of a sweep run with depth >= {DEEP_MIN_DEPTH}")
        else:
            # Every deep sweep run is one replicate of "a deep net": the median is taken over them.
            def larger(means, side):
                deep_low, deep_high = means["deep"]
                after_low, after_high = means["after"]
                return deep_low - after_high if side == "pessimistic" else deep_high - after_low

            groups = {"deep": deep, "after": after_rows}
            c = _bounded_decide("c", groups, larger, ">=", DEEP_LARGER, "deep log10 basin - after")
    return _combine([a, b, c], note)


def claim_7(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "depth")
    if tables is None:
        return _missing("depth")
    runs, diverged = _ok_runs(tables)
    note = _diverged_note(diverged)
    lags = pd.Series({run: _bn_lag(tables, run) for run in runs["run"]}, dtype=float)
    shown = ", ".join(f"{run}: {_fmt(lag)}" for run, lag in lags.items()) or "no runs"
    if not (lags > 0).any():
        return Outcome(INCONCLUSIVE, f"bn_lag_steps {shown}", "no depth run shows any lag" + note)
    a = decide("a", bootstrap({"runs": lags.dropna().to_numpy()}, lambda m: m["runs"]), ">", 0.0, "mean BN lag (steps)")
    flags = [_grokked(tables, run, "grokking_bntrain") for run in runs["run"]]
    flags = [float(flag) for flag in flags if flag is not None]
    if not flags:
        b = untestable("b", "no train-mode grokking reading")
    else:
        fraction = bootstrap({"runs": np.array(flags)}, lambda m: m["runs"])
        b = decide("b", fraction, "<", MAJORITY, "fraction of runs grokking in train mode")
    outcome = _combine([a, b], note)
    return outcome._replace(value=f"{outcome.value}; per run: {shown}")


def _lag_trend(frame: pd.DataFrame, axis: str, others: Sequence[str]) -> tuple[dict, list]:
    """Points ``(group..., axis value) -> lags`` of the groups (fixed ``others``) with enough axis values."""
    groups, names = {}, []
    for key, group in frame.dropna(subset=["lag"]).groupby(list(others), dropna=False):
        if group[axis].nunique() >= MIN_TREND_POINTS:
            names.append(key)
            for value, members in group.groupby(axis):
                groups[(*key, value)] = members["lag"].to_numpy(dtype=float)
    return groups, names


def claim_8(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "conditions")
    if tables is None:
        return _missing("conditions")
    runs, diverged = _ok_runs(tables)
    note = _diverged_note(diverged)
    frame = pd.DataFrame(
        {
            "batch": _spec(runs, "train.batch_size"),
            "lr": _spec(runs, "train.lr"),
            "depth": _spec(runs, "model.depth"),
            "lag": [_bn_lag(tables, run) for run in runs["run"]],
        }
    )
    shown = "; ".join(
        f"b{b:g} lr{lr:g}: {_fmt(lag)}" for b, lr, lag in zip(frame["batch"], frame["lr"], frame["lag"], strict=True)
    )
    if not (frame["lag"] > 0).any():
        return Outcome(INCONCLUSIVE, f"bn_lag_steps {shown or 'none'}", "no condition run shows any lag" + note)
    parts = []
    for name, axis, others, sign in (("batch", "batch", ("lr", "depth"), +1), ("lr", "lr", ("batch", "depth"), -1)):
        groups, names = _lag_trend(frame, axis, others)
        if not names:
            parts.append(untestable(name, f"no group with >= {MIN_TREND_POINTS} values of {axis} that have a lag"))
            continue

        def trend(means, names=names):
            rhos = []
            for key in names:
                curve = sorted((point[-1], value) for point, value in means.items() if point[:-1] == key)
                rhos.append(_spearman([x for x, _ in curve], [y for _, y in curve]))
            rhos = [rho for rho in rhos if math.isfinite(rho)]
            return float(np.median(rhos)) if rhos else math.nan

        op = ">=" if sign > 0 else "<="
        parts.append(decide(name, bootstrap(groups, trend), op, sign * MIN_RHO, f"rho({axis}, lag)"))
    outcome = _combine(parts, note)
    return outcome._replace(value=f"{outcome.value}; lags: {shown}")


def claim_9(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "depth")
    if tables is None:
        return _missing("depth")
    runs, diverged = _ok_runs(tables)
    depth = _spec(runs, "model.depth")
    note = _diverged_note(diverged)
    metrics = tables.metrics
    g = metrics[metrics["metric"] == "rpd_gradient"] if metrics is not None and "metric" in metrics.columns else None
    flags: dict[int, list[float]] = {}
    spreads: dict[int, list[float | None]] = {}
    for d in (DD_DEPTH, NO_DD_DEPTH):
        ids = sorted(runs.loc[depth == d, "run"])
        if not ids:
            return Outcome(INCONCLUSIVE, "", f"no non-diverged {d}-layer depth run" + note)
        found = [((tables.events.get(r) or {}).get("double_descent") or {}).get("double_descent") for r in ids]
        flags[d] = [float(flag) for flag in found if flag is not None]
        spreads[d] = []
        for r in ids:
            rows = g[g["run"] == r] if g is not None else pd.DataFrame(columns=["step", "layer", "value"])
            if rows["step"].nunique() >= MIN_TURNING_STEPS:
                spreads[d].append(turning_point_spread(rows)["spread"])
    parts = []
    for name, d, op in (("a1", DD_DEPTH, ">="), ("a2", NO_DD_DEPTH, "<")):
        if not flags[d]:
            parts.append(untestable(name, f"no double-descent reading at depth {d}"))
        else:
            fraction = bootstrap({"seeds": np.array(flags[d])}, lambda m: m["seeds"])
            parts.append(decide(name, fraction, op, MAJORITY, f"fraction of {d}-layer seeds with double descent"))
    turning = {d: [s for s in spreads[d] if s is not None] for d in spreads}
    if not spreads[DD_DEPTH] or not spreads[NO_DD_DEPTH]:
        parts.append(untestable("b", f"< {MIN_TURNING_STEPS} analysed steps"))
    elif 2 * (len(spreads[DD_DEPTH]) - len(turning[DD_DEPTH])) > len(spreads[DD_DEPTH]):
        why = f"G_m turns in fewer than 2 layers in most {DD_DEPTH}-layer seeds: no synchronous turning points"
        parts.append(Part(NOT_REPRODUCED, "b", why))
    elif not turning[NO_DD_DEPTH]:
        parts.append(untestable("b", f"G_m turns in fewer than 2 layers of the {NO_DD_DEPTH}-layer runs"))
    else:
        groups = {DD_DEPTH: np.array(turning[DD_DEPTH]), NO_DD_DEPTH: np.array(turning[NO_DD_DEPTH])}
        difference = bootstrap(groups, lambda m: m[DD_DEPTH] - SPREAD_RATIO * m[NO_DD_DEPTH])
        parts.append(decide("b", difference, "<=", 0.0, f"spread({DD_DEPTH}) - {SPREAD_RATIO} spread({NO_DD_DEPTH})"))
    return _combine(parts, note)


def claim_10(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "sweep")
    if tables is None:
        return _missing("sweep")
    runs, diverged = _ok_runs(tables)
    note = _diverged_note(diverged)
    frame = pd.DataFrame({"run": runs["run"], "depth": _spec(runs, "model.depth"), "width": _spec(runs, "model.width")})
    frame = frame.merge(_final_values(tables, "test_acc")[["run", "value"]], on="run").rename(columns={"value": "acc"})
    frame = frame.merge(_final_values(tables, "rpd_gradient", 1)[["run", "value"]], on="run", how="left")
    frame = frame.rename(columns={"value": "g"}).dropna(subset=["acc", "depth", "width"])
    frame["grokked"] = [_grokked(tables, run) for run in frame["run"]]
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
        groups = _by_key(data, ["depth", "width"], ["acc", "grokked"])

        def best_groks(means):
            best = max(means, key=lambda key: means[key][0])
            return means[best][1]

        a = decide("a", bootstrap(groups, best_groks), "<", MAJORITY, "fraction of the best point's seeds grokking")
    with_g = frame.dropna(subset=["g"])
    if with_g[["depth", "width"]].drop_duplicates().shape[0] < MIN_SWEEP_POINTS:
        b = untestable("b", f"first-layer rpd_gradient of < {MIN_SWEEP_POINTS} points")
    else:
        groups = _by_key(with_g, ["depth", "width"], ["acc", "g"])

        def flatter(means):
            best = max(means, key=lambda key: means[key][0])
            return means[best][1] - float(np.quantile([value[1] for value in means.values()], NPM_QUANTILE))

        b = decide("b", bootstrap(groups, flatter), "<=", 0.0, f"G1(best) - G1 {NPM_QUANTILE} quantile")
    outcome = _combine([a, b], note)
    return outcome._replace(value=f"{value_note}; {outcome.value}")


def _positions(tables: RunTables, run: str) -> tuple[float, float]:
    """(LP position, L-map position) of ``run``: the first start layer within PRUNING_TOLERANCE of the unpruned test
    accuracy, as (l - 1) / D; NaN when the pruning metrics or the accuracy are missing."""
    final = _final_steps(tables).get(run)
    reference = _final_values(tables, "test_acc").set_index("run")["value"].get(run, math.nan)
    metrics = tables.metrics
    if final is None or not math.isfinite(reference) or metrics is None or metrics.empty:
        return (math.nan, math.nan)
    rows = metrics[(metrics["run"] == run) & (metrics["step"] == final)]
    found = []
    for metric in ("lp_acc", "lmap_acc"):
        curve = rows[rows["metric"] == metric].assign(layer=lambda f: pd.to_numeric(f["layer"], errors="coerce"))
        curve = curve.dropna(subset=["layer"]).sort_values("layer")
        if curve.empty:
            return (math.nan, math.nan)
        depth = curve["layer"].max() - 1  # start layers 1..L = D + 1
        hits = curve[pd.to_numeric(curve["value"], errors="coerce") >= reference - PRUNING_TOLERANCE]
        found.append((hits["layer"].iloc[0] - 1) / depth if len(hits) and depth > 0 else math.nan)
    return tuple(found)


def claim_11(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "depth")
    if tables is None:
        return _missing("depth")
    runs, diverged = _ok_runs(tables)
    note = _diverged_note(diverged)
    positions = np.array([_positions(tables, run) for run in runs["run"]]).reshape(-1, 2)
    positions = positions[~np.isnan(positions).any(axis=1)]
    if not len(positions):
        return Outcome(INCONCLUSIVE, "", "no depth run with lp_acc, lmap_acc and test_acc at its final step" + note)
    groups = {"runs": positions}
    a = decide("a", bootstrap(groups, lambda m: m["runs"][0]), "<=", LP_EARLY, "LP position")
    b = decide("b", bootstrap(groups, lambda m: m["runs"][1]), ">=", LMAP_LATE, "L-map position")
    return _combine([a, b], note)


def claim_12(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = _role_tables(tables_by_role, "shallow")
    if tables is None:
        return _missing("shallow")
    runs, diverged = _ok_runs(tables)
    note = _diverged_note(diverged)
    runs = runs[runs.get("model.activation", pd.Series(index=runs.index, dtype=object)) == "tanh"]
    sizes = _training_sizes(runs, context)
    if runs.empty or sizes.isna().all():
        return Outcome(INCONCLUSIVE, "", "no tanh run of known training size" + note)
    largest = runs[sizes == sizes.max()]
    metrics = tables.metrics
    rows = []
    for run in largest["run"]:
        curve = _layer_rows(metrics, "rpd_gradient", 1) if metrics is not None and not metrics.empty else None
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
    return _combine([a, b], note)


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
    11: claim_11,
    12: claim_12,
}


# ----------------------------------------------------------------------------------------------------------------
# Scale and design.


def _model_sizes(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    return _spec(runs, "model.depth"), _spec(runs, "model.width")


def _paper_data(runs: pd.DataFrame, context: Mapping[str, Any], n_train: int = FULL_N_TRAIN) -> bool:
    return _is_full_mnist(_dataset(runs, context), context) and _full_training_sets(runs, context, n_train)


def _full_training_sets(runs: pd.DataFrame, context: Mapping[str, Any], n_train: int = FULL_N_TRAIN) -> bool:
    return bool((_training_sizes(runs, context) >= n_train).all())


def _optimizer(runs: pd.DataFrame, name: str) -> bool:
    return "train.optimizer" in runs.columns and bool((runs["train.optimizer"] == name).all())


def scale(claim: int, runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str:
    """``paper`` when the runs behind ``claim`` use the paper's data, model and training-set sizes and optimizer;
    ``paper-size`` when only the data differ; else ``reduced``."""
    role = CLAIMS[claim].roles[0]
    runs = runs_by_role.get(role)
    if runs is None or runs.empty:
        return REDUCED
    depth, width = _model_sizes(runs)
    if claim == 6:
        sources = {_dataset(runs, context), _single_source(context)}
        omnigrok = bool(((depth == GROKKING_DEPTH) & (width == GROKKING_WIDTH)).all())
        subset = bool((_spec(runs, "train.n_train") == GROKKING_N_TRAIN).all())
        sizes = omnigrok and subset and _optimizer(runs, "adamw")
        mnist = bool(sources & set(FULL_DATASETS))
    elif claim in (5, 12):
        n = _training_sizes(runs, context)
        sizes = bool((width == PAPER_SHALLOW_WIDTH).all()) and n.max() >= FULL_N_TRAIN and _optimizer(runs, "adam")
        sizes &= claim == 12 or n.min() <= 600
        mnist = _is_full_mnist(_dataset(runs, context), context)
    else:
        sizes = _full_training_sets(runs, context) and _optimizer(runs, "adam")
        if claim in (2, 3, 4, 10):
            sizes &= bool((width >= PAPER_MIN_WIDTH).all()) and width.max() >= PAPER_WIDE
        else:  # the deep 1024-wide nets of Figs. 3, 7, 8, 9
            sizes &= bool((width == PAPER_WIDTH).all()) and (depth == PAPER_DEPTH).any()
            if claim == 9:
                sizes &= (depth == DD_DEPTH).any()
        mnist = _is_full_mnist(_dataset(runs, context), context)
    return (PAPER if mnist else PAPER_SIZE) if sizes else REDUCED


def _replicates(runs: pd.DataFrame, keys: Sequence[str]) -> int:
    """The fewest runs that share a point (equal ``keys`` columns) in ``runs``."""
    if runs.empty:
        return 0
    return int(runs.groupby([runs[k].astype(str) for k in keys]).size().min()) if keys else len(runs)


def design_check(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> dict[int, str | None]:
    """Before anything runs: for each claim, None when the runs (spec columns, as ``RunTables.runs``) can settle it
    by the scorecard's own requirements, else why not. Results can still leave a claim inconclusive (a run that
    does not grok, an interval that straddles the criterion)."""
    out: dict[int, str | None] = {}

    def need(role: str) -> pd.DataFrame | None:
        runs = runs_by_role.get(role)
        return None if runs is None or runs.empty else runs

    depth_runs, sweep, shallow = need("depth"), need("sweep"), need("shallow")
    grokking, conditions = need("grokking"), need("conditions")
    seeds = f"< {MIN_REPLICATES} seeds per point"

    if depth_runs is None:
        out[1] = out[7] = out[9] = out[11] = "no depth role"
    else:
        depth, width = _model_sizes(depth_runs)
        paper = depth_runs[(depth == PAPER_DEPTH) & (width == PAPER_WIDTH)]
        if paper.empty:
            out[1] = f"no {PAPER_DEPTH}x{PAPER_WIDTH} run"
        elif not _paper_data(paper, context):
            out[1] = "not full MNIST"
        else:
            out[1] = seeds if len(paper) < MIN_REPLICATES else None
        out[7] = out[11] = None if len(depth_runs) >= MIN_REPLICATES else f"< {MIN_REPLICATES} depth runs"
        present = {d: (depth == d).sum() for d in (DD_DEPTH, NO_DD_DEPTH)}
        if not all(present.values()):
            out[9] = f"no {DD_DEPTH}- and {NO_DD_DEPTH}-layer runs"
        else:
            out[9] = seeds if min(present.values()) < MIN_REPLICATES else None
    if sweep is None:
        out[2] = out[3] = out[4] = out[10] = "no sweep role"
    else:
        keys = list(zip(*_model_sizes(sweep), strict=True))
        reps = _replicates(sweep, ["model.depth", "model.width"])
        for claim, window in ((2, BEST_DEPTH_RANGE), (3, FLATTEST_DEPTH_RANGE)):
            if len(_optimum_widths(keys, window)) < MIN_WIDTHS:
                out[claim] = f"< {MIN_WIDTHS} widths with a depth grid around {list(window)}"
            elif not _trend_depths(keys):
                out[claim] = f"no depth with >= {MIN_TREND_POINTS} widths"
            else:
                out[claim] = seeds if reps < MIN_REPLICATES else None
        if not _pivot_widths(keys):
            out[4] = f"no width with {MIN_TREND_POINTS} depths up to a pivot near {SATURATION_DEPTH} and one beyond"
        else:
            out[4] = seeds if reps < MIN_REPLICATES else None
        out[10] = None if len(set(keys)) >= MIN_SWEEP_POINTS and reps >= MIN_REPLICATES else seeds
    if shallow is None:
        out[5] = out[12] = "no shallow role"
    else:
        sizes = _training_sizes(shallow, context)
        both = [
            n for n in sizes.dropna().unique() if set(shallow.loc[sizes == n, "model.activation"]) >= {"tanh", "linear"}
        ]
        reps = _replicates(shallow.assign(_n=sizes), ["_n", "model.activation"])
        if len(both) < MIN_SWEEP_POINTS or min(both) > SMALL_N_MAX or max(both) < LARGE_N_MIN:
            out[5] = f"sizes {sorted(int(n) for n in both)} do not span {SMALL_N_MAX}..{LARGE_N_MIN}"
        else:
            out[5] = seeds if reps < MIN_REPLICATES else None
        tanh = shallow[shallow["model.activation"] == "tanh"]
        largest = tanh[_training_sizes(tanh, context) == sizes.max()] if len(tanh) else tanh
        out[12] = None if len(largest) >= MIN_REPLICATES else "no tanh run at the largest n" if largest.empty else seeds
    if grokking is None:
        out[6] = "no grokking role"
    else:
        out[6] = (
            None
            if len(grokking) >= MIN_REPLICATES and sweep is not None
            else seeds
            if sweep is not None
            else ("no sweep role")
        )
    if conditions is None:
        out[8] = "no conditions role"
    else:
        frame = pd.DataFrame(
            {
                "batch": _spec(conditions, "train.batch_size"),
                "lr": _spec(conditions, "train.lr"),
                "depth": _spec(conditions, "model.depth"),
            }
        )
        reasons = []
        for axis, others in (("batch", ["lr", "depth"]), ("lr", ["batch", "depth"])):
            groups = [g for _, g in frame.groupby(others, dropna=False) if g[axis].nunique() >= MIN_TREND_POINTS]
            if not groups:
                reasons.append(f"no group with >= {MIN_TREND_POINTS} values of {axis}")
            elif min(g.groupby(axis).size().min() for g in groups) < MIN_REPLICATES:
                reasons.append(f"{axis}: {seeds}")
        out[8] = "; ".join(reasons) or None
    return dict(sorted(out.items()))


def design_runs(config: Mapping[str, Any], runs: Mapping[str, Mapping[str, Any]]) -> dict[str, pd.DataFrame]:
    """``{role: runs table}`` of a config's runs as the scorecard will see them (spec columns, status completed), each
    run in the first role a figure gives it (as the workflow's claims rule does)."""
    from netdyn.config import figure_roles
    from netdyn.tables import flatten

    role_of: dict[str, str] = {}
    for figure in config.get("figures", {}):
        for role, experiments in figure_roles(config, figure).items():
            for run, spec in runs.items():
                if spec["experiment"] in experiments:
                    role_of.setdefault(run, role)
    rows: dict[str, list[dict]] = {}
    for run, role in role_of.items():
        spec = {key: runs[run][key] for key in ("dataset", "model", "train")}
        rows.setdefault(role, []).append({"run": run, "role": role, "status": "completed", **flatten(spec)})
    return {role: pd.DataFrame(found) for role, found in rows.items()}


def evaluate(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per claim: claim, title, quantity, criterion, scale, verdict, estimate, interval_low, interval_high,
    replicates, decided_by, value, reason."""
    context = dict(context or {})
    rows = []
    for number, claim in CLAIMS.items():
        outcome = CHECKS[number](tables_by_role, context)
        runs = {}
        for role in claim.roles:
            tables = _role_tables(tables_by_role, role)
            if tables is not None:
                runs[role] = _ok_runs(tables)[0]
        rows.append(
            {
                "claim": number,
                "title": claim.title,
                "quantity": claim.quantity,
                "criterion": claim.criterion,
                "scale": scale(number, runs, context),
                "verdict": outcome.verdict,
                "estimate": outcome.estimate,
                "interval_low": outcome.low,
                "interval_high": outcome.high,
                "replicates": outcome.replicates,
                "decided_by": outcome.decided_by,
                "value": outcome.value,
                "reason": outcome.reason,
            }
        )
    return pd.DataFrame(rows, columns=SCORECARD_COLUMNS)


SCORECARD_COLUMNS = [
    "claim",
    "title",
    "quantity",
    "criterion",
    "scale",
    "verdict",
    "estimate",
    "interval_low",
    "interval_high",
    "replicates",
    "decided_by",
    "value",
    "reason",
]
