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
* ``before_step`` (§10, sharpened): the last logged step before t_g whose train acc is ≥ ``memorized``
  (default 0.99) while its test acc is still below the onset threshold, if one exists ("memorized"); otherwise the
  logged step nearest t_g/4 (the earlier on a tie; "t_g/4"). ``after_step``: the first logged step ≥ 2·t_g that
  lies after ``before_step``; otherwise the final step. Without an onset (test acc never reaches the mark) they are
  the first and the final step ("no_onset"). They are reported for every run, grokked or not, because the
  non-grokking runs of Fig. 8 show projections before/after too.

BatchNorm grokking (§11.1, §11.2). In a deep BN net the eval-mode test accuracy can sit at chance while the
network already fits its training batches: the running statistics lag the weights. The train-mode readings of
history.csv (``train_acc_bntrain``, ``test_acc_bntrain``) show what the batches reach. With the onset of a column =
the first logged step at its half-way mark ½(chance + final value), for a column that rises (final ≥ chance +
``min_final_gain``·(1 − chance)):

* ``bn_lag_steps`` = onset(``test_acc``) − onset(``test_acc_bntrain``): how many steps the eval-mode test accuracy
  lags the train-mode one (0 for simultaneous rises; None when either column has no onset).
* ``bn_grokked`` needs the eval-mode test accuracy within ``margin`` (5 points) of chance for at least
  ``min_waiting`` (default 3) logged steps before its onset while the train-mode train accuracy is already past its
  own half-way mark, and then to rise (it has an onset and ends ≥ chance + ``min_final_gain``·(1 − chance)).

``grokking_bntrain`` is the grokking rule above on the train-mode pair (``test_acc_bntrain`` against
``train_acc_bntrain``; against the eval-mode ``train_acc`` only for histories without that column).

Double descent (§11.1, §11.4) of the test loss ``L(t)``: a rise well above the curve's earlier minimum that falls
back to that minimum. The curve's own noise decides what "well above" means. Losses fluctuate in proportion to their
level (a loss of 2.3 early in training jitters more than one of 0.1 late), so the rule works on ``log L``:

* ``S`` = running median of ``log L`` over ``window`` (default 5) logged points, centred and shrinking at the ends:
  it follows any feature spanning a few checkpoints (a bump must span at least ⌈window/2⌉ of them) and removes
  single-point noise.
* noise ``σ`` = 1.4826 · median |Δ² log L − median Δ² log L| / √6, with Δ² the second difference between
  neighbouring checkpoints: a robust standard deviation of the relative noise, estimated from the curve itself (for
  independent noise Δ² has variance 6 σ², and a smooth trend contributes little to it).
* A peak p has dip d = argmin S[..p] and rise S(p) − S(d). It is a bump when the rise is ≥ ``noise_z`` · σ (default
  3) and the relative rise exp(rise) − 1 is ≥ ``min_rise`` (default 0.05, so a noiseless curve's tiny wiggles do
  not count), and when later S falls back to ≤ S(d) + ``recovery_z`` · σ (default 1: back to the earlier minimum,
  within the noise).
* A late, slowly overfitting loss rises beyond the noise but never comes back: not double descent. Noise alone lifts
  the median-smoothed curve 3 σ above its minimum (about 6 of its own standard deviations) and back very rarely.
  Measured on constructed curves of 60 log-spaced checkpoints (tests/test_events.py): 0 of 300 slowly
  overfitting and 0 of 300 noisy-plateau curves flagged at 3-6 % noise, while a +30 % bump spanning ~5
  checkpoints is found in 100 % (3 % noise), 99.7 % (4 %) and 78 % (6 %) of draws.

Among bumps the largest rise wins; ``dip_step`` is its minimum, ``recovery_step`` the first step after the peak that
meets the recovery rule. ``rise`` is relative (exp(S(p) − S(d)) − 1), ``rise_noise`` the rise in units of σ,
``peak_loss`` and ``dip_loss`` the smoothed losses there.

Turning points (§11.4): ``t*_m = argmax_t G_m(t)`` per layer (the earliest on a tie, NaN values ignored). A maximum
at the first or the last analysed step is no turning point (a curve rising to the end has not turned): such layers
are listed in ``no_turning`` and left out. The spread = population std of ``log10(t*_m + offset)`` across the layers
that turn; ``offset`` = 1 by default because step 0 is a logged checkpoint and has no logarithm.

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
    memorized: float = 0.99,
    delay_factor: float = 2.0,
    min_final_gain: float = 0.5,
    test_column: str = "test_acc",
    train_column: str = "train_acc",
) -> dict[str, Any]:
    """Grokking onset, flag and before/after checkpoints of one history (rules in the module docstring).

    Keys: grokked, onset_step (t_g when grokked, else None), t_g, t_train, delay_ratio, test_threshold,
    train_threshold, final_test_acc, final_train_acc, train_high_step, delayed, generalized, memorized_first,
    before_step, before_rule ("memorized", "t_g/4" or "no_onset"), after_step. ``test_column`` and
    ``train_column`` may be the train-mode-BN pair ``test_acc_bntrain``, ``train_acc_bntrain`` (§11.2).
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
        waiting = (steps < t_g) & (test < test_threshold) & (train >= memorized)
        if waiting.any():
            before, before_rule = int(steps[np.flatnonzero(waiting)[-1]]), "memorized"
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


def onset_step(steps: np.ndarray, values: np.ndarray, chance: float, min_gain: float) -> int | None:
    """First step at the half-way mark ½(chance + final value) of a column that rises by ``min_gain`` above
    chance; None when it does not rise that far."""
    if len(values) == 0 or values[-1] < chance + min_gain:
        return None
    return _first_at_least(steps, values, 0.5 * (chance + values[-1]))


def bn_grokking(
    history: pd.DataFrame,
    *,
    chance: float = 0.1,
    margin: float = 0.05,
    min_waiting: int = 3,
    min_final_gain: float = 0.5,
) -> dict[str, Any] | None:
    """BatchNorm grokking and the eval-mode lag (rules in the module docstring); None without the train-mode
    columns (a model without BatchNorm).

    Keys: bn_grokked, bn_lag_steps, eval_onset_step, bntrain_onset_step, waiting_steps (how many logged steps the
    eval-mode test accuracy waited at chance while the train-mode train accuracy was past its half-way mark),
    first_waiting_step, last_waiting_step, generalized, and the checkpoints of Fig. 7's projections: before_step
    (the last logged step before the eval-mode onset with the eval-mode test accuracy within ``margin`` of chance;
    None when it never waited there) and after_step (the first logged step >= 2 x that onset after it; None without
    a before_step).
    """
    columns = ("test_acc", "test_acc_bntrain", "train_acc_bntrain")
    frame = _clean(history, columns)
    if frame.empty:
        return None
    steps = frame["step"].to_numpy(dtype=np.int64)
    test, bn_test, bn_train = (frame[column].to_numpy(dtype=float) for column in columns)
    gain = min_final_gain * (1.0 - chance)
    eval_onset = onset_step(steps, test, chance, gain)
    bntrain_onset = onset_step(steps, bn_test, chance, gain)
    lag = eval_onset - bntrain_onset if eval_onset is not None and bntrain_onset is not None else None
    fitted = bn_train >= 0.5 * (chance + bn_train[-1])
    before_onset = steps < eval_onset if eval_onset is not None else np.zeros(len(steps), dtype=bool)
    at_chance = before_onset & (test <= chance + margin)
    waiting = at_chance & fitted
    generalized = bool(test[-1] >= chance + gain)
    before = int(steps[at_chance][-1]) if at_chance.any() else None
    after = checkpoint_after(steps, eval_onset, before) if before is not None else None
    return {
        "bn_grokked": bool(waiting.sum() >= min_waiting and generalized),
        "bn_lag_steps": lag,
        "eval_onset_step": eval_onset,
        "bntrain_onset_step": bntrain_onset,
        "waiting_steps": int(waiting.sum()),
        "first_waiting_step": int(steps[waiting][0]) if waiting.any() else None,
        "last_waiting_step": int(steps[waiting][-1]) if waiting.any() else None,
        "generalized": generalized,
        "before_step": before,
        "after_step": after,
    }


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median of each point's neighbourhood of ``window`` points (centred, shrinking at the ends)."""
    half = window // 2
    return np.array([np.median(values[max(0, i - half) : i + half + 1]) for i in range(len(values))])


def noise_level(values: np.ndarray) -> float:
    """Robust standard deviation of independent noise on a smooth curve, from its second differences (0 with fewer
    than three points)."""
    if len(values) < 3:
        return 0.0
    second = np.diff(values, n=2)
    return 1.4826 * float(np.median(np.abs(second - np.median(second)))) / math.sqrt(6.0)


def double_descent(
    history: pd.DataFrame,
    *,
    window: int = 5,
    noise_z: float = 3.0,
    min_rise: float = 0.05,
    recovery_z: float = 1.0,
    column: str = "test_loss",
) -> dict[str, Any]:
    """Whether ``column`` has a bump that rises beyond its noise above an earlier minimum and falls back to it
    (rules in the module docstring).

    Keys: double_descent, peak_step, peak_loss, dip_step, dip_loss (smoothed losses), rise (relative), rise_noise
    (the rise in units of the noise), recovery_step, noise (σ of log L), max_rise (largest relative rise of the
    smoothed curve above its running minimum, recovered or not; a diagnostic).
    """
    frame = _clean(history, (column,))
    result: dict[str, Any] = {
        "double_descent": False,
        "peak_step": None,
        "peak_loss": None,
        "dip_step": None,
        "dip_loss": None,
        "rise": None,
        "rise_noise": None,
        "recovery_step": None,
        "noise": None,
        "max_rise": None,
    }
    if frame.empty:
        return result
    steps = frame["step"].to_numpy(dtype=np.int64)
    log_loss = np.log(np.maximum(frame[column].to_numpy(dtype=float), 1e-300))
    smooth = running_median(log_loss, window)
    noise = noise_level(log_loss)
    running_min = np.minimum.accumulate(smooth)
    rise = smooth - running_min
    result.update(noise=_num(noise), max_rise=_num(np.expm1(rise.max())))
    # later_min[i] = min of the smoothed curve after i (inf at the end): has it come back down?
    later_min = np.append(np.minimum.accumulate(smooth[::-1])[::-1][1:], np.inf)
    back = running_min + recovery_z * noise
    candidates = (rise >= noise_z * noise) & (np.expm1(rise) >= min_rise) & (rise > 0) & (later_min <= back)
    if not candidates.any():
        return result
    # The largest rise among the bumps that recover; argmax takes the earliest on a tie.
    peak = int(np.flatnonzero(candidates)[np.argmax(rise[candidates])])
    dip = int(np.argmin(smooth[: peak + 1]))
    recovery = peak + 1 + int(np.flatnonzero(smooth[peak + 1 :] <= back[peak])[0])
    result.update(
        double_descent=True,
        peak_step=int(steps[peak]),
        peak_loss=_num(np.exp(smooth[peak])),
        dip_step=int(steps[dip]),
        dip_loss=_num(np.exp(smooth[dip])),
        rise=_num(np.expm1(rise[peak])),
        rise_noise=_num(rise[peak] / noise) if noise > 0 else None,
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


def checkpoint_after(steps: np.ndarray, onset: int, before: int) -> int:
    """The first logged step ≥ 2·onset after ``before``, else the final step (§10)."""
    later = steps[(steps >= 2 * onset) & (steps > before)]
    return int(later[0]) if later.size else int(steps[-1])


def _has_values(history: pd.DataFrame, column: str) -> bool:
    return column in history.columns and bool(np.isfinite(pd.to_numeric(history[column], errors="coerce")).any())


def events(
    history: pd.DataFrame,
    run_info: Mapping[str, Any] | None = None,
    chance: float | None = None,
    *,
    n_classes: int = 10,
    grokking_options: Mapping[str, Any] | None = None,
    bn_grokking_options: Mapping[str, Any] | None = None,
    double_descent_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Content of ``events.json`` for one run.

    ``{"run", "status": "ok"|"diverged", "diverged_at", "chance", "summary", "grokking", "grokking_bntrain",
    "bn_grokking", "double_descent"}``. ``chance`` defaults to 1/n_classes. A diverged run (by its run record or
    its history) is not analysed: the event fields are None. ``grokking_bntrain`` runs the grokking rule on the
    train-mode pair (§11.2) and ``bn_grokking`` the BatchNorm rule; both are None without the train-mode columns.
    ``summary`` holds the four flags of :func:`detect_events` (``grokked``, ``bn_grokked``, ``bn_lag_steps``,
    ``double_descent``).
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
        "summary": {"grokked": None, "bn_grokked": None, "bn_lag_steps": None, "double_descent": None},
        "grokking": None,
        "grokking_bntrain": None,
        "bn_grokking": None,
        "double_descent": None,
    }
    if is_diverged:
        return result
    options = {"chance": chance, **dict(grokking_options or {})}
    result["grokking"] = grokking(history, **options)
    if _has_values(history, "test_acc_bntrain"):
        train_column = "train_acc_bntrain" if _has_values(history, "train_acc_bntrain") else "train_acc"
        result["grokking_bntrain"] = grokking(
            history, **{**options, "test_column": "test_acc_bntrain", "train_column": train_column}
        )
        result["bn_grokking"] = bn_grokking(history, **{"chance": chance, **dict(bn_grokking_options or {})})
    result["double_descent"] = double_descent(history, **dict(double_descent_options or {}))
    bn = result["bn_grokking"] or {}
    result["summary"] = {
        "grokked": result["grokking"]["grokked"],
        "bn_grokked": bn.get("bn_grokked", False),
        "bn_lag_steps": bn.get("bn_lag_steps"),
        "double_descent": result["double_descent"]["double_descent"],
    }
    return result


def checkpoint_steps(history: pd.DataFrame, n_classes: int = 10) -> list[int]:
    """The before/after checkpoints of the grokking and BatchNorm-grokking readings (the steps Figs. 6-8 project at)
    and the final step, sorted: what ``events`` would report for this history, without writing it."""
    found = events(history, n_classes=n_classes)
    steps = {int(history["step"].max())} if len(history) else set()
    for key in ("grokking", "grokking_bntrain", "bn_grokking"):
        reading = found.get(key) or {}
        steps |= {int(reading[name]) for name in ("before_step", "after_step") if reading.get(name) is not None}
    return sorted(steps)


def detect_events(
    history: pd.DataFrame,
    n_classes: int = 10,
    *,
    grokking_options: Mapping[str, Any] | None = None,
    bn_grokking_options: Mapping[str, Any] | None = None,
    double_descent_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Training events of a history you logged yourself (docs/external.md): grokking, BatchNorm grokking and its
    lag, double descent.

    ``history`` has history.csv's columns: ``step``, ``train_acc``, ``test_acc``, ``train_loss``, ``test_loss``
    and, for BatchNorm nets, ``train_acc_bntrain`` and ``test_acc_bntrain``. Returns ``grokked`` (bool),
    ``bn_grokked`` (bool; False without the train-mode columns), ``bn_lag_steps`` (int or None) and
    ``double_descent`` (bool), plus ``events``: everything ``events.json`` holds (thresholds, onset steps,
    before/after checkpoints, the double-descent peak and noise). Options are the keyword arguments of
    :func:`grokking`, :func:`bn_grokking` and :func:`double_descent`.
    """
    missing = [column for column in ("step", "train_acc", "test_acc", "test_loss") if column not in history.columns]
    if missing:
        raise ValueError(f"detect_events: the history lacks column(s) {missing} (history.csv's names)")
    found = events(
        history,
        n_classes=n_classes,
        grokking_options=grokking_options,
        bn_grokking_options=bn_grokking_options,
        double_descent_options=double_descent_options,
    )
    summary = found["summary"]
    return {
        "grokked": bool(summary["grokked"]),
        "bn_grokked": bool(summary["bn_grokked"]),
        "bn_lag_steps": summary["bn_lag_steps"],
        "double_descent": bool(summary["double_descent"]),
        "events": found,
    }


def turning_point_spread(
    g_by_layer: pd.DataFrame, *, value: str = "value", offset: float = 1.0, ddof: int = 0
) -> dict[str, Any]:
    """Turning points ``t*_m = argmax_t G_m(t)`` per layer and their spread in log10 steps (§11.4).

    ``g_by_layer`` has columns step, layer and ``value``. A maximum at the layer's first or last analysed step is no
    turning point. Keys: turning_steps {layer: step} (layers that turn), no_turning (sorted layers whose maximum lies
    at an end), log_steps {layer: log10(step + offset)}, spread (std with ``ddof`` across the turning layers; None
    with fewer than two), n_layers (layers that turn), n_analysed (layers with a finite value).
    """
    frame = g_by_layer[["step", "layer", value]].copy()
    frame[value] = pd.to_numeric(frame[value], errors="coerce")
    frame = frame[np.isfinite(frame[value].to_numpy(dtype=float))].sort_values(["layer", "step"], kind="stable")
    frame = frame.reset_index(drop=True)
    # idxmax returns the first maximum; rows are sorted by step, so that is the earliest turning point.
    peaks = frame.loc[frame.groupby("layer")[value].idxmax()]
    ends = frame.groupby("layer")["step"].agg(["min", "max"])
    turning, no_turning = {}, []
    for layer, step in zip(peaks["layer"], peaks["step"], strict=True):
        if step in (ends.loc[layer, "min"], ends.loc[layer, "max"]):
            no_turning.append(int(layer))
        else:
            turning[int(layer)] = int(step)
    logs = {layer: float(np.log10(step + offset)) for layer, step in turning.items()}
    spread = float(np.std(list(logs.values()), ddof=ddof)) if len(logs) >= 2 else None
    return {
        "turning_steps": turning,
        "no_turning": sorted(no_turning),
        "log_steps": logs,
        "spread": spread,
        "n_layers": len(turning),
        "n_analysed": len(ends),
    }
