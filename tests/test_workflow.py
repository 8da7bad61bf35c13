"""End to end: the tiny config through Snakemake, rerun triggers, and config errors before any job runs."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from netdyn.claims import CLAIMS, PAPER_CLAIMS
from netdyn.correlations import FLATNESS_MEASURES
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


WORKFLOW_PARTS = ("Snakefile", "rules", "workflow_scripts", "schemas", "profiles", "envs", "netdyn", "report")
# Pixel size of each figure: panels of 3.2 x 2.6 inches at 150 dpi (netdyn/figures/style.py).
FIGURE_GRIDS = {"2": (2, 3), "3": (2, 3), "4": (2, 3), "5": (2, 2), "6": (2, 3), "7": (3, 4), "8": (2, 2), "9": (4, 2),
                "S1": (3, 3), "S2": (2, 3)}  # fmt: skip


# The jobs start warm (netdyn.warmstart), as `make run`'s do, from one server per test session in a short folder.
WARM_START = {
    "NETDYN_WARM_START": "1",
    "NETDYN_WARM_DIR": tempfile.mkdtemp(prefix="nw", dir="/tmp"),
    "NETDYN_WARM_IDLE": "20",
}


def copy_workflow(target: Path) -> Path:
    """A private copy of the workflow, so a test can edit its code and results without touching the repo."""
    target.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / part)
    return target


def snakemake(
    workdir: Path, *args: str, config: Path | None = None, check: bool = True, warm: bool = True
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--directory", str(workdir)]
    command += ["--configfile", str(config or workdir / "config.yaml"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(WARM_START if warm else {"NETDYN_WARM_START": "0"})}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def planned_runs(dry_run_output: str, rule: str) -> set[str]:
    """Run ids of the ``rule`` jobs in a dry run's job list."""
    jobs = re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output)
    return {
        match.group(1)
        for job in jobs
        if job.lstrip().startswith((f"rule {rule}:", f"localrule {rule}:"))
        for match in [re.search(r"wildcards: run=(\S+)", job)]
        if match
    }


@pytest.fixture(scope="module")
def tiny_workflow(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"))
    shutil.copy(TINY, workdir / "config.yaml")
    snakemake(workdir, "--cores", "2")
    return workdir


def test_tiny_workflow_produces_every_run(tiny_workflow):
    runs = tiny_workflow / "results" / "runs"
    for run in ("shallow/tanh", "shallow/linear", "deep/base"):
        record = json.loads((runs / run / "run.json").read_text())
        assert record["status"] == "completed"
        history = pd.read_csv(runs / run / "history.csv")
        assert history["step"].iloc[0] == 0 and history["step"].iloc[-1] == 60
        assert len(list((runs / run / "snapshots").glob("step*.pt"))) == len(history)
    deep = pd.read_csv(runs / "deep/base/history.csv")
    assert deep[["train_loss_bntrain", "train_acc_bntrain", "test_acc_bntrain"]].notna().all().all()
    assert pd.read_csv(runs / "shallow/tanh/history.csv")["train_acc_bntrain"].isna().all()  # no BatchNorm
    assert (tiny_workflow / "results" / "logs" / "train" / "deep" / "base.log").read_text().strip()
    # The stack group: one training job and one RPD job for both seeds, each run with its own files.
    for run in ("seeds/s00", "seeds/s01"):
        record = json.loads((runs / run / "run.json").read_text())
        assert record["status"] == "completed" and record["stack"]["members"] == ["seeds/s00", "seeds/s01"]
        assert len(pd.read_csv(runs / run / "rpd.csv")) > 0 and len(pd.read_csv(runs / run / "cka.csv")) == 2 * 2 + 1
        metrics = set(pd.read_csv(runs / run / "metrics.csv")["metric"])
        assert {"rpd_gradient", "cka_to_final"} <= metrics
    seeds = [json.loads((runs / f"seeds/{s}/run.json").read_text())["spec"]["train"]["seed"] for s in ("s00", "s01")]
    assert seeds == [0, 1]
    logs = tiny_workflow / "results" / "logs" / "stacks"
    assert "2 of 2, seeds/s01" in (logs / "analyse_rpd__seeds__stack1.log").read_text()
    assert "seeds/s01: completed" in (logs / "train__seeds__stack1.log").read_text()


EXPECTED_METRICS = {
    "train_loss", "test_loss", "train_acc", "test_acc", "train_loss_bntrain", "train_acc_bntrain",
    "test_acc_bntrain", "weight_norm", "test_acc_bnbatch",
    "rpd_gradient", "rpd_gradient_half", "rpd_gradient_log", "rpd_contrast", "lp_acc", "lp_train_acc",
    "lmap_acc", "lmap_weights_acc", "basin_input", "basin_weight", "center_distance", "center_similarity",
    "opm_fraction", "digit_center_distance", "hessian_max", "hessian_trace", "nc1", "nc2_norm", "nc2_angle",
    "nc2_etf", "nc3", "nc4", "cka_to_final",
}  # fmt: skip


def test_every_analysis_table_is_produced_for_every_analysed_step(tiny_workflow):
    run = tiny_workflow / "results" / "runs" / "deep" / "base"
    steps = pd.read_csv(run / "history.csv")["step"].tolist()
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.columns) == ["run", "step", "metric", "layer", "value", "note", "bound", "bound_value"]
    assert set(metrics["metric"]) == EXPECTED_METRICS
    bounded = metrics[metrics["bound"] != "none"]  # a basin beyond or below its grid: the grid's edge, as numbers
    assert bounded["metric"].str.startswith("basin_").all() and bounded["value"].isna().all()
    assert bounded["bound_value"].notna().all() and set(bounded["bound"]) <= {"lower", "upper"}
    assert metrics.loc[metrics["bound"] == "none", "bound_value"].isna().all()
    for metric in ("rpd_gradient", "lmap_acc", "basin_weight", "center_similarity", "test_acc_bnbatch"):
        assert sorted(set(metrics.loc[metrics["metric"] == metric, "step"])) == steps, metric
    assert sorted(set(metrics.loc[metrics["metric"] == "rpd_gradient", "layer"])) == [1, 2, 3]
    hessian_steps = sorted(set(metrics.loc[metrics["metric"] == "hessian_max", "step"]))  # max_steps: {hessian: 3}
    assert len(hessian_steps) == 3 and hessian_steps[0] == steps[0] and hessian_steps[-1] == steps[-1]
    assert sorted(set(metrics.loc[metrics["metric"] == "nc1", "step"])) == steps
    assert sorted(set(metrics.loc[metrics["metric"] == "lp_acc", "layer"])) == [1, 2, 3, 4]
    assert sorted(set(metrics.loc[metrics["metric"] == "center_distance", "layer"])) == [0, 1, 2, 3]
    rpd = pd.read_csv(run / "rpd.csv")
    assert rpd.groupby(["step", "layer"])["density"].mean().round(9).eq(1).all()  # densities average to 1
    neurons = pd.read_csv(run / "neurons.csv")
    assert list(neurons.columns) == ["run", "step", "layer", "neuron", "score", "z", "opm"]
    assert len(neurons) == len(steps) * 3 * 32 and set(neurons["opm"]) <= {0, 1}
    fractions = metrics[metrics["metric"] == "opm_fraction"].set_index(["step", "layer"])["value"]
    pd.testing.assert_series_equal(
        neurons.groupby(["step", "layer"])["opm"].mean(), fractions, check_names=False, check_index_type=False
    )
    # The LP is fitted on the run's whole training split (n_train 1000), not on the 300 analysis samples.
    assert (
        "LP fitted on 1000 training samples"
        in (tiny_workflow / "results/logs/analyse_pruning/deep/base.log").read_text()
    )
    basins = pd.read_csv(run / "basins.csv")
    assert set(basins["space"]) == {"input", "weight", "input_tracked"}
    projection = pd.read_csv(run / "projection.csv")
    assert set(projection["bn_mode"]) == {"eval", "train"} and set(projection["label"]) == {0, 1, 5}
    # Only the checkpoints the figures draw are projected (analysis.projection_steps: checkpoints).
    from netdyn.events import checkpoint_steps

    history = pd.read_csv(run / "history.csv")
    assert sorted(set(projection["step"])) == checkpoint_steps(history) and len(set(projection["step"])) < len(steps)
    events = json.loads((run / "events.json").read_text())
    assert events["status"] == "ok" and events["grokking"]["after_step"] in steps
    assert len(list((run / "activations").glob("step*.h5"))) == len(steps)


def test_final_step_analyses_and_the_lmap_of_a_linear_net(tiny_workflow):
    run = tiny_workflow / "results" / "runs" / "shallow" / "linear"
    metrics = pd.read_csv(run / "metrics.csv")
    analysed = metrics.loc[metrics["metric"] == "lmap_acc"]
    assert analysed["step"].unique().tolist() == [60]
    final_acc = metrics.query("metric == 'test_acc' and step == 60")["value"].item()
    # A linear net is its own L-map, so L-map pruning from any start layer keeps its test accuracy exactly
    # (on the test analysis samples, which are 200 of the 1000 test images: compare through the dump).
    assert analysed["value"].nunique() == 1
    assert 0.5 < final_acc <= 1


def test_a_diverged_run_is_reported_not_analysed(tiny_workflow):
    run = tiny_workflow / "results" / "runs" / "diverging" / "base"
    assert json.loads((run / "run.json").read_text())["status"] == "diverged"
    events = json.loads((run / "events.json").read_text())
    assert events["status"] == "diverged" and events["grokking"] is None
    metrics = pd.read_csv(run / "metrics.csv")
    assert not metrics["metric"].isin(["rpd_gradient", "basin_input", "basin_weight"]).any()
    assert pd.read_csv(run / "basins.csv").empty and pd.read_csv(run / "rpd.csv").empty


def test_every_figure_the_scorecard_and_the_report(tiny_workflow):
    from PIL import Image

    figures = tiny_workflow / "results" / "figures"
    for number, (rows, cols) in FIGURE_GRIDS.items():
        png = figures / f"fig{number}.png"
        assert Image.open(png).size == (round(cols * 3.2 * 150), round(rows * 2.6 * 150)), png.name
        assert (figures / f"fig{number}.pdf").stat().st_size > 1000
        assert {"panel", "series", "x", "y"} <= set(pd.read_csv(figures / f"fig{number}.csv").columns)
    claims = pd.read_csv(tiny_workflow / "results" / "claims.csv")
    assert claims["claim"].tolist() == list(CLAIMS)
    assert set(claims["verdict"]) <= {"reproduced", "not reproduced", "inconclusive"}
    paper = claims["claim"].isin(PAPER_CLAIMS)
    assert set(claims.loc[paper, "scale"]) == {"reduced"}  # mnist5k is not the paper's data
    assert set(claims.loc[~paper, "scale"]) == {"beyond paper"}
    assert {"estimate", "interval_low", "interval_high", "replicates"} <= set(claims.columns)
    flatness = pd.read_csv(tiny_workflow / "results" / "tables" / "flatness_correlations.csv")
    assert flatness[["measure", "against"]].values.tolist()[:3] == [[m, "test_acc"] for m in FLATNESS_MEASURES]
    assert (flatness["n"] == 2).all() and flatness["rho"].isna().all()  # two seeds: too few for a rank correlation
    snakemake(tiny_workflow, "--report", "results/report.html")
    report = (tiny_workflow / "results" / "report.html").read_text()
    assert all(name in report for name in ("fig9.png", "figS1.png", "figS2.png", "claims.csv", "flatness_corr"))
    assert all(f"Figure {name}" in report for name in ("2", "9", "S1", "S2"))  # each figure's own caption
    front = (tiny_workflow / "results" / "report" / "front.rst").read_text()  # the report's first page
    assert front.count("   * - ") == 1 + len(claims) and "Claims scorecard" in report
    assert "fig3.png_" in front and claims["title"].iloc[0].split()[0] in report


def browser_dom(page: Path, budget_ms: int = 10000, width: int = 1400) -> str:
    """The DOM of ``page`` after a headless Chromium, ``width`` pixels wide, ran its scripts."""
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--no-first-run", f"--window-size={width},1000",
               f"--virtual-time-budget={budget_ms}", "--dump-dom", page.resolve().as_uri()]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium (make test-data installs Debian's)")
def test_the_report_opens_in_a_browser_with_its_scorecard_and_every_figure(tiny_workflow, tmp_path):
    report = tiny_workflow / "results" / "report.html"
    if not report.exists():
        snakemake(tiny_workflow, "--report", "results/report.html")
    claims = pd.read_csv(tiny_workflow / "results" / "claims.csv")
    dom = browser_dom(report)
    tables = re.findall(r"<table.*?</table>", dom, re.S)
    scorecard = next(table for table in tables if "verdict" in table and "interval" in table)
    assert len(re.findall(r"<tr", scorecard)) == 1 + len(claims) == 1 + len(CLAIMS)  # the header and every claim
    assert all(title.split()[0] in scorecard for title in claims["title"])
    # Every figure the report embeds decodes in the browser at its file's size.
    text = report.read_text()
    figures = sorted((tiny_workflow / "results" / "figures").glob("*.png"))
    uris = {path.name: re.search(rf'"data_uri": "(data:image/png;[^"]*filename={re.escape(path.name)};base64,[^"]+)"',
                                 text).group(1) for path in figures}  # fmt: skip
    page = tmp_path / "figures.html"
    images = "".join(f'<img id="{name}" src="{uri}">' for name, uri in uris.items())
    script = ("window.onload = () => { document.body.dataset.sizes = JSON.stringify([...document.images]"
              ".map(i => [i.id, i.naturalWidth, i.naturalHeight])); };")  # fmt: skip
    page.write_text(f"<html><body>{images}<script>{script}</script></body></html>")
    sizes = json.loads(re.search(r'data-sizes="([^"]*)"', browser_dom(page)).group(1).replace("&quot;", '"'))
    from PIL import Image

    assert {name: (w, h) for name, w, h in sizes} == {path.name: Image.open(path).size for path in figures}
    assert len(figures) == len(FIGURE_GRIDS)


# Measures the report's landing page once it has rendered: the boxes of the menu, the introduction, the scorecard
# table and the workflow graph, and the width of every scorecard cell, into <body data-layout>.
LAYOUT_PROBE = """<script>
function probe() {
  const prose = document.querySelector("div.prose");
  const graph = document.getElementById("rulegraph");
  if (!prose || !graph || !prose.querySelector("table")) { setTimeout(probe, 250); return; }
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const table = [...prose.querySelectorAll("table")].find((t) => t.textContent.includes("verdict"));
  const widths = [...table.querySelectorAll("tr")].slice(1).map((r) => [...r.children].map((c) => c.offsetWidth));
  document.body.dataset.layout = JSON.stringify({
    menu: box(document.querySelector("nav")), intro: box(prose.querySelector("p")), table: box(table),
    graph: box(graph), widths: widths, page: window.innerWidth,
    header: [...table.querySelectorAll("th")].map((c) => c.textContent) });
}
window.addEventListener("load", () => setTimeout(probe, 1000));
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium (make test-data installs Debian's)")
@pytest.mark.parametrize("width", [1400, 1600])
def test_the_reports_first_page_is_readable_beside_the_menu_and_the_graph(tiny_workflow, tmp_path, width):
    report = tiny_workflow / "results" / "report.html"
    if not report.exists():
        snakemake(tiny_workflow, "--report", "results/report.html")
    probed = tmp_path / "report.html"
    page, end, rest = report.read_text().rpartition("</body>")  # the page's own end tag: the last one
    probed.write_text(page + LAYOUT_PROBE + end + rest)
    found = re.search(r'data-layout="([^"]*)"', browser_dom(probed, width=width))
    assert found, "the probe did not run"
    layout = json.loads(html.unescape(found.group(1)))
    menu, intro, table, graph = (layout[key] for key in ("menu", "intro", "table", "graph"))
    assert intro[0] >= menu[2] and intro[1] >= 0  # the introduction: right of the menu, readable from its top
    assert table[0] >= menu[2] and table[2] <= layout["page"]  # the scorecard: neither under the menu nor off the page
    assert graph[1] >= table[3] or graph[0] >= table[2]  # the graph lies below (or beside) the table, not over it
    column = {name: index for index, name in enumerate(layout["header"])}
    for cells in layout["widths"]:  # a table, not one-word lines
        assert cells[column["title"]] >= 200 and cells[column["verdict"]] >= 80 and cells[column["reason"]] >= 150


def test_nothing_reruns_without_a_change(tiny_workflow):
    assert "Nothing to be done" in snakemake(tiny_workflow, "-n", "--cores", "1").stdout


def without_wall_times(record: object) -> object:
    if isinstance(record, dict):
        return {key: without_wall_times(value) for key, value in record.items() if "wall_time" not in key}
    return [without_wall_times(value) for value in record] if isinstance(record, list) else record


# A lone run and a stack group (its training, dumps and grouped analyses), whose tables tests recompute elsewhere.
SAMPLE_RUNS = ("shallow/tanh", "seeds/s00", "seeds/s01")


def sample_tables(workdir: Path) -> list[Path]:
    """The tables of SAMPLE_RUNS in ``workdir``, relative to it."""
    return sorted(
        path.relative_to(workdir)
        for run in SAMPLE_RUNS
        for path in (workdir / "results" / "runs" / run).rglob("*")
        if path.suffix in (".csv", ".json") and path.parent.name != "snapshots"
    )


def assert_same_tables(tables: list[Path], theirs: Path, mine: Path) -> None:
    """Every table of ``tables`` is the same in both folders (the same code on the same machine: bit for bit)."""
    assert len(tables) > 20
    for table in tables:
        if table.suffix == ".json":
            expected, found = (without_wall_times(json.loads((root / table).read_text())) for root in (theirs, mine))
            assert found == expected, table
            continue
        expected, found = (
            pd.read_csv(root / table).drop(columns=["wall_time"], errors="ignore") for root in (theirs, mine)
        )
        pd.testing.assert_frame_equal(found, expected, check_exact=True, obj=str(table))


def test_jobs_started_cold_write_the_tables_warm_ones_wrote(tiny_workflow, tmp_path):
    """The tiny workflow's jobs ran warm (netdyn.warmstart); a lone run and a stack group and their experiments'
    collect jobs, rerun cold in a copy, give the same tables."""
    warm_server_log = "".join(path.read_text() for path in Path(WARM_START["NETDYN_WARM_DIR"]).glob("*.log"))
    assert "workflow_scripts/train_stack.py" in warm_server_log and "workflow_scripts/analyse.py" in warm_server_log
    cold = tmp_path / "cold"
    shutil.copytree(tiny_workflow, cold, ignore=shutil.ignore_patterns(".snakemake"), symlinks=True)
    tables = sample_tables(tiny_workflow)
    for run in SAMPLE_RUNS:
        shutil.rmtree(cold / "results" / "runs" / run)
    snakemake(cold, "--cores", "2", *map(str, tables), warm=False)
    assert_same_tables(tables, tiny_workflow, cold)


MODULE_SNAKEFILE = """configfile: "config.yaml"


module netdyn:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from netdyn
"""


def test_the_workflow_runs_in_another_folder_and_as_a_module_of_another_snakefile(tiny_workflow, tmp_path):
    """Results on scratch, the code elsewhere: the repository's Snakefile with --directory, and a deployment as
    Snakemake's workflow catalog describes it (a Snakefile of the user's that uses every rule of netdyn's as a
    module), each run from a third folder, reach the tables of the tiny workflow."""
    tables = sample_tables(tiny_workflow)
    env = {**os.environ, "OMP_NUM_THREADS": "1", **WARM_START}
    elsewhere, deployed = tmp_path / "scratch", tmp_path / "deployed"
    for folder in (elsewhere, deployed):
        folder.mkdir()
        shutil.copy(TINY, folder / "config.yaml")
    (deployed / "Snakefile").write_text(MODULE_SNAKEFILE.format(snakefile=ROOT / "Snakefile"))
    commands = {
        elsewhere: ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(elsewhere), "--configfile",
                    str(elsewhere / "config.yaml")],
        deployed: ["--snakefile", str(deployed / "Snakefile"), "--directory", str(deployed)],
    }  # fmt: skip
    for folder, arguments in commands.items():
        command = [sys.executable, "-m", "snakemake", *arguments, "--cores", "2", *map(str, tables)]
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert result.returncode == 0, f"{folder.name}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        assert_same_tables(tables, tiny_workflow, folder)
    assert not (tmp_path / "results").exists()  # nothing written to the folder it was started from


def test_changing_one_runs_lr_reruns_only_that_run(tiny_workflow):
    config = yaml.safe_load(TINY.read_text())
    config["experiments"]["deep"]["train"]["lr"] = 0.003
    changed = tiny_workflow / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    output = snakemake(tiny_workflow, "-n", "--cores", "1", config=changed).stdout
    assert planned_runs(output, "train") == {"deep/base"}
    assert "train__seeds__stack1" not in output


def test_changing_one_stacked_runs_lr_reruns_its_group_and_nothing_else(tiny_workflow):
    config = yaml.safe_load(TINY.read_text())
    config["experiments"]["seeds"]["train"] = {"lr": 0.002}
    changed = tiny_workflow / "changed_stack.yaml"
    changed.write_text(yaml.safe_dump(config))
    output = snakemake(tiny_workflow, "-n", "--cores", "1", config=changed).stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):", output, re.M)
    # The group trains in one job and is analysed in one job per stage; its experiment's collect job follows.
    stages = ("train", "analyse_rpd", "analyse_basins", "analyse_hessian", "analyse_cka")
    group_jobs = {f"{rule}__seeds__stack1" for rule in stages}
    assert all(jobs.count(job) == 1 for job in group_jobs)
    assert planned_runs(output, "dump_activations") == {"seeds/s00", "seeds/s01"}
    # The seeds are Fig. S1's sweep: that figure and the flatness table follow; the claims do not read them.
    assert set(jobs) == group_jobs | {"dump_activations", "collect__seeds", "figure", "flatness", "all"}
    assert re.findall(r"wildcards: figure=(\w+)", output) == ["figS1"]


def test_changing_a_figure_setting_redraws_that_figure_only(tiny_workflow):
    config = yaml.safe_load(TINY.read_text())
    config["figures"]["fig3"]["settings"] = {"depth": 2}
    changed = tiny_workflow / "changed_figure.yaml"
    changed.write_text(yaml.safe_dump(config))  # sorted keys: key order must not count as a change either
    output = snakemake(tiny_workflow, "-n", "--cores", "1", config=changed).stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):", output, re.M)
    assert set(jobs) - {"all"} == {"figure"} and jobs.count("figure") == 1 and "figure=fig3" in output


def test_editing_a_caption_redraws_nothing(tiny_workflow):
    caption = tiny_workflow / "report" / "figure.rst"
    original = caption.read_text()
    try:
        caption.write_text(original.replace("Figure 3", "Figure Three"))
        assert "Nothing to be done" in snakemake(tiny_workflow, "-n", "--cores", "1").stdout
    finally:
        caption.write_text(original)


def dry_run_after_editing(workdir: Path, module: str) -> str:
    """A dry run's output after an edit of ``netdyn/<module>.py`` (content and time restored afterwards)."""
    source = workdir / "netdyn" / f"{module}.py"
    original, times = source.read_text(), (source.stat().st_atime, source.stat().st_mtime)
    try:
        source.write_text(original + "\n# an edit\n")
        return snakemake(workdir, "-n", "--cores", "1").stdout
    finally:
        source.write_text(original)
        os.utime(source, times)


def test_editing_the_training_code_reruns_every_training(tiny_workflow):
    output = dry_run_after_editing(tiny_workflow, "train")
    assert planned_runs(output, "train") == {"shallow/tanh", "shallow/linear", "deep/base", "diverging/base"}
    assert "rule train__seeds__stack1:" in output  # the stacked trainer imports netdyn.train


def rules_rerun_after_editing(workdir: Path, module: str) -> set[str]:
    """The rules a dry run plans after an edit of ``netdyn/<module>.py``."""
    output = dry_run_after_editing(workdir, module)
    return set(re.findall(r"^(?:local)?rule (\w+):", output, re.M)) - {"all"}


def test_editing_a_module_reruns_exactly_the_rules_that_can_import_it(tiny_workflow):
    downstream = {"figure", "flatness", "claims", "front_page"}  # rerun: their inputs do
    downstream |= {f"collect__{experiment}" for experiment in ("shallow", "deep", "seeds", "diverging")}
    assert rules_rerun_after_editing(tiny_workflow, "geometry") - downstream == {"analyse_geometry"}
    assert rules_rerun_after_editing(tiny_workflow, "modes") - downstream == {
        "analyse_rpd",
        "analyse_rpd__seeds__stack1",
    }
    # evaluate reaches the dumps and the basins only through other modules: the drift of hand-kept lists
    assert {"train", "dump_activations", "analyse_basins", "analyse_pruning"} <= rules_rerun_after_editing(
        tiny_workflow, "evaluate"
    )
    assert "Nothing to be done" in snakemake(tiny_workflow, "-n", "--cores", "1").stdout


def test_a_bad_config_stops_before_any_job_and_names_the_key(tmp_path):
    copy_workflow(tmp_path)
    config = yaml.safe_load(TINY.read_text())
    config["experiments"]["deep"]["train"]["lr"] = "fast"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--cores", "1", check=False)
    assert result.returncode != 0
    assert "config error: experiments.deep.train.lr: 'fast' is not of type number" in result.stderr
    assert not (tmp_path / "results").exists()
