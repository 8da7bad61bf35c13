"""The presets build their whole DAG (`snakemake -n`), with the job counts the docs promise, and each can settle the
claims it is meant to test by the scorecard's own requirements (netdyn.claims.design_check)."""

from __future__ import annotations

import functools
import re
import subprocess
import sys

import pytest

from netdyn.claims import BEYOND_PAPER_CLAIMS, PAPER_CLAIMS, design_check, design_runs
from netdyn.config import dataset_definition, load_config, load_yaml, stack_groups
from netdyn.plan import plan
from tests.conftest import ROOT

SCHEMA = ROOT / "schemas" / "config.schema.yaml"
GPU_RULES = {
    "train",
    "dump_activations",
    "analyse_rpd",
    "analyse_pruning",
    "analyse_basins",
    "analyse_projection",
    "analyse_bn_modes",
    "analyse_hessian",
}


@functools.cache  # tests/test_plan.py compares its job lists with the same dry runs
def job_counts(preset: str) -> dict[str, int]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--forceall",
            "--cores",
            "1",
            "--configfile",
            preset,
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "activation dumps at most" in result.stderr  # the disk estimate every dry run prints
    listed = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, re.M)}
    counts: dict[str, int] = {}
    for rule, count in listed.items():  # a stack group's rules <rule>__<experiment>__stack<k> count as <rule>
        counts[rule.split("__")[0]] = counts.get(rule.split("__")[0], 0) + count
    return counts


@pytest.mark.parametrize("preset", ["config.yaml", "presets/paper.yaml", "presets/fashion.yaml", "presets/cnn.yaml"])
def test_preset_dag_builds_with_one_training_per_run_and_one_collect_per_experiment(preset):
    runs = load_config(load_yaml(ROOT / preset), SCHEMA)
    counts = job_counts(preset)
    groups = stack_groups(runs)
    assert counts["train"] - len(groups) + sum(len(members) for members in groups.values()) == len(runs)
    assert counts["collect"] == len({spec["experiment"] for spec in runs.values()}) and len(groups) > 0
    assert counts["figure"] == len(load_yaml(ROOT / preset)["figures"]) and counts["claims"] == 1
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_the_paper_preset_runs_295_trainings_as_docs_presets_md_says():
    runs = load_config(load_yaml(ROOT / "presets" / "paper.yaml"), SCHEMA)
    assert len(runs) == 295
    assert "295 runs" in (ROOT / "docs" / "presets.md").read_text()


def test_every_rule_that_runs_a_model_declares_a_gpu():
    text = "\n".join(path.read_text() for path in (ROOT / "rules").glob("*.smk"))
    for block in re.split(r"\n(?=rule )", text)[1:]:
        name = block.split(":")[0].removeprefix("rule ").strip()
        assert ("gpu=1" in block) == (name in GPU_RULES), name
    stack_rules = text.split("for group, members in STACKS.items():")[1]
    assert "gpu=1" in stack_rules.split("\nrule ")[0]  # the stack groups' training rules


# The claims each preset is designed to settle. mnist5k and Fashion-MNIST cannot settle what needs the full MNIST
# (claims 1, 5's 60,000-image end); the CPU presets have no 23/32-layer nets (claim 9), and their single-seed
# experiments (fig2, fig6; fig8 in the quick preset, for its time budget) leave those claims to the larger presets.
PRESET_CLAIMS = {
    "config.yaml": {2, 3, 4, 7, 10, 11},
    "presets/fashion.yaml": {2, 3, 4, 7, 8, 10, 11},
    "presets/paper.yaml": set(PAPER_CLAIMS),
    "presets/cnn.yaml": set(BEYOND_PAPER_CLAIMS),
}


@pytest.mark.parametrize("preset", sorted(PRESET_CLAIMS))
def test_every_preset_can_settle_the_claims_it_is_meant_to_test(preset):
    config = load_yaml(ROOT / preset)
    runs = load_config(config, SCHEMA)
    datasets = sorted({spec["dataset"] for spec in runs.values()})
    context = {"datasets": datasets, "sources": sorted({dataset_definition(config, d)["source"] for d in datasets})}
    found = design_check(design_runs(config, runs), context)
    lacking = {claim: found[claim] for claim in PRESET_CLAIMS[preset] if found[claim] is not None}
    assert not lacking, f"{preset} cannot settle: {lacking}"


def test_the_design_check_catches_the_old_fashion_grid():
    """presets/fashion.yaml had depths [1, 2, 4, 8] x 2 widths: no grid around depth 8, no depth with 4 widths."""
    config = load_yaml(ROOT / "presets" / "fashion.yaml")
    config["experiments"]["fig4_depth_width"]["sweep"] = {"model.depth": [1, 2, 4, 8], "model.width": [32, 128]}
    config["experiments"].pop("fig4_width", None)
    config["figures"]["fig4"] = {"sweep": "fig4_depth_width"}
    found = design_check(design_runs(config, load_config(config, SCHEMA)), {"datasets": ["fashion"]})
    assert found[2] is not None and found[3] is not None and found[4] is not None


def test_the_paper_core_preset_on_fashion_mnist_is_the_same_design_labelled_off_paper():
    core = load_yaml(ROOT / "presets" / "paper-core.yaml")
    overlay = load_yaml(ROOT / "presets" / "overlays" / "on-fashion.yaml")
    merged = {**core, "datasets": {**core["datasets"], **overlay["datasets"]}}  # snakemake's merge of the two files
    on_mnist, on_fashion = (load_config(config, SCHEMA) for config in (core, merged))
    assert on_mnist.keys() == on_fashion.keys()
    assert {dataset_definition(merged, spec["dataset"])["source"] for spec in on_fashion.values()} == {"idx"}
    context = {"datasets": ["paper_data"], "sources": ["idx"], "n_train": 60000}
    checked = design_check(design_runs(merged, on_fashion), context)
    assert checked[1] == "not full MNIST"  # the one claim whose design needs the paper's data itself


@pytest.mark.parametrize(
    "preset",
    ["config.yaml", "presets/fashion.yaml", "presets/paper.yaml", "presets/paper-core.yaml", "presets/cnn.yaml"],
)
def test_the_plan_lists_the_jobs_of_a_dry_run(preset):  # here: the dry runs are cached in this module
    planned = plan(load_yaml(ROOT / preset))["jobs"]
    counted = job_counts(preset)
    assert {rule: n for rule, n in planned.items() if n} == {rule: n for rule, n in counted.items() if rule != "total"}


def test_the_paper_core_preset_settles_every_claim_within_one_modelled_gpu_window():
    result = plan(load_yaml(ROOT / "presets" / "paper-core.yaml"))
    settled = {claim for claim, why in result["claims"].items() if why is None}
    assert settled == set(PAPER_CLAIMS)
    assert result["total"]["h200_s"] <= 15 * 60
    assert f"{result['total']['h200_s'] / 60:.1f} min on one H200" in (ROOT / "docs" / "presets.md").read_text()
