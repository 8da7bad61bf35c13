"""Figs. S1 and S2 (netdyn.figures.figS1, figS2) on constructed tables: the drawn numbers are the tables' own, the
printed rank correlations are scipy's, and missing stages or diverged runs become notes."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from netdyn.figures import figS1, figS2, figS3
from netdyn.tables import make_tables

STEPS = [0, 10, 100, 1000]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def run_row(run: str, role: str, depth: int, width: int = 64, status: str = "completed") -> dict:
    return {"run": run, "experiment": run.split("/")[0], "role": role, "status": status,
            "diverged_at": 5 if status == "diverged" else None, "model.depth": depth, "model.width": width}  # fmt: skip


def metric(run: str, step: int, name: str, value: float, layer: float = np.nan) -> dict:
    return {"run": run, "step": step, "metric": name, "layer": layer, "value": value, "note": "", "bound": "none",
            "bound_value": np.nan}  # fmt: skip


def texts(ax) -> str:
    return " | ".join(t.get_text() for t in ax.texts)


def panel_axes(fig) -> list:
    return [ax for ax in fig.axes if re.fullmatch(r"\([a-z]\)", ax.get_title(loc="left"))]


def flatness_tables(rng: np.random.Generator, diverged: str | None = None):
    runs = [run_row("grok/base", "grokking", 2)]
    runs += [run_row(f"depth/d{d}", "depth", d) for d in (2, 4)]
    runs += [run_row(f"sweep/d{d}_w{w}", "sweep", d, w) for d in (1, 2, 4) for w in (32, 128)]
    if diverged:
        runs = [{**row, "status": "diverged", "diverged_at": 5} if row["run"] == diverged else row for row in runs]
    rows = []
    for row in runs:
        steps = STEPS if row["role"] != "sweep" else [STEPS[-1]]
        for step in steps:
            basin = float(rng.uniform(0.01, 1))
            rows.append(metric(row["run"], step, "basin_weight", basin))
            rows.append(metric(row["run"], step, "hessian_max", 1 / basin + rng.uniform(0, 0.1)))
            rows.append(metric(row["run"], step, "hessian_trace", float(rng.uniform(1, 100))))
            rows.append(metric(row["run"], step, "test_acc", float(rng.uniform(0, 1))))
    return make_tables(runs=pd.DataFrame(runs), metrics=pd.DataFrame(rows))


def test_figS1_draws_the_tables_values_and_prints_scipys_rank_correlations(tmp_path):
    tables = flatness_tables(np.random.default_rng(0))
    fig, plotted = figS1.draw(tables)
    axes = panel_axes(fig)
    assert len(axes) == 9
    grok = plotted[(plotted["panel"] == "b")].sort_values("x")
    source = tables.metrics[(tables.metrics["run"] == "grok/base") & (tables.metrics["metric"] == "hessian_max")]
    np.testing.assert_allclose(grok["y"], source.sort_values("step")["value"])
    # (g): the sweep's final basin against depth, one line per width, each point one run's value
    sweep = plotted[(plotted["panel"] == "g") & (plotted["series"] == "width 32")].sort_values("x")
    expected = tables.metrics[(tables.metrics["metric"] == "basin_weight") & tables.metrics["run"].str.endswith("w32")]
    np.testing.assert_allclose(sweep["y"], expected.sort_values("run")["value"])
    # the printed rho of row 3 is scipy's over the sweep runs, for each pair
    sweep_rows = tables.metrics[tables.metrics["run"].str.startswith("sweep")]
    wide = sweep_rows.pivot(index="run", columns="metric", values="value")
    rho = stats.spearmanr(wide["basin_weight"], wide["hessian_max"]).statistic
    printed = plotted[(plotted["panel"] == "i") & (plotted["series"] == "spearman basin_weight~hessian_max")]
    assert printed["y"].iloc[0] == pytest.approx(rho) and printed["n"].iloc[0] == 6
    assert f"ρ(ε*_w, λ_max) = {rho:.2f}" in texts(axes[8])
    assert rho < -0.5  # constructed: hessian_max ~ 1 / basin
    # row 2 pools the depth runs' (run, step) points
    assert plotted[(plotted["panel"] == "f") & plotted["series"].str.startswith("spearman")]["n"].eq(8).all()
    fig.savefig(tmp_path / "figS1.png")


def test_figS1_without_hessian_or_with_a_diverged_run_says_so():
    tables = flatness_tables(np.random.default_rng(1), diverged="depth/d4")
    metrics = tables.metrics[tables.metrics["metric"] != "hessian_trace"].copy()
    beyond_grid = (metrics["run"] == "grok/base") & (metrics["metric"] == "basin_weight") & (metrics["step"] == 10)
    metrics.loc[beyond_grid, "value"] = np.nan
    fig, plotted = figS1.draw(tables._replace(metrics=metrics))
    axes = panel_axes(fig)
    assert "nothing to draw" in texts(axes[2]) and "grok/base: no hessian_trace" in texts(axes[2])
    assert "grok/base: no basin_weight at 1 of 4 steps" in texts(axes[0])
    assert len(plotted[plotted["panel"] == "a"]) == 3
    assert "depth/d4: diverged at step 5" in texts(axes[3])
    assert "depth/d4" not in set(plotted["run"].dropna())
    assert "too few" in texts(axes[2]) or "0 pairs" in texts(axes[2])
    fig, plotted = figS1.draw(make_tables())
    assert all(texts(ax) for ax in panel_axes(fig))


def collapse_tables(rng: np.random.Generator):
    runs = [run_row(f"depth/d{d}", "depth", d) for d in (2, 3)]
    rows, cka = [], []
    for row in runs:
        depth = row["model.depth"]
        for step in STEPS:
            for layer in range(1, depth + 1):
                rows.append(metric(row["run"], step, "nc1", float(rng.uniform(0.1, 10)), layer))
                rows.append(metric(row["run"], step, "rpd_gradient", float(rng.normal()), layer))
                rows.append(metric(row["run"], step, "nc2_etf", float(rng.uniform(0, 1)), layer))
                rows.append(metric(row["run"], step, "cka_to_final", float(rng.uniform(0, 1)), layer))
        for a in range(depth + 1):
            for b in range(a, depth + 1):
                value = 1.0 if a == b else float(rng.uniform(0, 1))
                cka.append({"run": row["run"], "step": STEPS[-1], "kind": "layers", "layer_a": a, "layer_b": b,
                            "cka": value, "debiased": False})  # fmt: skip
    return make_tables(runs=pd.DataFrame(runs), metrics=pd.DataFrame(rows), cka=pd.DataFrame(cka))


def test_figS2_draws_the_deepest_runs_layers_and_its_cka_matrix(tmp_path):
    tables = collapse_tables(np.random.default_rng(2))
    fig, plotted = figS2.draw(tables)
    axes = panel_axes(fig)
    assert len(axes) == 6
    nc1 = plotted[(plotted["panel"] == "a") & (plotted["series"] == "layer 2")].sort_values("x")
    source = tables.metrics[(tables.metrics["run"] == "depth/d3") & (tables.metrics["metric"] == "nc1")]
    np.testing.assert_allclose(nc1["y"], source[source["layer"] == 2].sort_values("step")["value"])
    assert set(plotted.loc[plotted["panel"].isin(["a", "b", "d", "e"]), "run"]) == {"depth/d3"}
    matrix = axes[3].images[0].get_array()
    assert matrix.shape == (4, 4) and np.allclose(np.diag(matrix), 1.0) and np.allclose(matrix, matrix.T)
    final = plotted[(plotted["panel"] == "c") & (plotted["series"] == "depth 2")].sort_values("x")
    expected = source_final = tables.metrics[
        (tables.metrics["run"] == "depth/d2") & (tables.metrics["metric"] == "nc1") & (tables.metrics["step"] == 1000)
    ]
    np.testing.assert_allclose(final["y"], source_final.sort_values("layer")["value"])
    assert len(expected) == 2
    fig, plotted = figS2.draw(tables, depth=2)
    assert set(plotted.loc[plotted["panel"] == "a", "run"]) == {"depth/d2"}
    fig.savefig(tmp_path / "figS2.png")


def test_figS2_without_collapse_or_cka_gives_notes():
    tables = collapse_tables(np.random.default_rng(3))
    tables = tables._replace(metrics=tables.metrics[tables.metrics["metric"] == "rpd_gradient"], cka=pd.DataFrame())
    fig, plotted = figS2.draw(tables)
    axes = panel_axes(fig)
    assert "no nc1" in texts(axes[0]) and "no CKA matrix" in texts(axes[3]) and "no cka_to_final" in texts(axes[4])
    assert set(plotted["panel"]) == {"b"}
    fig, plotted = figS2.draw(make_tables())
    assert plotted.empty and all(texts(ax) for ax in panel_axes(fig))


def cnn_tables(rng: np.random.Generator, diverged: str | None = None):
    """CNN runs of depths 2 and 3 at widths 8 and 16 (3 and 4 analysed layers with a one-layer head), two seeds of
    one of them, and MLP runs of depths 1 and 2."""
    runs = [run_row(f"cnn/d{d}_w{w}_s{s}", "cnn", d, w) for d in (2, 3) for w in (8, 16) for s in (0, 1)]
    runs += [run_row(f"mlp/d{d}", "mlp", d, 64) for d in (1, 2)]
    if diverged:
        runs = [{**row, "status": "diverged", "diverged_at": 5} if row["run"] == diverged else row for row in runs]
    rows = []
    for row in runs:
        layers = row["model.depth"] + (1 if row["role"] == "cnn" else 0)
        for step in (0, 100):
            for name in ("basin_input", "basin_weight", "test_acc"):
                rows.append(metric(row["run"], step, name, float(rng.uniform(0.01, 1))))
            for layer in range(1, layers + 1):
                for name in ("rpd_gradient", "opm_fraction"):
                    rows.append(metric(row["run"], step, name, float(rng.uniform(0, 1)), layer))
            for start in range(1, layers + 2):
                for name in ("lmap_acc", "lp_acc"):
                    rows.append(metric(row["run"], step, name, float(rng.uniform(0, 1)), start))
    return make_tables(runs=pd.DataFrame(runs), metrics=pd.DataFrame(rows))


def test_figS3_draws_the_cnn_runs_per_layer_and_against_depth_beside_the_mlp(tmp_path):
    tables = cnn_tables(np.random.default_rng(4))
    fig, plotted = figS3.draw(tables)
    assert len(panel_axes(fig)) == 8
    metrics = tables.metrics
    # (a): depth 3 at the widest width (16), seeds averaged, at the final step, per layer
    line = plotted[(plotted["panel"] == "a") & (plotted["series"] == "depth 3")].sort_values("x")
    source = metrics[metrics["run"].str.startswith("cnn/d3_w16") & (metrics["metric"] == "rpd_gradient")]
    expected = source[source["step"] == 100].groupby("layer")["value"].mean()
    np.testing.assert_allclose(line["y"], expected.to_numpy())
    assert line["x"].tolist() == [1, 2, 3, 4] and (line["n"] == 2).all()
    assert not plotted.loc[plotted["panel"].isin(["a", "b", "c", "d"]), "run"].str.contains("w8").any()
    # (c): start layers 1..D+1
    assert sorted(plotted.loc[(plotted["panel"] == "c") & (plotted["series"] == "depth 2"), "x"]) == [1, 2, 3, 4]
    # (g): test accuracy against depth, a CNN line per width and the MLP's
    series = set(plotted.loc[plotted["panel"] == "g", "series"])
    assert series == {"CNN width 8", "CNN width 16", "MLP width 64"}
    mlp = plotted[(plotted["panel"] == "g") & (plotted["series"] == "MLP width 64")].sort_values("x")
    finals = metrics[(metrics["metric"] == "test_acc") & (metrics["step"] == 100)].set_index("run")["value"]
    assert mlp["y"].tolist() == [finals["mlp/d1"], finals["mlp/d2"]]
    # (h): the first layer's G only
    first = plotted[(plotted["panel"] == "h") & (plotted["series"] == "CNN width 8")].sort_values("x")
    expected = [
        metrics[metrics["run"].str.startswith(f"cnn/d{d}_w8") & (metrics["metric"] == "rpd_gradient")
                & (metrics["step"] == 100) & (metrics["layer"] == 1)]["value"].mean()
        for d in (2, 3)
    ]  # fmt: skip
    np.testing.assert_allclose(first["y"], expected)
    fig, plotted = figS3.draw(tables, width=8)
    assert set(plotted.loc[plotted["panel"] == "a", "run"].str.split(";").explode()).issubset(
        {f"cnn/d{d}_w8_s{s}" for d in (2, 3) for s in (0, 1)}
    )
    fig.savefig(tmp_path / "figS3.png")


def test_figS3_notes_diverged_runs_and_draws_nothing_without_cnn_runs():
    tables = cnn_tables(np.random.default_rng(5), diverged="cnn/d3_w16_s1")
    fig, plotted = figS3.draw(tables)
    axes = panel_axes(fig)
    assert "cnn/d3_w16_s1" in texts(axes[0]) and "diverged" in texts(axes[0])
    line = plotted[(plotted["panel"] == "a") & (plotted["series"] == "depth 3")]
    assert (line["n"] == 1).all()
    fig, plotted = figS3.draw(make_tables())
    assert plotted.empty and all(texts(ax) for ax in panel_axes(fig))
