"""Tests for netdyn.events on synthetic and hand-computed histories (methods.md §10, §11.1, §11.4)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from netdyn.events import (
    bn_grokking,
    detect_events,
    diverged,
    double_descent,
    events,
    grokking,
    running_median,
    turning_point_spread,
)

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
    threshold = result["test_threshold"]
    waiting = frame[(frame["step"] < t_g) & (frame["test_acc"] < threshold) & (frame["train_acc"] >= 0.99)]
    if len(waiting):
        assert result["before_rule"] == "memorized" and result["before_step"] == waiting["step"].max()
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
    # the last step before t_g with train acc >= 0.99 and test acc below the 0.5 threshold: 40 and 80 qualify
    assert result["before_step"] == 80 and result["before_rule"] == "memorized"
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
    assert result["before_rule"] == "memorized" and result["before_step"] >= 100
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
    assert result["grokked"] and result["before_rule"] == "memorized"
    assert frame.set_index("step").loc[result["before_step"], "test_acc"] < result["test_threshold"]
    check_before_after_rule(frame, result)


def test_memorization_without_generalization_is_not_grokking() -> None:
    frame = history(0.1 + 0.9 * sigmoid_log(STEPS, 100), np.full(len(STEPS), 0.1))
    result = grokking(frame)
    assert not result["grokked"] and not result["generalized"]


def test_thresholds_are_keyword_options() -> None:
    frame = grokking_history()
    assert not grokking(frame, delay_factor=1e6)["grokked"]
    assert not grokking(frame, min_final_gain=0.99)["grokked"]
    # When no checkpoint counts as memorized the t_g/4 fallback is used.
    assert grokking(frame, memorized=1.01)["before_rule"] == "t_g/4"


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


def bump_loss(width: float = 0.25) -> np.ndarray:
    """Test loss falls to ~2.0 by step ~1000, rises to ~2.7 around 3000, then falls to ~0.3 (grokking)."""
    log_t = np.log10(STEPS + 1)
    base = 2.3 - 0.3 * sigmoid_log(STEPS, 300) - 1.7 * sigmoid_log(STEPS, 6000, width=0.1)
    return base + 0.7 * np.exp(-(((log_t - np.log10(3000)) / width) ** 2))


def overfitting_loss() -> np.ndarray:
    """Falls to ~0.3 by step ~1000, then rises slowly (+60 % by the end) and never comes back: late overfitting."""
    log_t = np.log10(STEPS + 1)
    return 0.3 + 2.0 * np.exp(-STEPS / 200) + 0.18 * np.clip(log_t - 3.0, 0, None) ** 1.5


def loss_history(loss: np.ndarray) -> pd.DataFrame:
    return history(np.ones(len(loss)), np.ones(len(loss)), test_loss=loss, steps=STEPS[: len(loss)])


def test_double_descent_bump_is_found() -> None:
    loss = bump_loss()
    result = double_descent(loss_history(loss))
    assert result["double_descent"]
    smooth = np.exp(running_median(np.log(loss), 5))
    peak = int(np.argmax(np.where(STEPS > 1000, smooth, -np.inf)))
    assert result["peak_step"] == STEPS[peak] and result["peak_loss"] == pytest.approx(smooth[peak])
    dip = int(np.argmin(smooth[: peak + 1]))
    assert result["dip_step"] == STEPS[dip] and 500 <= result["dip_step"] <= 3000
    assert result["rise"] == pytest.approx(smooth[peak] / smooth[dip] - 1) and result["rise"] > 0.2
    assert result["recovery_step"] > result["peak_step"]


def test_running_median_is_centred_and_shrinks_at_the_ends() -> None:
    values = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 9.0])
    assert running_median(values, 5).tolist() == [4.0, 3.0, 3.0, 3.0, 3.5, 3.0]
    assert running_median(values, 1).tolist() == values.tolist()


def test_noise_cannot_fake_double_descent_while_real_bumps_are_all_found() -> None:
    """Done-when of the verdicts issue: 20 noisy slowly overfitting curves give at most 1 false positive; 20 noisy
    curves with a real bump (rising well above their earlier minimum, then falling below it) are all flagged."""
    rng = np.random.default_rng(1)
    false_positives, found = 0, 0
    for _ in range(20):
        noisy = overfitting_loss() * np.exp(0.04 * rng.standard_normal(len(STEPS)))
        reading = double_descent(loss_history(noisy))
        false_positives += reading["double_descent"]
        assert reading["max_rise"] > 0.3  # the overfitting rise itself is far beyond the noise
        assert reading["noise"] == pytest.approx(0.04, rel=0.5)  # the noise is estimated from the curve itself
        bumped = bump_loss() * np.exp(0.03 * rng.standard_normal(len(STEPS)))  # +30 %: 10 times the noise
        reading = double_descent(loss_history(bumped))
        found += reading["double_descent"]
    assert false_positives <= 1
    assert found == 20


def test_the_old_five_percent_wiggle_rule_is_gone() -> None:
    """A noisy plateau wiggles by more than 5 % around its running minimum; that must not count."""
    rng = np.random.default_rng(2)
    plateau = (0.4 + 2.0 * np.exp(-STEPS / 100)) * np.exp(0.05 * rng.standard_normal(len(STEPS)))
    reading = double_descent(loss_history(plateau))
    assert not reading["double_descent"]
    raw = plateau / np.minimum.accumulate(plateau) - 1
    later = np.minimum.accumulate(plateau[::-1])[::-1]
    assert (raw >= 0.05).any() and (later[np.argmax(raw >= 0.05) :] <= plateau.min() * 1.01).any()


def test_double_descent_unrecovered_rise_and_noiseless_thresholds() -> None:
    overfit = double_descent(loss_history(overfitting_loss()))
    assert not overfit["double_descent"] and overfit["max_rise"] > 0.5
    # A noiseless hand-made curve: down to 1.0, a 50 % bump over 5 points, back below the minimum.
    loss = np.array([3.0, 2.5, 2.0, 1.5, 1.0, 1.0, 1.0, 1.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.0, 0.9, 0.8, 0.8, 0.8, 0.8])
    result = double_descent(loss_history(loss))
    assert result["double_descent"] and result["rise"] == pytest.approx(0.5)
    assert result["dip_loss"] == pytest.approx(1.0) and result["peak_loss"] == pytest.approx(1.5)
    assert not double_descent(loss_history(loss), min_rise=0.6)["double_descent"]
    one_point = np.array([3.0, 2.5, 2.0, 1.5, 1.0, 1.0, 1.0, 1.5, 1.0, 1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8])
    assert not double_descent(loss_history(one_point))["double_descent"]  # a single-point spike is noise


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
        "summary": {"grokked": None, "bn_grokked": None, "bn_lag_steps": None, "double_descent": None},
        "grokking": None,
        "grokking_bntrain": None,
        "bn_grokking": None,
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
    assert result["turning_steps"] == peaks and result["n_layers"] == 3 and result["no_turning"] == []
    assert result["spread"] == pytest.approx(np.std([2.0, 3.0, 4.0]))
    synchronous = pd.DataFrame([{"step": s, "layer": m, "value": float(s == 999)} for m in (1, 2, 3) for s in steps])
    assert turning_point_spread(synchronous)["spread"] == 0.0
    ties = pd.DataFrame({"step": [0, 10, 20, 30], "layer": [1] * 4, "value": [1.0, 3.0, 3.0, 2.0]})
    single = turning_point_spread(ties)
    assert single["turning_steps"] == {1: 10} and single["spread"] is None


def test_a_maximum_at_the_first_or_last_analysed_step_is_no_turning_point() -> None:
    steps = [0, 10, 100, 1000]
    rising = pd.DataFrame([{"step": s, "layer": m, "value": math.log10(s + 1) * m} for m in (1, 2, 3) for s in steps])
    result = turning_point_spread(rising)
    assert result["turning_steps"] == {} and result["no_turning"] == [1, 2, 3] and result["spread"] is None
    falling = rising.assign(value=-rising["value"])  # maximum at step 0
    assert turning_point_spread(falling)["no_turning"] == [1, 2, 3]
    mixed = pd.concat([rising, pd.DataFrame({"step": steps, "layer": 4, "value": [0.0, 2.0, 1.0, 0.5]})])
    reading = turning_point_spread(mixed)
    assert reading["turning_steps"] == {4: 10} and reading["n_analysed"] == 4


# ------------------------------------------------------------------------------------- BatchNorm grokking, API

DENSE = np.concatenate([np.arange(0, 120), np.round(np.geomspace(120, 3000, 20)).astype(int)])


def rise(steps: np.ndarray, midpoint: float, width: float) -> np.ndarray:
    """A logistic rise from 0 to 1 centred at ``midpoint`` steps (linear axis): its half-way point is the midpoint."""
    return 1.0 / (1.0 + np.exp(-(steps - midpoint) / width))


def bn_history(eval_midpoint: float, bntrain_midpoint: float, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A deep BN net: train-mode accuracies rise around ``bntrain_midpoint``; eval-mode ones (train and test alike:
    the running statistics lag) around ``eval_midpoint``."""
    rng = np.random.default_rng(seed)

    def curve(midpoint, top):
        return np.clip(0.1 + (top - 0.1) * rise(DENSE, midpoint, 3.0) + noise * rng.standard_normal(len(DENSE)), 0, 1)

    frame = history(curve(eval_midpoint, 0.99), curve(eval_midpoint, 0.95), steps=DENSE)
    frame["train_acc_bntrain"] = curve(bntrain_midpoint, 0.99)
    frame["test_acc_bntrain"] = curve(bntrain_midpoint, 0.95)
    return frame


@pytest.mark.parametrize("lag", [15, 30, 60])
def test_a_batchnorm_eval_mode_delay_is_bn_grokking_with_its_lag(lag) -> None:
    reading = bn_grokking(bn_history(10 + lag, 10, noise=0.01), chance=0.1)
    assert reading["bn_grokked"] and reading["generalized"]
    assert reading["bn_lag_steps"] == pytest.approx(lag, rel=0.2)
    assert reading["waiting_steps"] >= 3 and reading["last_waiting_step"] < reading["eval_onset_step"]


def test_simultaneous_rises_give_no_lag_and_no_bn_grokking() -> None:
    reading = bn_grokking(bn_history(20, 20, noise=0.01), chance=0.1)
    assert not reading["bn_grokked"] and abs(reading["bn_lag_steps"]) <= 2
    assert reading["waiting_steps"] < 3


def test_a_short_wait_or_a_net_that_never_generalizes_is_not_bn_grokking() -> None:
    frame = bn_history(40, 10)
    assert not bn_grokking(frame, min_waiting=1000)["bn_grokked"]
    stuck = frame.assign(test_acc=0.1)
    reading = bn_grokking(stuck)
    assert not reading["bn_grokked"] and reading["bn_lag_steps"] is None and reading["eval_onset_step"] is None
    assert bn_grokking(frame.drop(columns=["train_acc_bntrain"])) is None  # no train-mode readings: no verdict


def test_events_read_the_train_mode_pair_for_grokking_bntrain() -> None:
    frame = bn_history(50, 10)
    result = events(frame, {"run": "d/x", "status": "completed"})
    assert result["grokking_bntrain"]["train_threshold"] == pytest.approx(0.5 * (0.1 + 0.99), abs=1e-3)
    assert not result["grokking_bntrain"]["grokked"]  # train mode: test follows train at once
    bn = result["bn_grokking"]
    assert bn["before_step"] == bn["last_waiting_step"] and bn["after_step"] >= 2 * bn["eval_onset_step"]
    assert result["summary"] == {
        "grokked": result["grokking"]["grokked"],
        "bn_grokked": True,
        "bn_lag_steps": bn["bn_lag_steps"],
        "double_descent": result["double_descent"]["double_descent"],
    }
    json.dumps(result, allow_nan=False)


def test_detect_events_on_constructed_histories() -> None:
    omnigrok = history(
        0.1 + 0.9 * sigmoid_log(STEPS, 300), 0.1 + 0.29 * sigmoid_log(STEPS, 300) + 0.52 * sigmoid_log(STEPS, 5000)
    )
    found = detect_events(omnigrok)
    assert found["grokked"] and not found["bn_grokked"] and found["bn_lag_steps"] is None
    assert (
        not found["double_descent"]
        and found["events"]["grokking"]["onset_step"]
        == found["events"]["summary"]["grokked"] * found["events"]["grokking"]["t_g"]
    )
    ordinary = history(0.1 + 0.9 * sigmoid_log(STEPS, 100), 0.1 + 0.85 * sigmoid_log(STEPS, 120))
    assert not detect_events(ordinary)["grokked"]
    bn = detect_events(bn_history(45, 10))
    assert bn["bn_grokked"] and bn["bn_lag_steps"] == pytest.approx(35, rel=0.2)
    assert detect_events(loss_history(bump_loss()).assign(train_acc=1.0, test_acc=1.0))["double_descent"]
    with pytest.raises(ValueError, match="test_loss"):
        detect_events(omnigrok.drop(columns=["test_loss"]))


def test_detect_events_is_public_api() -> None:
    import netdyn

    assert netdyn.detect_events is detect_events


def test_checkpoint_steps_are_the_events_before_after_and_final_steps() -> None:
    from netdyn.events import checkpoint_steps

    frame = bn_history(45, 10)
    found = events(frame)
    expected = {int(frame["step"].max())}
    for key in ("grokking", "grokking_bntrain", "bn_grokking"):
        expected |= {found[key]["before_step"], found[key]["after_step"]} - {None}
    assert checkpoint_steps(frame) == sorted(expected) and len(expected) >= 3
