"""Tests for netdyn.dynamics on synthetic and hand-computed histories (methods.md §10, §11.1, §11.4)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from netdyn.dynamics import diverged, double_descent, events, grokking, turning_point_spread

STEPS = np.unique(np.concatenate([[0], np.round(np.logspace(0, np.log10(20_000), 60)).astype(int)]))


def sigmoid_log(steps: np.ndarray, midpoint: float, width: float = 0.15) -> np.ndarray:
    """A rise from 0 to 1 centred at ``midpoint`` on a log-step axis."""
    return 1.0 / (1.0 + np.exp(-(np.log10(steps + 1) - np.log10(midpoint)) / width))


def history(train_acc, test_acc, test_loss=None, steps=STEPS, **extra) -> pd.DataFrame:
    steps = np.asarray(steps)
    test_acc = np.asarray(test_acc, dtype=float)
    frame = pd.DataFrame(
        {
            "step": steps,
            "epoch": steps // 100,
            "train_loss": 1.0 - np.asarray(train_acc, dtype=float),
            "test_loss": 2.3 * (1.0 - test_acc) if test_loss is None else test_loss,
            "train_acc": train_acc,
            "test_acc": test_acc,
        }
    )
    for name, values in extra.items():
        frame[name] = values
    return frame


def grokking_history() -> pd.DataFrame:
    """Train acc saturates by step ~100; test acc stays at chance until ~3000, then rises to 0.95."""
    train = 0.1 + 0.9 * sigmoid_log(STEPS, 40)
    test = 0.1 + 0.85 * sigmoid_log(STEPS, 5000, width=0.08)
    return history(train, test)


def check_before_after_rule(frame: pd.DataFrame, result: dict, chance: float = 0.1) -> None:
    steps = frame["step"].tolist()
    t_g = result["t_g"]
    assert result["before_step"] in steps and result["after_step"] in steps
    later = [s for s in steps if s >= 2 * t_g and s > result["before_step"]]
    assert result["after_step"] == (later[0] if later else steps[-1])
    waiting = frame[(frame["step"] <= t_g) & (frame["test_acc"] <= chance + 0.05) & (frame["train_acc"] >= 0.9)]
    if len(waiting):
        assert result["before_rule"] == "chance" and result["before_step"] == waiting["step"].max()
    else:
        distance = abs(result["before_step"] - t_g / 4)
        assert result["before_rule"] == "t_g/4" and all(distance <= abs(s - t_g / 4) for s in steps)


def test_hand_computed_grokking() -> None:
    frame = history(
        [0.1, 0.5, 0.95, 1.0, 1.0, 1.0, 1.0],
        [0.1, 0.1, 0.12, 0.1, 0.3, 0.9, 0.9],
        steps=[0, 10, 20, 40, 80, 160, 320],
    )
    result = grokking(frame)
    # threshold 0.5 -> t_g = 160; train threshold 0.55 -> t_train = 20; ratio 8 >= 2.
    assert result["t_g"] == 160 and result["t_train"] == 20 and result["delay_ratio"] == pytest.approx(8.0)
    assert result["grokked"] and result["onset_step"] == 160
    assert result["before_step"] == 40 and result["before_rule"] == "chance"  # last of 20, 40 at chance
    assert result["after_step"] == 320
    assert result["test_threshold"] == pytest.approx(0.5) and result["train_high_step"] == 20


def test_synthetic_grokking_run() -> None:
    frame = grokking_history()
    result = grokking(frame)
    assert result["grokked"]
    assert 3000 <= result["onset_step"] <= 6000
    index = STEPS.tolist().index(result["t_g"])
    threshold = 0.5 * (0.1 + frame["test_acc"].iloc[-1])
    assert frame["test_acc"].iloc[index] >= threshold > frame["test_acc"].iloc[index - 1]
    assert result["before_rule"] == "chance" and result["before_step"] >= 100
    check_before_after_rule(frame, result)


def test_train_and_test_rising_together_is_not_grokking() -> None:
    frame = history(0.1 + 0.9 * sigmoid_log(STEPS, 100), 0.1 + 0.85 * sigmoid_log(STEPS, 120))
    result = grokking(frame)
    assert not result["grokked"] and result["onset_step"] is None and not result["delayed"]
    assert result["generalized"] and result["t_g"] is not None
    check_before_after_rule(frame, result)


def test_omnigrok_style_grokking_from_above_chance() -> None:
    """Test acc leaves chance with train acc (to ~0.39), then climbs to 0.91 long after train acc saturated."""
    train = 0.1 + 0.9 * sigmoid_log(STEPS, 300)
    test = 0.1 + 0.29 * sigmoid_log(STEPS, 300) + 0.52 * sigmoid_log(STEPS, 5000)
    frame = history(train, test)
    result = grokking(frame)
    assert result["grokked"] and result["before_rule"] == "t_g/4"
    check_before_after_rule(frame, result)


def test_memorization_without_generalization_is_not_grokking() -> None:
    frame = history(0.1 + 0.9 * sigmoid_log(STEPS, 100), np.full(len(STEPS), 0.1))
    result = grokking(frame)
    assert not result["grokked"] and not result["generalized"]


def test_thresholds_are_keyword_options() -> None:
    frame = grokking_history()
    assert not grokking(frame, delay_factor=1e6)["grokked"]
    assert not grokking(frame, min_final_gain=0.99)["grokked"]
    # With a stricter "at chance" band no checkpoint qualifies and the t_g/4 fallback is used.
    assert grokking(frame, margin=-0.01)["before_rule"] == "t_g/4"


def test_before_after_fallbacks_and_messy_rows() -> None:
    frame = history([0.5, 0.6, 0.7, 0.8, 0.9, 0.95], [0.1, 0.2, 0.3, 0.4, 0.5, 0.9], steps=[0, 10, 20, 30, 50, 100])
    shuffled = pd.concat([frame.iloc[[3, 0, 5, 1]], frame.iloc[[2, 4, 4]]])  # unsorted, one duplicated step
    result = grokking(shuffled)
    # threshold 0.5 -> t_g = 50; t_g/4 = 12.5 is nearest 10; 2*t_g = 100 is the final step.
    assert result["t_g"] == 50 and result["before_step"] == 10 and result["after_step"] == 100
    tie = grokking(history([0.5] * 5 + [0.95], [0.1, 0.2, 0.2, 0.2, 0.2, 0.9], steps=[0, 10, 20, 30, 50, 100]))
    assert tie["t_g"] == 100 and tie["before_step"] == 20  # 20 and 30 equally near 25: the earlier


def test_history_with_nan_bn_column_and_empty_history() -> None:
    frame = grokking_history()
    frame["test_acc_bntrain"] = np.nan
    result = events(frame, {"run": "x/y", "status": "completed", "diverged_at": None})
    assert result["status"] == "ok" and result["grokking_bntrain"] is None and result["grokking"]["grokked"]
    empty = grokking(frame.iloc[:0])
    assert empty["grokked"] is False and empty["before_step"] is None


def bump_loss() -> np.ndarray:
    """Test loss falls to 2.0 by step ~1000, rises to ~2.6 around 3000, then falls to 0.3 (grokking)."""
    log_t = np.log10(STEPS + 1)
    base = 2.3 - 0.3 * sigmoid_log(STEPS, 300) - 1.7 * sigmoid_log(STEPS, 6000, width=0.1)
    return base + 0.7 * np.exp(-(((log_t - np.log10(3000)) / 0.12) ** 2))


def test_double_descent_bump_is_found() -> None:
    loss = bump_loss()
    result = double_descent(history(np.ones(len(STEPS)), np.ones(len(STEPS)), test_loss=loss))
    assert result["double_descent"]
    peak = int(np.argmax(np.where(STEPS > 1000, loss, -np.inf)))
    assert result["peak_step"] == STEPS[peak] and result["peak_loss"] == pytest.approx(loss[peak])
    dip = int(np.argmin(loss[: peak + 1]))
    assert result["dip_step"] == STEPS[dip] and 500 <= result["dip_step"] <= 3000
    assert result["rise"] == pytest.approx(loss[peak] / loss[dip] - 1) and result["rise"] > 0.2
    assert result["recovery_step"] > result["peak_step"]


def test_monotone_noisy_loss_has_no_double_descent() -> None:
    rng = np.random.default_rng(0)
    loss = 2.3 * np.exp(-STEPS / 2000) * (1 + 0.01 * rng.standard_normal(len(STEPS))) + 0.05
    result = double_descent(history(np.ones(len(STEPS)), np.ones(len(STEPS)), test_loss=loss))
    assert not result["double_descent"] and result["peak_step"] is None
    assert result["max_rise"] < 0.05
    # The same curve with a tiny threshold does flag the noise wiggles: the threshold is what protects it.
    assert double_descent(history(np.ones(len(STEPS)), np.ones(len(STEPS)), test_loss=loss), min_rise=1e-4)[
        "double_descent"
    ]


def test_double_descent_hand_computed_and_unrecovered_rise() -> None:
    frame = history([1.0] * 6, [1.0] * 6, test_loss=[3.0, 2.0, 1.0, 1.5, 1.2, 0.9], steps=[0, 1, 2, 3, 4, 5])
    result = double_descent(frame)
    assert result["double_descent"] and result["peak_step"] == 3 and result["dip_step"] == 2
    assert result["rise"] == pytest.approx(0.5) and result["recovery_step"] == 4  # 1.2 <= 1.5 * 0.95
    assert double_descent(frame, min_fall=0.5)["recovery_step"] == 5  # must reach max(1.0, 0.75)
    assert not double_descent(frame, min_rise=0.6)["double_descent"]
    assert not double_descent(frame, min_abs_rise=0.6)["double_descent"]
    partial = history([1.0] * 6, [1.0] * 6, test_loss=[3.0, 2.0, 1.0, 1.5, 1.45, 1.48], steps=range(6))
    assert not double_descent(partial)["double_descent"]
    overfit = history([1.0] * 5, [1.0] * 5, test_loss=[2.0, 1.0, 1.2, 1.5, 2.0], steps=range(5))
    late = double_descent(overfit)
    assert not late["double_descent"] and late["max_rise"] == pytest.approx(1.0)


def test_diverged_runs() -> None:
    frame = grokking_history()
    record = {"run": "grid/a", "status": "diverged", "diverged_at": 120}
    assert diverged(record) and not diverged({"status": "completed", "diverged_at": None})
    assert not diverged(frame)
    result = events(frame, record)
    assert result == {
        "run": "grid/a",
        "status": "diverged",
        "diverged_at": 120,
        "chance": 0.1,
        "grokking": None,
        "grokking_bntrain": None,
        "double_descent": None,
    }
    broken = frame.copy()
    broken.loc[broken["step"] >= STEPS[30], "train_loss"] = np.inf
    assert diverged(broken)
    from_history = events(broken, {"run": "grid/b", "status": "completed", "diverged_at": None})
    assert from_history["status"] == "diverged" and from_history["diverged_at"] == STEPS[30]


def test_events_ok_run_is_strict_json() -> None:
    frame = history(
        0.1 + 0.9 * sigmoid_log(STEPS, 40),
        0.1 + 0.85 * sigmoid_log(STEPS, 5000, width=0.08),
        test_loss=bump_loss(),
        test_acc_bntrain=0.1 + 0.85 * sigmoid_log(STEPS, 60),
    )
    result = events(frame, {"run": "fig7/d23", "status": "completed", "diverged_at": None}, n_classes=10)
    assert result["status"] == "ok" and result["diverged_at"] is None
    assert result["grokking"]["grokked"] and result["double_descent"]["double_descent"]
    assert not result["grokking_bntrain"]["grokked"]  # train-mode BN: no delay (Fig. 7)
    json.dumps(result, allow_nan=False)
    options = events(frame, {}, chance=0.1, grokking_options={"delay_factor": 1e6})
    assert not options["grokking"]["grokked"]


def test_turning_point_spread() -> None:
    steps = [0, 9, 99, 999, 9999, 99999]
    rows = []
    peaks = {1: 99, 2: 999, 3: 9999}
    for layer, peak in peaks.items():
        for step in steps:
            rows.append({"step": step, "layer": layer, "value": -abs(math.log10(step + 1) - math.log10(peak + 1))})
    rows.append({"step": 5, "layer": 4, "value": float("nan")})  # a layer with no finite value is left out
    result = turning_point_spread(pd.DataFrame(rows).sample(frac=1.0, random_state=0))
    assert result["turning_steps"] == peaks and result["n_layers"] == 3
    assert result["spread"] == pytest.approx(np.std([2.0, 3.0, 4.0]))
    synchronous = pd.DataFrame([{"step": s, "layer": m, "value": float(s == 999)} for m in (1, 2, 3) for s in steps])
    assert turning_point_spread(synchronous)["spread"] == 0.0
    ties = pd.DataFrame({"step": [0, 10, 20], "layer": [1, 1, 1], "value": [1.0, 3.0, 3.0]})
    single = turning_point_spread(ties)
    assert single["turning_steps"] == {1: 10} and single["spread"] is None
