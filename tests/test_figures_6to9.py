"""Figures 6-9 on small constructed RunTables: panel count and PNG size, plotted numbers equal the source tables,
diverged / missing runs are gaps with notes (never zeros)."""

from __future__ import annotations

import re

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from netdyn.figures import fig6, fig7, fig8, fig9, style
from netdyn.tables import RunTables, make_tables

STEPS = [0, 1, 10, 100, 1000]
DIGITS = [0, 2, 5]


def spec_row(
    run: str,
    role: str,
    depth: int = 3,
    status: str = "completed",
    batchnorm: bool = True,
    batch: int = 128,
    lr: float = 1e-3,
) -> dict:
    return {
        "run": run,
        "experiment": run.split("/")[0],
        "role": role,
        "status": status,
        "diverged_at": 50 if status == "diverged" else None,
        "model.depth": depth,
        "model.batchnorm": batchnorm,
        "train.batch_size": batch,
        "train.lr": lr,
    }


def run_tables(rows: list[dict], seed: int = 0, proj_steps=(1, 100, 1000), peaks: dict | None = None) -> RunTables:
    """Tables of the given runs; every value differs, so a wrong selection shows. ``peaks[run][layer]`` = the step
    at which that layer's rpd_gradient peaks."""
    rng = np.random.default_rng(seed)
    history, metrics, basins, projection, events = [], [], [], [], {}
    for row in rows:
        run, depth = row["run"], row["model.depth"]
        history.append(
            pd.DataFrame(
                {
                    "run": run,
                    "step": STEPS,
                    "train_acc": rng.uniform(0, 1, len(STEPS)),
                    "test_acc": rng.uniform(0, 1, len(STEPS)),
                    "test_loss": rng.uniform(0.1, 3, len(STEPS)),
                    "test_acc_bntrain": rng.uniform(0, 1, len(STEPS)) if row["model.batchnorm"] else np.nan,
                    "train_acc_bntrain": rng.uniform(0, 1, len(STEPS)) if row["model.batchnorm"] else np.nan,
                }
            )
        )
        for layer in range(1, depth + 1):
            peak = (peaks or {}).get(run, {}).get(layer, STEPS[layer % len(STEPS)])
            values = [10.0 - abs(np.log10(s + 1) - np.log10(peak + 1)) + 0.01 * layer for s in STEPS]
            metrics.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "step": STEPS,
                        "metric": "rpd_gradient",
                        "layer": float(layer),
                        "value": values,
                        "note": np.nan,
                    }
                )
            )
            metrics.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "step": STEPS,
                        "metric": "opm_fraction",
                        "layer": float(layer),
                        "value": rng.uniform(0, 1, len(STEPS)),
                        "note": np.nan,
                    }
                )
            )
        metrics.append(
            pd.DataFrame(
                {"run": run, "step": STEPS, "metric": "test_acc", "layer": np.nan, "value": 0.5, "note": np.nan}
            )
        )
        amplitudes = np.logspace(-3, 1, 5)
        for step in (1, 10, 1000):
            basins.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "step": step,
                        "space": "input",
                        "amplitude": amplitudes,
                        "accuracy": rng.uniform(0, 1, 5),
                        "accuracy_std": 0.0,
                    }
                )
            )
        for amplitude in (1e-3, 1e-2):
            basins.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "step": STEPS,
                        "space": "input_tracked",
                        "amplitude": amplitude,
                        "accuracy": rng.uniform(0, 1, len(STEPS)),
                        "accuracy_std": 0.0,
                    }
                )
            )
        modes = ("eval", "train") if row["model.batchnorm"] else ("eval",)
        for step in proj_steps:
            for split in ("train", "test"):
                for mode in modes:
                    labels = np.repeat(DIGITS, 4)
                    projection.append(
                        pd.DataFrame(
                            {
                                "run": run,
                                "step": step,
                                "split": split,
                                "bn_mode": mode,
                                "index": np.arange(len(labels)),
                                "label": labels,
                                "h1": rng.normal(size=len(labels)),
                                "h2": rng.normal(size=len(labels)),
                            }
                        )
                    )
        status = "diverged" if row["status"] == "diverged" else "ok"
        events[run] = {"run": run, "status": status, "diverged_at": row["diverged_at"], "chance": 0.1}
        if status == "ok":
            events[run]["grokking"] = {"before_step": 100, "after_step": 1000}
            events[run]["double_descent"] = {"double_descent": run.endswith("dd")}
    return make_tables(
        runs=pd.DataFrame(rows),
        history=pd.concat(history, ignore_index=True),
        metrics=pd.concat(metrics, ignore_index=True),
        basins=pd.concat(basins, ignore_index=True),
        projection=pd.concat(projection, ignore_index=True),
        events=events,
    )


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


EMPTY = make_tables()


def panel_axes(fig) -> list:
    """The labelled panels, in order (twin axes, insets and colour bars carry no "(x)" label)."""
    return [ax for ax in fig.axes if re.fullmatch(r"\([a-z]\)", ax.get_title(loc="left"))]


def texts(ax) -> str:
    return " | ".join(t.get_text() for a in [ax, *ax.child_axes] for t in a.texts)


def check_png(fig, plotted, tmp_path, rows: int, cols: int) -> None:
    png = tmp_path / "fig.png"
    style.save(fig, plotted, png, tmp_path / "fig.pdf", tmp_path / "fig.csv")
    height, width = matplotlib.image.imread(png).shape[:2]
    dpi = style.RC["savefig.dpi"]
    assert (width, height) == (round(style.PANEL_SIZE[0] * cols * dpi), round(style.PANEL_SIZE[1] * rows * dpi))
    assert (tmp_path / "fig.pdf").stat().st_size > 0


def rows_of(plotted: pd.DataFrame, panel: str, series: str | None = None) -> pd.DataFrame:
    keep = plotted["panel"] == panel
    if series is not None:
        keep &= plotted["series"] == series
    return plotted[keep].sort_values("x").reset_index(drop=True)


def same_points(drawn: pd.DataFrame, source: pd.DataFrame) -> None:
    """Drawn (x, y) equal the source (h1, h2), as sets of points."""
    a = np.sort(drawn[["x", "y"]].to_numpy(dtype=float), axis=0)
    b = np.sort(source[["h1", "h2"]].to_numpy(dtype=float), axis=0)
    np.testing.assert_allclose(a, b)


# ---------------------------------------------------------------------------------------------------------- fig 6


@pytest.fixture
def grok() -> RunTables:
    return run_tables([spec_row("omni/base", "grokking", depth=2, batchnorm=False), spec_row("other/x", "depth")])


def test_fig6_panels_png_and_numbers(grok, tmp_path):
    fig, plotted = fig6.draw(grok)
    assert len(panel_axes(fig)) == 6
    assert set(plotted["run"]) == {"omni/base"}
    history = grok.history[grok.history["run"] == "omni/base"]
    drawn = rows_of(plotted, "a", "test_acc")
    np.testing.assert_allclose(drawn["x"], history["step"])
    np.testing.assert_allclose(drawn["y"], history["test_acc"])
    tracked = grok.basins[(grok.basins["run"] == "omni/base") & (grok.basins["space"] == "input_tracked")]
    dashed = plotted[(plotted["panel"] == "a") & plotted["series"].str.startswith("input noise")]
    assert dashed["series"].nunique() == 2
    for amplitude, rows in tracked.groupby("amplitude"):
        np.testing.assert_allclose(dashed[dashed["amplitude"] == amplitude].sort_values("x")["y"], rows["accuracy"])
    # (b): the after step (1000) is in basins.csv; the before step (100) is not -> nearest available is 10
    basins = grok.basins[(grok.basins["run"] == "omni/base") & (grok.basins["space"] == "input")]
    for when, used, requested in (("before", 10, 100), ("after", 1000, 1000)):
        drawn = plotted[(plotted["panel"] == "b") & (plotted["when"] == when)].sort_values("x")
        assert set(drawn["step"]) == {used} and set(drawn["step_requested"]) == {requested}
        np.testing.assert_allclose(drawn["y"], basins[basins["step"] == used]["accuracy"])
    assert "nearest to 100" in " ".join(plotted.loc[plotted["panel"] == "b", "series"].unique())
    # (c)-(f): eval-mode projections of train/test at before (100) and after (1000)
    proj = grok.projection[grok.projection["run"] == "omni/base"]
    for panel, split, step in (("c", "train", 100), ("d", "train", 1000), ("e", "test", 100), ("f", "test", 1000)):
        source = proj[(proj["split"] == split) & (proj["step"] == step) & (proj["bn_mode"] == "eval")]
        same_points(plotted[plotted["panel"] == panel], source)
    check_png(fig, plotted, tmp_path, 2, 3)


def test_fig6_digits_option_and_nearest_projection_step():
    tables = run_tables([spec_row("omni/base", "grokking", batchnorm=False)], proj_steps=(1, 90, 1000))
    fig, plotted = fig6.draw(tables, digits=[5])
    drawn = plotted[plotted["panel"] == "c"]
    assert set(drawn["label"]) == {5} and set(drawn["step"]) == {90} and set(drawn["step_requested"]) == {100}
    assert "nearest to 100" in panel_axes(fig)[2].get_title()


def test_fig6_diverged_and_missing_are_notes(tmp_path):
    tables = run_tables([spec_row("omni/base", "grokking", status="diverged")])
    fig, plotted = fig6.draw(tables)
    assert plotted.empty and all("diverged at step 50" in texts(ax) for ax in panel_axes(fig))
    fig, plotted = fig6.draw(EMPTY)
    assert plotted.empty and "no run with role 'grokking'" in texts(panel_axes(fig)[0])
    check_png(fig, plotted, tmp_path, 2, 3)


# ---------------------------------------------------------------------------------------------------------- fig 7


def depth_tables(**kwargs) -> RunTables:
    return run_tables(
        [
            spec_row("deep/d02", "depth", depth=2),
            spec_row("deep/d04", "depth", depth=4),
            spec_row("deep/d08", "depth", depth=8, status="diverged"),
            spec_row("omni/base", "grokking", depth=9),
        ],
        **kwargs,
    )


def test_fig7_deepest_non_diverged_run_and_numbers(tmp_path):
    tables = depth_tables()
    fig, plotted = fig7.draw(tables)
    assert len(panel_axes(fig)) == 9
    assert set(plotted["run"]) == {"deep/d04"}
    proj = tables.projection[tables.projection["run"] == "deep/d04"]
    for panel, mode, split, when in fig7.PROJECTIONS:
        step = 100 if when == "before" else 1000
        source = proj[(proj["bn_mode"] == mode) & (proj["split"] == split) & (proj["step"] == step)]
        same_points(plotted[plotted["panel"] == panel], source)
    history = tables.history[tables.history["run"] == "deep/d04"]
    for column in ("test_acc", "test_acc_bntrain", "train_acc_bntrain"):
        np.testing.assert_allclose(rows_of(plotted, "i", column)["y"], history[column])
    check_png(fig, plotted, tmp_path, 3, 4)


def test_fig7_prefers_the_batchnorm_checkpoints_and_takes_a_depth_setting():
    tables = depth_tables()
    tables.events["deep/d02"]["bn_grokking"] = {"before_step": 1, "after_step": 100}
    fig, plotted = fig7.draw(tables, depth=2)
    assert set(plotted["run"]) == {"deep/d02"}
    assert set(plotted.loc[plotted["when"] == "before", "step"]) == {1}
    assert set(plotted.loc[plotted["when"] == "after", "step"]) == {100}
    fig, plotted = fig7.draw(tables, depth=16)
    assert set(plotted["run"]) == {"deep/d04"} and "no live run of depth 16" in texts(panel_axes(fig)[8])


def test_fig7_without_batchnorm_notes_train_mode():
    tables = run_tables([spec_row("deep/d03", "depth", batchnorm=False)])
    fig, plotted = fig7.draw(tables)
    axes = panel_axes(fig)
    assert all("no BatchNorm" in texts(ax) for ax in axes[4:8])
    assert set(plotted["panel"]) == set("abcdi") and not (plotted["series"] == "test_acc_bntrain").any()
    assert "test_acc_bntrain" in texts(axes[8])


def test_fig7_all_diverged_or_empty():
    tables = run_tables([spec_row("deep/d08", "depth", depth=8, status="diverged")])
    fig, plotted = fig7.draw(tables)
    assert plotted.empty and "diverged" in texts(panel_axes(fig)[0])
    fig, plotted = fig7.draw(EMPTY)
    assert plotted.empty and len(panel_axes(fig)) == 9


# ---------------------------------------------------------------------------------------------------------- fig 8


def conditions(n: int = 4, diverged: str | None = None) -> RunTables:
    settings = [(128, 1e-3), (1024, 1e-3), (16, 1e-3), (128, 1e-2), (64, 3e-4)][:n]
    rows = [
        spec_row(
            f"cond/r{i}", "conditions", batch=b, lr=lr, status="diverged" if f"cond/r{i}" == diverged else "completed"
        )
        for i, (b, lr) in enumerate(settings)
    ]
    return run_tables(rows[::-1])  # reversed: the figure must order by run id itself


def test_fig8_panels_titles_numbers_and_inset(tmp_path):
    tables = conditions()
    fig, plotted = fig8.draw(tables)
    axes = panel_axes(fig)
    assert len(axes) == 4
    assert axes[1].get_title() == "batch 1024, lr 0.001" and axes[3].get_title() == "batch 128, lr 0.01"
    for panel, ax, run in zip("abcd", axes, [f"cond/r{i}" for i in range(4)], strict=True):
        history = tables.history[tables.history["run"] == run]
        np.testing.assert_allclose(rows_of(plotted, panel, "train_acc")["y"], history["train_acc"])
        np.testing.assert_allclose(rows_of(plotted, panel, "train_acc_bntrain")["y"], history["train_acc_bntrain"])
        assert len(ax.child_axes) == 1  # the inset
        proj = tables.projection[(tables.projection["run"] == run) & (tables.projection["split"] == "test")]
        proj = proj[(proj["bn_mode"] == "eval") & (proj["label"] == 5)]
        inset = plotted[(plotted["panel"] == panel) & plotted["series"].str.startswith("inset")]
        assert set(inset["label"]) == {5}
        for when, step in (("before", 100), ("after", 1000)):
            same_points(inset[inset["when"] == when], proj[proj["step"] == step])
    check_png(fig, plotted, tmp_path, 2, 2)


def test_fig8_runs_without_projections_get_no_inset_over_their_curves():
    tables = conditions()
    tables = tables._replace(projection=tables.projection.iloc[0:0])  # no projection stage ran (paper-core)
    fig, plotted = fig8.draw(tables)
    assert all(len(ax.child_axes) == 0 for ax in panel_axes(fig))
    assert not plotted["series"].str.startswith("inset").any() and set(plotted["panel"]) == set("abcd")


def test_fig8_titles_carry_the_batchnorm_lag():
    tables = conditions()
    tables.events["cond/r1"]["bn_grokking"] = {"bn_lag_steps": 37}
    fig, _ = fig8.draw(tables)
    assert panel_axes(fig)[1].get_title() == "batch 1024, lr 0.001, BN lag 37 steps"


def test_fig8_digit_option_diverged_and_extra_runs():
    fig, plotted = fig8.draw(conditions(5, diverged="cond/r2"), digit=0)
    axes = panel_axes(fig)
    assert len(axes) == 4 and "first 4 of 5" in fig._suptitle.get_text()
    assert set(plotted["panel"]) == set("abd") and "cond/r4" not in set(plotted["run"])
    assert "diverged" in texts(axes[2])
    assert set(plotted.loc[plotted["series"].str.startswith("inset"), "label"]) == {0}
    fig, plotted = fig8.draw(conditions(2))
    assert "no further condition run" in texts(panel_axes(fig)[3])
    fig, plotted = fig8.draw(EMPTY)
    assert plotted.empty


# ---------------------------------------------------------------------------------------------------------- fig 9


def test_fig9_layers_turning_points_spread_and_loss(tmp_path):
    # Layer 3 of d04dd peaks at the last analysed step (1000): a curve rising to the end has no turning point.
    peaks = {"deep/d04dd": {1: 100, 2: 100, 3: 1000, 4: 10}, "deep/d02": {1: 1, 2: 10}}
    turns = {"deep/d04dd": {1: 100, 2: 100, 4: 10}, "deep/d02": {1: 1, 2: 10}}
    tables = run_tables([spec_row("deep/d04dd", "depth", depth=4), spec_row("deep/d02", "depth", depth=2)], peaks=peaks)
    fig, plotted = fig9.draw(tables)
    axes = panel_axes(fig)
    assert len(axes) == 8
    assert axes[0].get_title(loc="right").startswith("depth 2") and axes[1].get_title(loc="right").startswith("depth 4")
    for panel, run in (("a", "deep/d02"), ("b", "deep/d04dd")):
        turning = rows_of(plotted, panel, "turning point t*").sort_values("layer")
        assert dict(zip(turning["layer"].astype(int), turning["x"].astype(int), strict=True)) == turns[run]
        expected = np.std(np.log10(np.array(list(turns[run].values())) + 1.0))
        np.testing.assert_allclose(turning["spread"], expected)
        assert f"t* spread {expected:.2f}" in axes["ab".index(panel)].get_title(loc="right")
        metric = tables.metrics[(tables.metrics["run"] == run) & (tables.metrics["metric"] == "rpd_gradient")]
        for layer, rows in metric.groupby("layer"):
            np.testing.assert_allclose(rows_of(plotted, panel, f"G layer {int(layer)}")["y"], rows["value"])
        history = tables.history[tables.history["run"] == run]
        np.testing.assert_allclose(rows_of(plotted, panel, "test_loss")["y"], history["test_loss"])
    assert "DD yes" in axes[1].get_title(loc="right") and "DD no" in axes[0].get_title(loc="right")
    assert "(3/4 turn)" in axes[1].get_title(loc="right")
    # The OPM fractions of each run sit in the panel below its G panel.
    for panel, run in (("c", "deep/d02"), ("d", "deep/d04dd")):
        fractions = tables.metrics[(tables.metrics["run"] == run) & (tables.metrics["metric"] == "opm_fraction")]
        for layer, rows in fractions.groupby("layer"):
            np.testing.assert_allclose(rows_of(plotted, panel, f"OPM fraction layer {int(layer)}")["y"], rows["value"])
    assert axes[2].get_title(loc="right") == "OPM fraction, depth 2"
    assert "no further depth run" in texts(axes[4]) and "no further depth run" in texts(axes[6])
    check_png(fig, plotted, tmp_path, 4, 2)


def test_fig9_diverged_missing_and_empty():
    tables = run_tables([spec_row("deep/d08", "depth", depth=8, status="diverged"), spec_row("deep/d02", "depth", 2)])
    tables = tables._replace(metrics=tables.metrics[tables.metrics["run"] != "deep/d02"])
    fig, plotted = fig9.draw(tables)
    axes = panel_axes(fig)
    assert "no rpd_gradient" in texts(axes[0]) and "diverged" in texts(axes[1])
    assert "no opm_fraction" in texts(axes[2]) and "diverged" in texts(axes[3])
    assert set(plotted["series"]) == {"test_loss"} and set(plotted["run"]) == {"deep/d02"}
    assert not ((plotted["y"] == 0) & (plotted["series"] != "test_loss")).any()
    fig, plotted = fig9.draw(EMPTY)
    assert plotted.empty and "no run with role 'depth'" in texts(panel_axes(fig)[0])


@pytest.mark.parametrize("module", [fig6, fig7, fig8, fig9])
def test_runs_without_any_analysis_give_notes(module):
    rows = [spec_row("x/a", role, depth=3) for role in ("grokking", "depth", "conditions")]
    rows = [{**row, "run": f"x/{row['role']}"} for row in rows]
    tables = run_tables(rows)._replace(
        history=pd.DataFrame(), metrics=pd.DataFrame(), basins=pd.DataFrame(), projection=pd.DataFrame(), events={}
    )
    fig, plotted = module.draw(tables)
    assert plotted.empty and list(plotted.columns[:4]) == ["panel", "series", "x", "y"]
    assert all(texts(ax) for ax in panel_axes(fig))
