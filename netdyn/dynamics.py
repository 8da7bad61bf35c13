"""Events in a training history: grokking onset, before/after checkpoints, double descent, divergence (§10, §11).

A history is a table with one row per logged step (columns step, train_acc, test_acc, test_loss, …; netdyn's
``history.csv``). Rows are sorted by step, a repeated step keeps its last row, and rows whose used columns are not
finite are ignored. Every threshold below is a keyword argument; the defaults are the proposed rules.

Grokking (methods.md §10, U16; §11.1). With ``chance`` (default 1/C) and the final (last logged) accuracies:

* ``t_g`` = first logged step with test acc ≥ ½(chance + final test acc) — the onset (§10).
* ``t_train`` = first logged step with train acc ≥ ½(chance + final train acc): the same half-way mark of training.
* ``grokked`` needs all three of
  ``delayed``: ``t_g ≥ delay_factor · max(t_train, 1)`` (generalization lags memorization; default factor 2),
  ``generalized``: final test acc ≥ chance + ``min_final_gain`` · (1 − chance) (default 0.5, i.e. 0.55 for 10
  classes), and ``memorized_first``: train acc reached ``train_high`` (default 0.9) at or before ``t_g``.
  This also accepts Omnigrok-style grokking where test accuracy leaves chance early but keeps climbing long after
  train accuracy saturates; the half-way marks make the rule insensitive to the early rise.
* ``before_step`` (§10): the last logged step ≤ t_g with test acc ≤ chance + ``margin`` (5 points) while train acc
  ≥ ``train_high``, if one exists; otherwise the logged step nearest t_g/4 (the earlier on a tie).
  ``after_step``: the first logged step ≥ 2·t_g that lies after ``before_step``; otherwise the final step.
  Without an onset (test acc never reaches the mark) they are the first and the final step. They are reported for
  every run, grokked or not, because the non-grokking runs of Fig. 8 show projections before/after too.

Double descent (§11.1, §11.4) of the test loss ``L(t)`` with running minimum ``m(t) = min_{s≤t} L(s)``: the
relative rise at t is ``L(t)/m(t) − 1``. A step p is a bump peak when its rise ≥ ``min_rise`` (default 0.05), its
absolute rise ``L(p) − m(p)`` ≥ ``min_abs_rise`` (default 0), and later the loss falls back to at most
``max(m(p), L(p)·(1 − min_fall))`` (the pre-peak minimum, or ``min_fall`` relative below the peak; default
``min_fall = min_rise``). A rise that never comes down (late overfitting) is not double descent. Among bump peaks
the largest relative rise wins; ``dip_step`` is the (first) minimum before it and ``recovery_step`` the first step
after it that meets the fall rule. Noise smaller than ``min_rise`` relative cannot trigger it.

Turning points (§11.4): ``t*_m = argmax_t G_m(t)`` per layer (the earliest on a tie, NaN values ignored) and the
spread = population std of ``log10(t*_m + offset)`` across layers; ``offset`` = 1 by default because step 0 is a
logged checkpoint and has no logarithm.

Every dict returned holds plain Python values (NaN becomes None), ready for ``json.dumps``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

LOSS_COLUMNS = ("train_loss", "test_loss", "weight_norm")


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _step(value: Any) -> int | None:
    return None if value is None else int(value)


def _clean(history: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by step, one per step (the last), with finite values in ``columns``; empty if a column is absent."""
    if any(column not in history.columns for column in ("step", *columns)):
        return pd.DataFrame(columns=["step", *columns])
    frame = history.sort_values("step", kind="stable").drop_duplicates("step", keep="last")
    values = frame[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return frame[np.isfinite(values).all(axis=1)].reset_index(drop=True)


def _first_at_least(steps: np.ndarray, values: np.ndarray, threshold: float) -> int | None:
    hits = np.flatnonzero(values >= threshold)
    return int(steps[hits[0]]) if hits.size else None


def grokking(
    history: pd.DataFrame,
    *,
    chance: float = 0.1,
    train_high: float = 0.9,
    margin: float = 0.05,
    delay_factor: float = 2.0,
    min_final_gain: float = 0.5,
    test_column: str = "test_acc",
    train_column: str = "train_acc",
) -> dict[str, Any]:
    """Grokking onset, flag and before/after checkpoints of one history (rules in the module docstring).

    Keys: grokked, onset_step (t_g when grokked, else None), t_g, t_train, delay_ratio, test_threshold,
    train_threshold, final_test_acc, final_train_acc, train_high_step, delayed, generalized, memorized_first,
    before_step, before_rule ("chance", "t_g/4" or "no_onset"), after_step. ``test_column`` may be
    ``test_acc_bntrain`` to analyse the train-mode-BN test accuracy (§11.2).
    """
    frame = _clean(history, (test_column, train_column))
    result: dict[str, Any] = {
        "grokked": False,
        "onset_step": None,
        "t_g": None,
        "t_train": None,
        "delay_ratio": None,
        "test_threshold": None,
        "train_threshold": None,
        "final_test_acc": None,
        "final_train_acc": None,
        "train_high_step": None,
        "delayed": False,
        "generalized": False,
        "memorized_first": False,
        "before_step": None,
        "before_rule": None,
        "after_step": None,
    }
    if frame.empty:
        return result
    steps = frame["step"].to_numpy(dtype=np.int64)
    test = frame[test_column].to_numpy(dtype=float)
    train = frame[train_column].to_numpy(dtype=float)
    final_test, final_train = test[-1], train[-1]
    test_threshold = 0.5 * (chance + final_test)
    train_threshold = 0.5 * (chance + final_train)
    t_g = _first_at_least(steps, test, test_threshold)
    t_train = _first_at_least(steps, train, train_threshold)
    train_high_step = _first_at_least(steps, train, train_high)

    delay_ratio = t_g / max(t_train, 1) if t_g is not None and t_train is not None else None
    delayed = delay_ratio is not None and delay_ratio >= delay_factor
    generalized = bool(final_test >= chance + min_final_gain * (1.0 - chance))
    memorized_first = t_g is not None and train_high_step is not None and train_high_step <= t_g
    grokked = bool(delayed and generalized and memorized_first)

    if t_g is None:
        before, before_rule, after = int(steps[0]), "no_onset", int(steps[-1])
    else:
        waiting = (steps <= t_g) & (test <= chance + margin) & (train >= train_high)
        if waiting.any():
            before, before_rule = int(steps[np.flatnonzero(waiting)[-1]]), "chance"
        else:
            # argmin returns the first minimum, i.e. the earlier step when two are equally near t_g/4.
            before, before_rule = int(steps[np.argmin(np.abs(steps - t_g / 4))]), "t_g/4"
        later = steps[(steps >= 2 * t_g) & (steps > before)]
        after = int(later[0]) if later.size else int(steps[-1])

    result.update(
        grokked=grokked,
        onset_step=t_g if grokked else None,
        t_g=t_g,
        t_train=t_train,
        delay_ratio=_num(delay_ratio),
        test_threshold=_num(test_threshold),
        train_threshold=_num(train_threshold),
        final_test_acc=_num(final_test),
        final_train_acc=_num(final_train),
        train_high_step=train_high_step,
        delayed=bool(delayed),
        generalized=generalized,
        memorized_first=bool(memorized_first),
        before_step=before,
        before_rule=before_rule,
        after_step=after,
    )
    return result


def double_descent(
    history: pd.DataFrame,
    *,
    min_rise: float = 0.05,
    min_fall: float | None = None,
    min_abs_rise: float = 0.0,
    column: str = "test_loss",
) -> dict[str, Any]:
    """Whether ``column`` has a bump (rise above its running minimum, then a fall); rules in the module docstring.

    Keys: double_descent, peak_step, peak_loss, dip_step, dip_loss, rise (relative, at the peak), recovery_step,
    max_rise (largest relative rise anywhere, recovered or not; a diagnostic).
    """
    min_fall = min_rise if min_fall is None else min_fall
    frame = _clean(history, (column,))
    result: dict[str, Any] = {
        "double_descent": False,
        "peak_step": None,
        "peak_loss": None,
        "dip_step": None,
        "dip_loss": None,
        "rise": None,
        "recovery_step": None,
        "max_rise": None,
    }
    if frame.empty:
        return result
    steps = frame["step"].to_numpy(dtype=np.int64)
    loss = frame[column].to_numpy(dtype=float)
    running_min = np.minimum.accumulate(loss)
    # Losses are >= 0; a zero running minimum would make any rise infinite, so divide by a tiny floor instead.
    rise = (loss - running_min) / np.maximum(np.abs(running_min), 1e-300)
    result["max_rise"] = _num(rise.max())
    # later_min[i] = min of loss after i (inf at the end): has the curve come back down after a candidate peak?
    later_min = np.append(np.minimum.accumulate(loss[::-1])[::-1][1:], np.inf)
    bound = np.maximum(running_min, loss * (1.0 - min_fall))
    candidates = (rise >= min_rise) & (loss - running_min >= min_abs_rise) & (later_min <= bound)
    if not candidates.any():
        return result
    # Largest relative rise among the peaks that recover; argmax takes the earliest on a tie.
    peak = int(np.flatnonzero(candidates)[np.argmax(rise[candidates])])
    dip = int(np.argmin(loss[: peak + 1]))
    recovery = peak + 1 + int(np.flatnonzero(loss[peak + 1 :] <= bound[peak])[0])
    result.update(
        double_descent=True,
        peak_step=int(steps[peak]),
        peak_loss=_num(loss[peak]),
        dip_step=int(steps[dip]),
        dip_loss=_num(loss[dip]),
        rise=_num(rise[peak]),
        recovery_step=int(steps[recovery]),
    )
    return result


def _first_nonfinite_step(history: pd.DataFrame) -> int | None:
    columns = [column for column in LOSS_COLUMNS if column in history.columns]
    if not columns or "step" not in history.columns or history.empty:
        return None
    frame = history.sort_values("step", kind="stable")
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    return int(frame["step"].iloc[bad[0]]) if bad.size else None


def diverged(source: pd.DataFrame | Mapping[str, Any]) -> bool:
    """True when a run record (``run.json``: status "diverged" or a ``diverged_at``) or a history (a non-finite
    train/test loss or weight norm) shows divergence. netdyn's trainer drops non-finite rows from history.csv, so
    prefer the run record where there is one."""
    if isinstance(source, Mapping):
        return source.get("status") == "diverged" or source.get("diverged_at") is not None
    return _first_nonfinite_step(source) is not None


def events(
    history: pd.DataFrame,
    run_info: Mapping[str, Any] | None = None,
    chance: float | None = None,
    *,
    n_classes: int = 10,
    grokking_options: Mapping[str, Any] | None = None,
    double_descent_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Content of ``events.json`` for one run.

    ``{"run", "status": "ok"|"diverged", "diverged_at", "chance", "grokking", "grokking_bntrain",
    "double_descent"}``. ``chance`` defaults to 1/n_classes. A diverged run (by its run record or its history) is
    not analysed: the three event fields are None. ``grokking_bntrain`` runs the grokking rule on
    ``test_acc_bntrain`` (§11.2) and is None when that column is absent or has no finite value.
    """
    run_info = dict(run_info or {})
    chance = 1.0 / n_classes if chance is None else float(chance)
    history_diverged_at = _first_nonfinite_step(history)
    is_diverged = diverged(run_info) or history_diverged_at is not None
    diverged_at = run_info.get("diverged_at")
    if diverged_at is None:
        diverged_at = history_diverged_at
    result: dict[str, Any] = {
        "run": run_info.get("run"),
        "status": "diverged" if is_diverged else "ok",
        "diverged_at": _step(diverged_at),
        "chance": chance,
        "grokking": None,
        "grokking_bntrain": None,
        "double_descent": None,
    }
    if is_diverged:
        return result
    options = {"chance": chance, **dict(grokking_options or {})}
    result["grokking"] = grokking(history, **options)
    if (
        "test_acc_bntrain" in history.columns
        and np.isfinite(pd.to_numeric(history["test_acc_bntrain"], errors="coerce")).any()
    ):
        result["grokking_bntrain"] = grokking(history, **{**options, "test_column": "test_acc_bntrain"})
    result["double_descent"] = double_descent(history, **dict(double_descent_options or {}))
    return result


def turning_point_spread(
    g_by_layer: pd.DataFrame, *, value: str = "value", offset: float = 1.0, ddof: int = 0
) -> dict[str, Any]:
    """Turning points ``t*_m = argmax_t G_m(t)`` per layer and their spread in log10 steps (§11.4).

    ``g_by_layer`` has columns step, layer and ``value``. Keys: turning_steps {layer: step}, log_steps
    {layer: log10(step + offset)}, spread (std with ``ddof`` across layers; None with fewer than two layers),
    n_layers.
    """
    frame = g_by_layer[["step", "layer", value]].copy()
    frame[value] = pd.to_numeric(frame[value], errors="coerce")
    frame = frame[np.isfinite(frame[value].to_numpy(dtype=float))].sort_values(["layer", "step"], kind="stable")
    frame = frame.reset_index(drop=True)
    # idxmax returns the first maximum; rows are sorted by step, so that is the earliest turning point.
    peaks = frame.loc[frame.groupby("layer")[value].idxmax()]
    turning = {int(layer): int(step) for layer, step in zip(peaks["layer"], peaks["step"], strict=True)}
    logs = {layer: float(np.log10(step + offset)) for layer, step in turning.items()}
    spread = float(np.std(list(logs.values()), ddof=ddof)) if len(logs) >= 2 else None
    return {"turning_steps": turning, "log_steps": logs, "spread": spread, "n_layers": len(turning)}
