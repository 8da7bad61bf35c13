"""Attraction basins in input and weight space (methods.md §7, §8): known answers and brute-force references."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from netdyn import basins
from netdyn.models import build

CLASSES = 4


def bn_model(seed: int = 0, dropout: float = 0.0, bias: bool = True) -> nn.Sequential:
    """A small ReLU/BatchNorm MLP whose BN running statistics and γ/β are far from the identity."""
    model = build(
        {"input_size": 12, "classes": CLASSES, "depth": 2, "width": 16, "batchnorm": True, "dropout": dropout},
        generator_seed=seed,
    )
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for module in model:
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.normal_(0, 0.3, generator=generator)
                module.running_var.uniform_(0.2, 3.0, generator=generator)
                module.weight.uniform_(0.5, 2.0, generator=generator)
                module.bias.normal_(0, 0.5, generator=generator)
            if isinstance(module, nn.Linear) and not bias:
                module.bias = None
    return model


def labelled_data(
    model: nn.Sequential, n: int, n_correct: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs with a clear clean margin, labelled so that exactly ``n_correct`` of ``n`` are right.

    Returns ``(x, y, clean_logits)``.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(20 * n, 12, generator=generator)
    with torch.no_grad():
        logits = model.eval()(x)
    top2 = logits.topk(2, dim=1).values
    keep = (top2[:, 0] - top2[:, 1]) > 0.02
    x, logits = x[keep][:n], logits[keep][:n]
    assert len(x) == n
    predicted = logits.argmax(1)
    y = predicted.clone()
    y[n_correct:] = (predicted[n_correct:] + 1) % CLASSES
    return x, y, logits


def near_ties(logits: torch.Tensor) -> int:
    """Samples whose top-2 logits are within 1e-4: float rounding may flip their prediction."""
    top2 = logits.topk(2, dim=1).values
    return int(((top2[:, 0] - top2[:, 1]) < 1e-4).sum())


def naive_weight_accuracy(
    model: nn.Sequential,
    x: torch.Tensor,
    y: torch.Tensor,
    amplitudes: list[float],
    noise: basins.WeightNoise,
    relative: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: deepcopy the model per (amplitude, draw), perturb its Linear layers in place, run it.

    Returns the accuracies ``[A, D]`` and the number of near-tie samples per copy.
    """
    draws = noise[0][0].shape[0]
    accuracy = torch.zeros(len(amplitudes), draws, dtype=torch.float64)
    ties = torch.zeros(len(amplitudes), draws, dtype=torch.float64)
    for a, eps in enumerate(amplitudes):
        for d in range(draws):
            perturbed = copy.deepcopy(model).eval()
            linears = [m for m in perturbed if isinstance(m, nn.Linear)]
            with torch.no_grad():
                for linear, (weight_noise, bias_noise) in zip(linears, noise, strict=True):
                    params = [(linear.weight, weight_noise[d])]
                    if linear.bias is not None:
                        params.append((linear.bias, bias_noise[d]))
                    for param, xi in params:
                        if relative:
                            param.mul_(1 + eps * xi)
                        else:
                            param.add_(eps * xi)
                logits = perturbed(x)
            accuracy[a, d] = (logits.argmax(1) == y).double().mean()
            ties[a, d] = near_ties(logits)
    return accuracy, ties


def assert_equal_up_to_ties(batched: torch.Tensor, reference: torch.Tensor, ties: torch.Tensor, n: int) -> None:
    """Exactly equal wherever no sample is a near-tie; elsewhere at most the near-ties may differ."""
    assert ties.sum() <= 0.01 * n * ties.numel()  # near-ties are rare, so the comparison means something
    assert torch.equal(batched[ties == 0], reference[ties == 0])
    assert torch.all((batched - reference).abs() * n <= ties + 1e-9)


# ----------------------------------------------------------------------------------------------------------
# basin_size


def test_basin_size_interpolates_in_log_amplitude():
    # threshold 0.45; first grid point at or below: 0.3 at 1e-1; previous 0.8 at 1e-2.
    # weight (0.8 - 0.45) / (0.8 - 0.3) = 0.7 -> log10 = -2 + 0.7 -> 10**-1.3
    size, status = basins.basin_size([1e-3, 1e-2, 1e-1, 1.0], [0.9, 0.8, 0.3, 0.1], clean_accuracy=0.9)
    assert status == "ok"
    assert size == pytest.approx(10**-1.3, rel=1e-12)


def test_basin_size_exactly_at_threshold_and_other_fraction():
    size, status = basins.basin_size([1.0, 10.0, 100.0], [0.9, 0.45, 0.1], clean_accuracy=0.9)
    assert (status, size) == ("ok", pytest.approx(10.0, rel=1e-12))
    # fraction 0.25 of 0.8 = 0.2: between 0.5 at 1e-3 and 0.1 at 1e-1 -> weight 0.75 over two decades.
    size, status = basins.basin_size([1e-3, 1e-1], [0.5, 0.1], fraction=0.25, clean_accuracy=0.8)
    assert (status, size) == ("ok", pytest.approx(10 ** (-3 + 1.5), rel=1e-12))


def test_basin_size_uses_the_zero_amplitude_point_when_no_clean_accuracy_given():
    # acc_0 = 0.8 from the grid's first point; threshold 0.4; between 0.6 at 1e-2 and 0.2 at 1e-1 -> half way.
    size, status = basins.basin_size([0.0, 1e-2, 1e-1], [0.8, 0.6, 0.2])
    assert (status, size) == ("ok", pytest.approx(10**-1.5, rel=1e-12))
    with pytest.raises(ValueError, match="clean_accuracy"):
        basins.basin_size([1e-2, 1e-1], [0.6, 0.2])


def test_basin_size_beyond_below_and_degenerate():
    amplitudes = [1e-3, 1e-2, 1e-1]
    size, status = basins.basin_size(amplitudes, [0.9, 0.8, 0.46], clean_accuracy=0.9)
    assert status == "beyond_grid" and math.isnan(size)
    size, status = basins.basin_size(amplitudes, [0.45, 0.3, 0.1], clean_accuracy=0.9)
    assert status == "below_grid" and math.isnan(size)
    for clean in (0.0, float("nan")):
        size, status = basins.basin_size(amplitudes, [0.0, 0.0, 0.0], clean_accuracy=clean)
        assert status == "degenerate" and math.isnan(size)


def test_basin_size_rejects_bad_grids():
    with pytest.raises(ValueError, match="increasing"):
        basins.basin_size([1e-2, 1e-3], [0.9, 0.1], clean_accuracy=1.0)
    with pytest.raises(ValueError, match="equal length"):
        basins.basin_size([1e-2, 1e-1], [0.9], clean_accuracy=1.0)
    with pytest.raises(ValueError, match="nan"):
        basins.basin_size([1e-2, 1e-1], [0.9, float("nan")], clean_accuracy=1.0)


# ----------------------------------------------------------------------------------------------------------
# amplitude zero, mode and state


def test_amplitude_zero_gives_exactly_the_clean_accuracy_in_both_spaces():
    model = bn_model(dropout=0.3)
    x, y, _ = labelled_data(model, n=200, n_correct=130)
    assert basins.unperturbed_accuracy(model, x, y) == 0.65
    amplitudes = [0.0, 1e-3, 10.0]
    mean, std = basins.input_basin_curve(model, x, y, amplitudes, repeats=3, generator=torch.Generator())
    assert mean[0].item() == 0.65 and std[0].item() == 0.0
    assert mean[2].item() != 0.65  # the noise does act at large amplitude
    for relative in (True, False):
        mean, std = basins.weight_basin_curve(
            model, x, y, amplitudes, draws=4, relative=relative, generator=torch.Generator()
        )
        assert mean[0].item() == 0.65 and std[0].item() == 0.0
        assert mean[2].item() != 0.65


def test_mode_parameters_and_bn_buffers_are_left_untouched():
    model = bn_model()
    x, y, _ = labelled_data(model, n=100, n_correct=100)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_mode = [
        basins.weight_basin_curve(model, x, y, [1e-2, 0.3], draws=3, generator=torch.Generator().manual_seed(3)),
        basins.input_basin_curve(model, x, y, [1e-2, 0.3], generator=torch.Generator().manual_seed(3)),
    ]
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    # The model's mode does not matter: the curves are eval-mode curves either way.
    model.eval()
    eval_mode = [
        basins.weight_basin_curve(model, x, y, [1e-2, 0.3], draws=3, generator=torch.Generator().manual_seed(3)),
        basins.input_basin_curve(model, x, y, [1e-2, 0.3], generator=torch.Generator().manual_seed(3)),
    ]
    for (m_train, s_train), (m_eval, s_eval) in zip(train_mode, eval_mode, strict=True):
        assert torch.equal(m_train, m_eval) and torch.equal(s_train, s_eval)


# ----------------------------------------------------------------------------------------------------------
# weight space


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("budget", [None, 300])
def test_batched_weight_basin_matches_a_deepcopy_loop(relative, budget):
    model = bn_model(seed=1, dropout=0.2)
    x, y, _ = labelled_data(model, n=150, n_correct=120, seed=1)
    amplitudes = [0.0, 1e-3, 3e-2, 0.1, 0.3, 1.0, 3.0]
    noise = basins.draw_weight_noise(model, 4, torch.Generator().manual_seed(5))
    batched = basins.weight_basin_accuracies(
        model, x, y, amplitudes, noise, relative=relative, max_batch_elements=budget
    )
    reference, ties = naive_weight_accuracy(model, x, y, amplitudes, noise, relative)
    assert batched.shape == (len(amplitudes), 4)
    assert reference.std() > 0.05  # the perturbations change the accuracy, so the comparison is not empty
    assert_equal_up_to_ties(batched, reference, ties, len(x))


def test_weight_basin_without_biases_matches_a_deepcopy_loop():
    model = bn_model(seed=2, bias=False)
    x, y, _ = labelled_data(model, n=100, n_correct=70, seed=2)
    noise = basins.draw_weight_noise(model, 3, torch.Generator().manual_seed(0))
    assert all(bias is None for _, bias in noise)
    amplitudes = [0.0, 0.1, 0.5, 2.0]
    batched = basins.weight_basin_accuracies(model, x, y, amplitudes, noise)
    reference, ties = naive_weight_accuracy(model, x, y, amplitudes, noise, relative=True)
    assert_equal_up_to_ties(batched, reference, ties, len(x))


def readout_only_network() -> nn.Sequential:
    """Hidden Linear all zero (weights and bias); the readout's bias alone makes class 0 win."""
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2)).double()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        model[2].bias.copy_(torch.tensor([1.0, 0.0]))
    return model


def test_weight_basin_of_a_readout_only_network_by_hand():
    model = readout_only_network()
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.zeros(40, dtype=torch.long)
    amplitudes = [0.0, 1e-3, 1e-1, 1.0, 10.0, 100.0]
    draws = 24
    noise = basins.draw_weight_noise(model, draws, torch.Generator().manual_seed(1))
    (w1, b1), (w2, b2) = [(w.numpy(), b.numpy()) for w, b in noise]
    eps = np.array(amplitudes)[:, None]

    # Relative: zero parameters stay zero, the hidden layer outputs 0, logits = [1 + ε ξ, 0] for every sample.
    relative = basins.weight_basin_accuracies(model, x, y, amplitudes, noise, relative=True).numpy()
    expected = (1 + eps * b2[None, :, 0] > 0).astype(float)
    np.testing.assert_array_equal(relative, expected)
    assert np.all(relative[:3] == 1.0)  # unchanged wherever ε |ξ| < 1

    # Absolute: hidden = relu(ε (Ξ1 x + ξ1)) = ε r, logits = (W2 + ε Ξ2)(ε r) + b2 + ε ξ2.
    absolute = basins.weight_basin_accuracies(model, x, y, amplitudes, noise, relative=False).numpy()
    xs = x.numpy()
    w2_clean, b2_clean = model[2].weight.detach().numpy(), model[2].bias.detach().numpy()
    expected = np.zeros((len(amplitudes), draws))
    for d in range(draws):
        r = np.maximum(xs @ w1[d].T + b1[d], 0.0)
        for a, e in enumerate(amplitudes):
            logits = (e * r) @ (w2_clean + e * w2[d]).T + b2_clean + e * b2[d]
            expected[a, d] = np.mean(logits.argmax(1) == 0)
    np.testing.assert_allclose(absolute, expected, atol=1e-12)
    assert absolute[0].mean() == 1.0 and absolute[-1].mean() < 0.8  # absolute noise destroys the solution


def test_weight_noise_draw_order_and_distribution():
    model = bn_model()
    two = basins.draw_weight_noise(model, 2, torch.Generator().manual_seed(9))
    one = basins.draw_weight_noise(model, 1, torch.Generator().manual_seed(9))
    for (w2, b2), (w1, b1), linear in zip(two, one, [m for m in model if isinstance(m, nn.Linear)], strict=True):
        assert w2.shape == (2, *linear.weight.shape) and b2.shape == (2, linear.out_features)
        assert torch.equal(w2[:1], w1) and torch.equal(b2[:1], b1)  # draw 0 does not depend on the draw count
    values = torch.cat([w.flatten() for w, _ in two])
    assert abs(values.mean().item()) < 0.05 and abs(values.std().item() - 1) < 0.05


def test_weight_curve_is_mean_and_sample_std_over_draws():
    model = bn_model(seed=6)
    x, y, _ = labelled_data(model, n=100, n_correct=75, seed=6)
    amplitudes = [0.0, 0.1, 0.5, 2.0]
    mean, std = basins.weight_basin_curve(model, x, y, amplitudes, draws=4, generator=torch.Generator().manual_seed(2))
    noise = basins.draw_weight_noise(model, 4, torch.Generator().manual_seed(2))
    per_draw = basins.weight_basin_accuracies(model, x, y, amplitudes, noise).numpy()
    np.testing.assert_allclose(mean.numpy(), per_draw.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(std.numpy(), per_draw.std(axis=1, ddof=1), rtol=1e-12)
    assert std[-1] > 0


def test_curves_do_not_depend_on_the_chunk_size():
    model = bn_model(seed=3)
    x, y, _ = labelled_data(model, n=120, n_correct=90, seed=3)
    amplitudes = [1e-3, 1e-1, 0.5, 2.0]
    for curve in (basins.weight_basin_curve, basins.input_basin_curve):
        results = [
            curve(model, x, y, amplitudes, generator=torch.Generator().manual_seed(4), max_batch_elements=budget)
            for budget in (None, 100, 5000)
        ]
        # Chunks of other row counts round differently (MKL, thread partitions): a sample at a tie between two logits
        # may flip, which moves a draw's accuracy by one sample, 1 / 120; nothing more may differ.
        for mean, std in results[1:]:
            assert torch.allclose(mean, results[0][0], rtol=0, atol=1 / 120 + 1e-12)
            assert torch.allclose(std, results[0][1], rtol=0, atol=1 / 120 + 1e-12)


# ----------------------------------------------------------------------------------------------------------
# input space


@pytest.mark.parametrize("budget", [None, 200])
def test_batched_input_basin_matches_a_loop_over_amplitudes_and_repeats(budget):
    model = bn_model(seed=4)
    x, y, _ = labelled_data(model, n=150, n_correct=110, seed=4)
    amplitudes = [0.0, 1e-2, 0.1, 0.3, 1.0, 3.0]
    noise = torch.randn(3, *x.shape, generator=torch.Generator().manual_seed(2))
    batched = basins.input_basin_accuracies(model, x, y, amplitudes, noise, max_batch_elements=budget)
    reference = torch.zeros(len(amplitudes), 3, dtype=torch.float64)
    ties = torch.zeros_like(reference)
    with torch.no_grad():
        for a, eps in enumerate(amplitudes):
            for r in range(3):
                logits = model.eval()(x + eps * noise[r])
                reference[a, r] = (logits.argmax(1) == y).double().mean()
                ties[a, r] = near_ties(logits)
    assert reference.std() > 0.05
    assert_equal_up_to_ties(batched, reference, ties, len(x))


def test_input_basin_of_a_linear_classifier_follows_the_gaussian_flip_probability():
    # Logit difference z0 - z1 = u·x; for x_A = m u/|u|² (class 0) and x_B = -x_A (class 1) the margin is m,
    # and u·(x + ε ξ) = ±m + ε |u| Z, so P(correct) = Φ(m / (ε |u|)) for both points.
    dim, margin = 20, 1.0
    u = torch.randn(dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u = 2.0 * u / u.norm()
    model = nn.Sequential(nn.Linear(dim, 2)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.stack([u / 2, -u / 2]))
        model[0].bias.zero_()
    point = margin * u / u.norm() ** 2
    per_class = 2000
    x = torch.cat([point.expand(per_class, dim), (-point).expand(per_class, dim)])
    y = torch.cat([torch.zeros(per_class), torch.ones(per_class)]).long()
    amplitudes = np.logspace(-1.5, np.log10(2.0), 30)
    mean, std = basins.input_basin_curve(model, x, y, amplitudes, repeats=3, generator=torch.Generator())
    expected = norm.cdf(margin / (amplitudes * u.norm().item()))
    # Each point is an average of 12,000 Bernoulli draws: standard error <= 0.0046.
    np.testing.assert_allclose(mean.numpy(), expected, atol=0.02)
    assert std.max() < 0.03
    # Fraction 0.75: Φ(m / (ε |u|)) = 0.75 at ε* = m / (|u| Φ⁻¹(0.75)).
    size, status = basins.basin_size(amplitudes, mean, fraction=0.75, clean_accuracy=1.0)
    assert status == "ok"
    assert size == pytest.approx(margin / (u.norm().item() * norm.ppf(0.75)), rel=0.08)
    # With two classes the accuracy tends to 1/2 and never reaches half of the clean accuracy on this grid.
    assert basins.basin_size(amplitudes, mean, clean_accuracy=1.0)[1] == "beyond_grid"


# ----------------------------------------------------------------------------------------------------------
# table


def same_size(a: tuple[float, str], b: tuple[float, str]) -> bool:
    return a[1] == b[1] and (a[0] == b[0] or (math.isnan(a[0]) and math.isnan(b[0])))


def test_basin_table_rows_sizes_and_seed():
    model = bn_model(seed=5)
    x, y, _ = labelled_data(model, n=100, n_correct=80, seed=5)
    kwargs = {
        "input_amplitudes": np.logspace(-2, 1.5, 8),
        "weight_amplitudes": np.logspace(-2, 1, 7),
        "repeats": 2,
        "draws": 3,
        "seed": 7,
    }
    rows, sizes = basins.basin_table(model, x, y, **kwargs)
    assert [r["space"] for r in rows] == ["input"] * 8 + ["weight"] * 7
    assert set(rows[0]) == {"space", "amplitude", "accuracy", "accuracy_std"}
    assert set(sizes) == {"basin_input", "basin_weight"}
    for space in ("input", "weight"):
        curve = [r for r in rows if r["space"] == space]
        expected = basins.basin_size(
            [r["amplitude"] for r in curve], [r["accuracy"] for r in curve], clean_accuracy=0.8
        )
        assert same_size(sizes[f"basin_{space}"], expected)
    again_rows, again_sizes = basins.basin_table(model, x, y, **kwargs)
    assert again_rows == rows
    assert all(same_size(again_sizes[k], sizes[k]) for k in sizes)
    other_rows, _ = basins.basin_table(model, x, y, **{**kwargs, "seed": 8})
    assert [r["accuracy"] for r in other_rows] != [r["accuracy"] for r in rows]


def test_default_grids_follow_methods_md():
    assert len(basins.INPUT_AMPLITUDES) == 71 and len(basins.WEIGHT_AMPLITUDES) == 51
    assert basins.INPUT_AMPLITUDES[0] == pytest.approx(1e-5) and basins.INPUT_AMPLITUDES[-1] == pytest.approx(100)
    assert basins.WEIGHT_AMPLITUDES[0] == pytest.approx(1e-4) and basins.WEIGHT_AMPLITUDES[-1] == pytest.approx(10)
    assert np.allclose(np.diff(np.log10(basins.INPUT_AMPLITUDES)), 0.1)
    assert (basins.INPUT_REPEATS, basins.WEIGHT_DRAWS) == (3, 5)


def test_the_basins_stage_without_tracked_amplitudes_writes_its_table(synthetic_h5, tmp_path):
    """No tracked amplitudes and no multiples (presets/cnn.yaml): no row has a ``multiple``, the column stays."""
    from netdyn.config import ANALYSIS_DEFAULTS
    from netdyn.stages import STAGES, Sources, runner
    from netdyn.stages.basins import CURVE_COLUMNS
    from netdyn.train import train_run
    from tests.conftest import tiny_spec

    spec = tiny_spec(n_train=100, steps=5)
    train_run(spec, synthetic_h5, tmp_path / "s", tmp_path / "history.csv", tmp_path / "run.json", log=lambda _: None)
    settings = {key: ANALYSIS_DEFAULTS[key] for key in STAGES["basins"].settings}
    settings |= {"samples": 50, "tracked_input_amplitudes": [], "tracked_input_multiples": [], "weight_draws": 1,
                 "input_repeats": 1, "input_amplitudes": {"start": -2, "stop": 1, "num": 4},
                 "weight_amplitudes": {"start": -2, "stop": 0, "num": 3}}  # fmt: skip
    sources = Sources(tmp_path / "s", synthetic_h5, spec["train"])
    tables = runner("basins")("t", sources, [5], settings, log=lambda _: None)
    assert list(tables["basins"].columns) == CURVE_COLUMNS and len(tables["basins"]) == 7
    assert tables["basins"]["multiple"].isna().all()
