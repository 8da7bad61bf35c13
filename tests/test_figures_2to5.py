"""Figures 2-5 on small synthetic run folders read back with ``load_runs``: panel count, PNG size, the plotted numbers
against the source tables, and diverged / missing runs shown as noted gaps (never zeros)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from netdyn.figures import fig2, fig3, fig4, fig5
from netdyn.figures.style import PANEL_SIZE, RC, save
from netdyn.tables import RunTables, load_runs, make_tables

HISTORY = ("train_loss", "train_acc", "test_loss", "test_acc", "train_acc_bntrain", "weight_norm")
AMPLITUDES = (0.0, 1e-3, 1e-2, 1e-1, 1.0)
BINS = np.linspace(0.05, 0.95, 10)


def write_run(
    root: Path,
    run: str,
    role: str,
    roles: dict,
    model: dict,
    train: dict | None = None,
    steps: tuple[int, ...] = (0, 10, 100),
    diverged: bool = False,
    layered: dict[str, list[int]] | None = None,
    per_step: dict[str, list[int | None]] | None = None,
    rpd: dict[int, tuple[int, ...] | None] | None = None,
    skip: tuple[str, ...] = (),
    notes: dict[str, str] | None = None,
    geometry_samples: int = 0,
) -> None:
    """One run folder with random values: history metrics at every step; ``layered`` metric -> layers at the final
    step; ``per_step`` metric -> layers at every step; ``rpd`` layer -> steps (None = final); basins always;
    ``skip``: metrics left out; ``notes``: metric -> note (its value NaN)."""
    rng = np.random.default_rng(zlib.crc32(run.encode()))
    folder = root / run
    folder.mkdir(parents=True)
    roles[run] = role
    spec = {"run": run, "experiment": run.split("/")[0], "dataset": "mnist5k", "model": model, "train": train or {}}
    record = {"run": run, "status": "diverged" if diverged else "completed", "spec": spec}
    record["diverged_at"] = steps[-1] + 1 if diverged else None
    (folder / "run.json").write_text(json.dumps(record))
    history = pd.DataFrame({"step": steps, "epoch": np.array(steps) / 10.0})
    for column in HISTORY:
        history[column] = rng.uniform(0.1, 0.9, len(steps))
    history.to_csv(folder / "history.csv", index=False)
    if diverged:
        return
    final = steps[-1]
    rows = [(s, m, None, v) for m in HISTORY for s, v in zip(steps, history[m], strict=True)]
    for metric, layers in (layered or {}).items():
        rows += [(final, metric, layer, rng.uniform(0.1, 3.0)) for layer in layers]
    for metric, layers in (per_step or {}).items():
        rows += [(s, metric, layer, rng.uniform(0.1, 3.0)) for s in steps for layer in layers]
    rows += [(final, metric, None, rng.uniform(0.01, 5.0)) for metric in ("basin_input", "basin_weight")]
    metrics = pd.DataFrame(rows, columns=["step", "metric", "layer", "value"]).assign(run=run, note="")
    metrics = metrics[~metrics["metric"].isin(skip)]
    for metric, text in (notes or {}).items():
        metrics.loc[metrics["metric"] == metric, ["value", "note"]] = [np.nan, text]
    metrics["layer"] = metrics["layer"].astype("Int64")  # written as an empty cell for network-level metrics
    metrics[["run", "step", "metric", "layer", "value", "note"]].to_csv(folder / "metrics.csv", index=False)
    curves = [
        (s, layer, b, rng.uniform(0, 2)) for layer, at in (rpd or {}).items() for s in (at or (final,)) for b in BINS
    ]
    pd.DataFrame(curves, columns=["step", "layer", "bin_center", "density"]).assign(run=run).to_csv(
        folder / "rpd.csv", index=False
    )
    basins = [(final, space, a, rng.uniform(0.1, 1.0), 0.0) for space in ("input", "weight") for a in AMPLITUDES]
    columns = ["step", "space", "amplitude", "accuracy", "accuracy_std"]
    pd.DataFrame(basins, columns=columns).assign(run=run).to_csv(folder / "basins.csv", index=False)
    if geometry_samples:
        depth = model["depth"]
        geometry = [
            (final, layer, 1000 + i, rng.uniform(0, 1)) for layer in range(depth + 1) for i in range(geometry_samples)
        ]
        columns = ["step", "layer", "sample_index", "distance"]
        pd.DataFrame(geometry, columns=columns).assign(run=run).to_csv(folder / "geometry.csv", index=False)


def load(root: Path, roles: dict) -> RunTables:
    return load_runs(sorted(p.parent for p in root.glob("*/*/run.json")), roles)


def value(tables: RunTables, run: str, metric: str, step: int, layer: int | None = None) -> float:
    m = tables.metrics
    rows = m[(m["run"] == run) & (m["metric"] == metric) & (m["step"] == step)]
    rows = rows[rows["layer"].isna()] if layer is None else rows[rows["layer"] == layer]
    assert len(rows) == 1
    return float(rows["value"].iloc[0])


def rows_of(plotted: pd.DataFrame, panel: str, series: str) -> pd.DataFrame:
    return plotted[(plotted["panel"] == panel) & (plotted["series"] == series)].sort_values("x")


def notes_of(ax) -> str:
    return "\n".join(t.get_text() for t in ax.texts)


def labelled_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_title(loc="left").startswith("(")]


def check_saved(fig, plotted: pd.DataFrame, tmp_path: Path, rows: int, cols: int) -> None:
    save(fig, plotted, tmp_path / "f.png", tmp_path / "f.pdf", tmp_path / "f.csv")
    image = matplotlib.image.imread(tmp_path / "f.png")
    dpi = RC["savefig.dpi"]
    assert image.shape[:2] == (round(rows * PANEL_SIZE[1] * dpi), round(cols * PANEL_SIZE[0] * dpi))
    assert image[..., :3].std() > 0  # something was drawn
    assert (tmp_path / "f.pdf").stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "f.csv")) == len(plotted)


def no_zero_fill(plotted: pd.DataFrame) -> None:
    assert plotted["y"].notna().all()


# ------------------------------------------------------------------------------------------------------ fig. 2


@pytest.fixture(scope="module")
def shallow(tmp_path_factory) -> RunTables:
    root, roles = tmp_path_factory.mktemp("shallow"), {}
    dense = (0, 1, 2, 5, 10, 20, 50, 100)
    for n in (600, 6000, 60000):
        for activation in ("tanh", "linear"):
            run = f"shallow/n{n:05d}_{activation}"
            model = {"depth": 1, "width": 32, "activation": activation}
            largest_tanh = n == 60000 and activation == "tanh"
            write_run(
                root,
                run,
                "shallow",
                roles,
                model,
                {"n_train": n},
                steps=dense if largest_tanh else (0, 10, 100),
                diverged=n == 60000 and activation == "linear",
                layered={} if largest_tanh else {"lp_acc": [1, 2], "lmap_acc": [1, 2], "rpd_gradient": [1]},
                per_step={"lp_acc": [1, 2], "lmap_acc": [1, 2], "rpd_gradient": [1]} if largest_tanh else {},
                rpd={1: dense if largest_tanh else None},
                skip=("lp_acc",) if run == "shallow/n06000_tanh" else (),
            )
    return load(root, roles)


@pytest.fixture(scope="module")
def fig2_drawn(shallow):
    fig, plotted = fig2.draw(shallow)
    yield fig, plotted
    plt.close(fig)


def test_fig2_shape_and_png(fig2_drawn, tmp_path):
    fig, plotted = fig2_drawn
    assert len(labelled_axes(fig)) == 6
    assert set(plotted["panel"]) == {"a", "b", "c", "d", "e", "e_G"}
    check_saved(fig, plotted, tmp_path, 2, 3)


def test_fig2_panel_a_matches_final_values_and_gaps(shallow, fig2_drawn):
    fig, plotted = fig2_drawn
    for series, activation, metric, layer in fig2.CURVES:
        for _, row in rows_of(plotted, "a", series).iterrows():
            run = f"shallow/n{int(row['x']):05d}_{activation}"
            assert row["run"] == run
            assert row["y"] == pytest.approx(value(shallow, run, metric, 100, layer))
    assert list(rows_of(plotted, "a", "LNN")["x"]) == [600, 6000]  # the 60000 linear run diverged
    assert list(rows_of(plotted, "a", "LP")["x"]) == [600, 60000]  # n = 6000 has no lp_acc
    text = notes_of(fig.axes[0])
    assert "shallow/n60000_linear: diverged" in text and "shallow/n06000_tanh: no lp_acc[1]" in text
    assert fig.axes[0].get_xscale() == "log"
    no_zero_fill(plotted)


def test_fig2_training_curves_rpd_and_gradient(shallow, fig2_drawn):
    _, plotted = fig2_drawn
    tanh, linear = "shallow/n60000_tanh", "shallow/n06000_linear"  # largest n, and largest live linear n
    h = shallow.history.set_index(["run", "step"])
    nnn = rows_of(plotted, "b", "NNN-Tanh")
    assert list(nnn["y"]) == pytest.approx(list(h.loc[tanh, "test_acc"]))
    assert list(rows_of(plotted, "b", "LNN")["y"]) == pytest.approx(list(h.loc[linear, "test_acc"]))
    lp = rows_of(plotted, "b", "LP")
    assert [value(shallow, tanh, "lp_acc", int(s), 1) for s in lp["x"]] == pytest.approx(list(lp["y"]))
    rpd = shallow.rpd
    for panel, n in (("c", 600), ("d", 60000)):
        drawn = rows_of(plotted, panel, "NNN-Tanh")
        source = rpd[(rpd["run"] == f"shallow/n{n:05d}_tanh") & (rpd["step"] == 100)].sort_values("bin_center")
        assert list(drawn["y"]) == pytest.approx(list(source["density"]))
    assert set(plotted.loc[plotted["panel"] == "d", "series"]) == {"NNN-Tanh", "LNN"}
    assert set(plotted.loc[plotted["panel"] == "d", "run"]) == {tanh, linear}
    checkpoints = sorted(int(s) for s in plotted.loc[plotted["panel"] == "e", "step"].unique())
    assert len(checkpoints) == 5 and checkpoints[0] == 0 and checkpoints[-1] == 100
    for step in checkpoints:
        drawn = rows_of(plotted, "e", f"step {step}")
        source = rpd[(rpd["run"] == tanh) & (rpd["step"] == step)].sort_values("bin_center")
        assert list(drawn["y"]) == pytest.approx(list(source["density"]))
    gradient = rows_of(plotted, "e_G", "G(t)")
    assert [value(shallow, tanh, "rpd_gradient", int(s), 1) for s in gradient["x"]] == pytest.approx(
        list(gradient["y"])
    )


def test_spread_steps_log_uniform():
    # log1p targets 0, 1.386, 2.773, 4.159 fall exactly on 0, 3, 15, 63
    assert fig2.spread_steps([0, 1, 3, 7, 15, 31, 63], 4) == [0, 3, 15, 63]
    assert fig2.spread_steps([5, 1], 4) == [1, 5]


# ------------------------------------------------------------------------------------------------------ fig. 3


@pytest.fixture(scope="module")
def deep(tmp_path_factory) -> RunTables:
    root, roles = tmp_path_factory.mktemp("deep"), {}
    for depth in (2, 4, 8):
        model = {"depth": depth, "width": 16, "activation": "relu", "batchnorm": True}
        layers = list(range(1, depth + 2))
        write_run(
            root,
            f"depth/d{depth:02d}",
            "depth",
            roles,
            model,
            diverged=depth == 8,
            layered={
                "lp_acc": layers,
                "lmap_acc": layers,
                "center_similarity": list(range(depth + 1)),
                "rpd_gradient": layers[:-1],
                "opm_fraction": layers[:-1],
            },
            rpd=dict.fromkeys(range(1, depth + 1)),
            geometry_samples=3,
        )
    return load(root, roles)


@pytest.fixture(scope="module")
def fig3_drawn(deep):
    fig, plotted = fig3.draw(deep)
    yield fig, plotted
    plt.close(fig)


def test_fig3_pruning_rpd_geometry(deep, fig3_drawn, tmp_path):
    fig, plotted = fig3_drawn
    assert len(labelled_axes(fig)) == 6
    run = "depth/d04"  # the deepest run that did not diverge
    assert "depth/d08: diverged" in notes_of(fig.axes[0])
    for metric, series in (("lp_acc", "LP pruning"), ("lmap_acc", "L-map pruning")):
        drawn = rows_of(plotted, "a", series)
        assert list(drawn["x"]) == [1, 2, 3, 4, 5]
        assert list(drawn["y"]) == pytest.approx([value(deep, run, metric, 100, layer) for layer in range(1, 6)])
    assert rows_of(plotted, "a", "unpruned")["y"].item() == pytest.approx(value(deep, run, "test_acc", 100))
    assert sorted(plotted.loc[plotted["panel"] == "b", "series"].unique()) == ["layer 1", "layer 2", "layer 4"]
    rpd = deep.rpd
    source = rpd[(rpd["run"] == run) & (rpd["layer"] == 4)].sort_values("bin_center")
    assert list(rows_of(plotted, "b", "layer 4")["y"]) == pytest.approx(list(source["density"]))
    g = deep.geometry[deep.geometry["run"] == run]
    for sample, line in g.groupby("sample_index"):
        assert list(rows_of(plotted, "c", f"sample {sample}")["y"]) == pytest.approx(list(line["distance"]))
    mean = rows_of(plotted, "c", "mean distance to own centre")
    assert list(mean["y"]) == pytest.approx(list(g.groupby("layer")["distance"].mean()))
    similarity = rows_of(plotted, "c", "inter-centre similarity S (distance = 1 - S)")
    assert list(similarity["y"]) == pytest.approx([value(deep, run, "center_similarity", 100, i) for i in range(5)])
    check_saved(fig, plotted, tmp_path, 2, 3)


def test_fig3_history_per_depth(deep, fig3_drawn):
    fig, plotted = fig3_drawn
    d = plotted[plotted["panel"] == "d"]
    # depth 8 diverged: a noted gap
    assert set(d["series"]) == {"depth 2", "depth 4", "depth 2 (BN train mode)", "depth 4 (BN train mode)"}
    assert "depth/d08: diverged" in notes_of(fig.axes[3])
    h = deep.history.set_index(["run", "step"])
    for metric in ("test_loss", "test_acc", "train_acc"):
        drawn = d[(d["series"] == "depth 2") & (d["y_name"] == metric)].sort_values("x")
        assert list(drawn["y"]) == pytest.approx(list(h.loc["depth/d02", metric]))
    assert fig.axes[3].get_xscale() == "symlog"


def test_fig3_inset_draws_g_and_the_opm_fraction_per_layer(deep, fig3_drawn):
    _, plotted = fig3_drawn
    for series, metric in (("G", "rpd_gradient"), ("OPM fraction", "opm_fraction")):
        drawn = rows_of(plotted, "b_inset", series)
        assert list(drawn["x"]) == [1, 2, 3, 4]
        assert list(drawn["y"]) == pytest.approx([value(deep, "depth/d04", metric, 100, m) for m in range(1, 5)])


def test_fig3_draws_the_train_mode_train_accuracy_beside_the_eval_mode_test_accuracy(deep, fig3_drawn):
    _, plotted = fig3_drawn
    d = plotted[plotted["panel"] == "d"]
    bn = d[(d["series"] == "depth 2 (BN train mode)") & (d["y_name"] == "train_acc_bntrain")].sort_values("x")
    h = deep.history.set_index(["run", "step"])
    assert len(bn) == 2 * len(h.loc["depth/d02"])  # in the accuracy panel and in the train-accuracy panel
    assert list(bn.drop_duplicates("x")["y"]) == pytest.approx(list(h.loc["depth/d02", "train_acc_bntrain"]))


def test_fig3_depth_setting_picks_the_run_of_panels_a_to_c(deep):
    fig, plotted = fig3.draw(deep, depth=2)
    assert set(plotted.loc[plotted["panel"] == "a", "run"]) == {"depth/d02"}
    assert fig.axes[0].get_title(loc="left") == "(a) depth 2"
    plt.close(fig)
    fig, plotted = fig3.draw(deep, depth=16)
    assert "no live run of depth 16, the deepest is drawn" in notes_of(fig.axes[0])
    assert set(plotted.loc[plotted["panel"] == "a", "run"]) == {"depth/d04"}
    plt.close(fig)


def test_default_rpd_layers():
    assert fig3.default_rpd_layers(23) == [1, 2, 4, 8, 16, 23]
    assert fig3.default_rpd_layers(8) == [1, 2, 4, 8]
    assert fig3.default_rpd_layers(1) == [1]


# ------------------------------------------------------------------------------------------------------ fig. 4


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> RunTables:
    root, roles = tmp_path_factory.mktemp("sweep"), {}
    grid = [(2, 64, 0), (2, 64, 1), (4, 64, 0), (2, 128, 0), (4, 128, 0), (8, 128, 0)]
    for depth, width, seed in grid:
        run = f"sweep/d{depth:02d}_w{width:04d}_s{seed}"
        model = {"depth": depth, "width": width, "activation": "relu", "batchnorm": True}
        write_run(
            root,
            run,
            "sweep",
            roles,
            model,
            {"seed": seed},
            diverged=depth == 8,
            layered={"rpd_gradient": [1, 2]},
            notes={"basin_weight": "beyond_grid: > 10"} if (depth, width) == (4, 128) else None,
        )
    return load(root, roles)


def test_fig4_sweep_values(sweep, tmp_path):
    fig, plotted = fig4.draw(sweep)
    assert len(labelled_axes(fig)) == 6
    check_saved(fig, plotted, tmp_path, 2, 3)
    seeds = [value(sweep, f"sweep/d02_w0064_s{s}", "test_acc", 100) for s in (0, 1)]
    a = rows_of(plotted, "a", "width 64")
    assert a.loc[a["x"] == 2, "y"].item() == pytest.approx(np.mean(seeds))  # seeds averaged
    assert a.loc[a["x"] == 4, "y"].item() == pytest.approx(value(sweep, "sweep/d04_w0064_s0", "test_acc", 100))
    assert list(rows_of(plotted, "a", "width 128")["x"]) == [2, 4]  # depth 8 diverged
    b = rows_of(plotted, "b", "width 128")
    assert list(b["y"]) == pytest.approx(
        [value(sweep, f"sweep/d{d:02d}_w0128_s0", "rpd_gradient", 100, 1) for d in (2, 4)]
    )
    assert "sweep/d08_w0128_s0: diverged" in notes_of(fig.axes[0])
    e = rows_of(plotted, "e", "depth 4")
    assert e.loc[e["x"] == 128, "y"].item() == pytest.approx(value(sweep, "sweep/d04_w0128_s0", "basin_input", 100))
    assert list(rows_of(plotted, "f", "depth 4")["x"]) == [64]  # the width-128 weight basin is beyond the grid
    assert "beyond_grid: > 10" in notes_of(fig.axes[5])
    assert "weight" in fig.axes[5].get_title(loc="left")
    assert fig.axes[4].get_yscale() == "log" and fig.axes[2].get_xscale() == "log"
    no_zero_fill(plotted)


@pytest.mark.parametrize("width", [None, 64])
def test_fig4_noise_curves(sweep, width):
    fig, plotted = fig4.draw(sweep, width=width)
    plt.close(fig)
    chosen = 128 if width is None else 64  # default: the largest width
    basins = sweep.basins
    for panel, space in (("c", "input"), ("d", "weight")):
        drawn = plotted[plotted["panel"] == panel]
        two_seeds = "sweep/d02_w0064_s0;sweep/d02_w0064_s1"  # depth 2 at width 64 has two seeds, averaged
        depth2 = two_seeds if chosen == 64 else "sweep/d02_w0128_s0"
        assert set(drawn["run"]) == {depth2, f"sweep/d04_w{chosen:04d}_s0"}
        run = f"sweep/d04_w{chosen:04d}_s0"
        source = basins[(basins["run"] == run) & (basins["space"] == space) & (basins["amplitude"] > 0)]
        assert list(rows_of(plotted, panel, "depth 4")["y"]) == pytest.approx(list(source["accuracy"]))
        assert (drawn["x"] > 0).all()  # the clean point has no place on the log axis


# ------------------------------------------------------------------------------------------------------ fig. 5


@pytest.fixture(scope="module")
def conditions(tmp_path_factory) -> RunTables:
    root, roles = tmp_path_factory.mktemp("conditions"), {}
    model = {"depth": 2, "width": 16, "activation": "relu", "batchnorm": True}
    for width in (64, 128):
        write_run(root, f"init/w{width}", "init", roles, {**model, "width": width, "init": "uniform"})
    for batch in (32, 128):
        write_run(root, f"batch/b{batch}", "batch", roles, model, {"batch_size": batch})
    for lr in (0.01, 1.0):
        write_run(root, f"lr/lr{lr}", "lr", roles, model, {"lr": lr, "optimizer": "sgd"}, diverged=lr == 1.0)
    return load(root, roles)


def test_fig5_conditions(conditions, tmp_path):
    fig, plotted = fig5.draw(conditions)
    panels = labelled_axes(fig)
    assert len(panels) == 4
    check_saved(fig, plotted, tmp_path, 2, 2)
    a = rows_of(plotted, "a", "depth 2")
    assert list(a["y"]) == pytest.approx([value(conditions, f"init/w{w}", "basin_weight", 100) for w in (64, 128)])
    for metric, series in (*fig5.BASINS, ("test_acc", "test accuracy (right)")):
        drawn = rows_of(plotted, "b", series)
        assert list(drawn["x"]) == [32, 128]
        assert list(drawn["y"]) == pytest.approx([value(conditions, f"batch/b{b}", metric, 100) for b in (32, 128)])
    assert "no 'dropout' runs" in notes_of(panels[2]) and not (plotted["panel"] == "c").any()
    assert list(rows_of(plotted, "d", "test accuracy (right)")["x"]) == [0.01]
    assert "lr/lr1.0: diverged" in notes_of(panels[3])
    assert panels[1].get_xscale() == "log" and panels[2].get_xscale() == "linear" and panels[3].get_xscale() == "log"
    assert panels[1].get_yscale() == "log"
    no_zero_fill(plotted)


# ------------------------------------------------------------------------------------------------------ empty input


@pytest.mark.parametrize("module,shape", [(fig2, (2, 3)), (fig3, (2, 3)), (fig4, (2, 3)), (fig5, (2, 2))])
def test_empty_tables_give_noted_figures(module, shape):
    empty = make_tables()
    fig, plotted = module.draw(empty)
    assert plotted.empty and list(plotted.columns)[:4] == ["panel", "series", "x", "y"]
    assert len(labelled_axes(fig)) == shape[0] * shape[1]
    assert all(notes_of(ax) for ax in labelled_axes(fig))
    plt.close(fig)
