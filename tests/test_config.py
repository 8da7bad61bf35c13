"""Config validation (key paths in every error), run-id expansion and snapshot schedules."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdyn.config import ConfigError, expand_runs, load_config, load_yaml, snapshot_steps, training_spec
from tests.conftest import ROOT

SCHEMA = ROOT / "schemas" / "config.schema.yaml"


def base_config() -> dict:
    return {
        "defaults": {"dataset": "mnist5k", "train": {"steps": 100, "batch_size": 50}},
        "experiments": {"a": {"model": {"depth": 2, "width": 16}}},
    }


def with_change(path: str, value, config=None) -> dict:
    config = copy.deepcopy(config or base_config())
    *parents, leaf = path.split("/")
    target = config
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value
    return config


MALFORMED = [
    (with_change("experiments/a/train/lr", "fast"), "experiments.a.train.lr: 'fast' is not of type"),
    (with_change("experiments/a/train/lrr", 0.1), "experiments.a.train: unknown key 'lrr'"),
    (with_change("experimnets", {}), "(top level): unknown key 'experimnets'"),
    (with_change("experiments/a/model/depth", -1), "experiments.a.model.depth: -1 is less than the minimum"),
    (with_change("experiments/a/model/width", 0), "experiments.a.model.width: 0 is less than the minimum"),
    (with_change("experiments/a/model/activation", "swish"), "experiments.a.model.activation: 'swish' is not one"),
    (with_change("experiments/a/model/dropout", 1.0), "experiments.a.model.dropout"),
    (with_change("experiments/a/train/batch_size", 0), "experiments.a.train.batch_size"),
    (with_change("experiments/a/train/batch_size", 12.5), "experiments.a.train.batch_size: 12.5 is not of type"),
    (with_change("experiments/a/train/optimizer", "rmsprop"), "experiments.a.train.optimizer"),
    (with_change("experiments/a/sweep", {"train.lr": []}), "experiments.a.sweep.train.lr"),
    (with_change("experiments/a/sweep", {}), "experiments.a.sweep"),
    (with_change("experiments/a/sweep", {"train.speed": [1, 2]}), "experiments.a.sweep: unknown field 'train.speed'"),
    (with_change("experiments/a/sweep", {"train.lr": [0.001, 1e-3]}), "share the run id 'a/lr0.001'"),
    (with_change("experiments/a/sweep", {"train.lr": ["x"]}), "(sweep point a/x): train.lr: 'x' is not of type"),
    (with_change("experiments/a/snapshots", [0, 10, 500]), "experiments.a.snapshots: step 500 is beyond"),
    (with_change("experiments/a/snapshots", {"log": {"num": 5, "stop": 1000}}), "experiments.a.snapshots.log.stop"),
    (with_change("experiments/a/snapshots", {"log": 1}), "experiments.a.snapshots.log"),
    (with_change("experiments/a/snapshots", [-3]), "experiments.a.snapshots[0]: -3 is less than the minimum"),
    (with_change("experiments/a/dataset", "cifar"), "experiments.a.dataset: unknown dataset 'cifar'"),
    (with_change("experiments/a/train/epochs", 2), "experiments.a.train: give either 'steps' or 'epochs'"),
    (with_change("experiments/a/train/n_train", 10**6), "experiments.a.train.n_train: 1000000 exceeds"),
    (with_change("experiments", {}), "experiments: {} should be non-empty"),
    (with_change("experiments", {"Bad-Name": {}}), "experiments: 'Bad-Name' does not match"),
    (with_change("datasets", {"mine": {"source": "cifar"}}), "datasets.mine.source"),
    (with_change("datasets", {"mine": {"path": "/x"}}), "datasets.mine: 'source' is a required property"),
    # Path-taking keys: missing, of the wrong kind (root reads every file, so "unreadable" is not testable here).
    (
        with_change("datasets", {"mine": {"source": "idx", "path": "/nonexistent"}}),
        "datasets.mine.path: '/nonexistent' does not exist (source idx reads an IDX folder)",
    ),
    (
        with_change("datasets", {"mine": {"source": "idx", "path": str(ROOT / "README.md")}}),
        "datasets.mine.path: '" + str(ROOT / "README.md") + "' is not a folder",
    ),
    (with_change("datasets", {"mine": {"source": "idx"}}), "datasets.mine: source idx needs 'path'"),
    (
        with_change("datasets", {"mine": {"source": "arrays", "path": "/missing.npz"}}),
        "datasets.mine.path: '/missing.npz' does not exist",
    ),
    (
        with_change("datasets", {"mine": {"source": "arrays", "path": str(ROOT / "docs")}}),
        "datasets.mine.path: '" + str(ROOT / "docs") + "' is not a file",
    ),
    (
        with_change("experiments/a/external", {"runs": {"x": str(ROOT / "docs")}, "steps_csv": "/missing.csv"}),
        "experiments.a.external.steps_csv: '/missing.csv' does not exist",
    ),
    (
        with_change("experiments/a/external", {"runs": {"x": str(ROOT / "docs")}, "model_yaml": str(ROOT / "docs")}),
        "experiments.a.external.model_yaml: '" + str(ROOT / "docs") + "' is not a file",
    ),
    (
        with_change("experiments/a/external", {"runs": {"x": str(ROOT / "nothing" / "*.pt")}}),
        "experiments.a.external.runs.x: " + str(ROOT / "nothing" / "*.pt") + ": no checkpoint files found",
    ),
    (with_change("defaults/train/device", "tpu"), "defaults.train.device"),
    (with_change("defaults/train/dtype", "float16"), "defaults.train.dtype"),
    ({"defaults": {"train": {"batch_size": 5}}, "experiments": {"a": {}}}, "experiments.a.train: the training length"),
    (with_change("experiments/a/model/widths", [16, "x"]), "experiments.a.model.widths"),
    (with_change("experiments/a/model/depth", 2.0), "experiments.a.model.depth: 2.0 is not of type integer"),
    (with_change("experiments/a/external", {"runs": {"x": "/nonexistent/*.pt"}}), "external.runs.x: /nonexistent"),
    (with_change("experiments/a/external", {"runs": {}}), "experiments.a.external.runs"),
    (with_change("figures", {"fig4": {"sweep": "nope"}}), "figures.fig4.sweep: no experiment named 'nope'"),
    (with_change("figures", {"fig1": {"x": "a"}}), "figures: unknown key 'fig1'"),
    (with_change("analysis", {"run": ["rpd", "magic"]}), "analysis.run[1]"),
    (with_change("experiments/a/analysis", {"steps": [99]}), "experiments.a.analysis.steps: step 99 is not a snapshot"),
    (with_change("experiments/a/seeds", 0), "experiments.a.seeds: 0 is less than the minimum"),
    (
        with_change("experiments/a/sweep", {"train.seed": [0, 1]}, with_change("experiments/a/seeds", 2)),
        "experiments.a.seeds: give seeds or a train.seed sweep, not both",
    ),
    (with_change("figures", {"fig3": {"depth": "a", "settings": {"width": 3}}}), "figures.fig3.settings: unknown key"),
    (with_change("figures", {"fig3": {"depth": "a", "settings": {"depth": "deep"}}}), "figures.fig3.settings.depth"),
    (with_change("analysis", {"opm_alpha": 1.5}), "analysis.opm_alpha"),
    (with_change("analysis", {"max_steps": {"hessian": 0}}), "analysis.max_steps.hessian"),
    (
        with_change("figures", {"figS1": {"grokking": "a", "depth": "a"}}),
        "figures.figS1.depth: experiment 'a' already plays role 'grokking'",
    ),
    (with_change("analysis", {"max_steps": {"magic": 3}}), "analysis.max_steps"),
]


@pytest.mark.parametrize(("config", "expected"), MALFORMED, ids=[m[1][:40] for m in MALFORMED])
def test_malformed_config_names_its_key_path(config, expected):
    with pytest.raises(ConfigError) as error:
        load_config(config, SCHEMA)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_valid_config_expands_sweeps_into_stable_readable_ids():
    config = with_change("experiments/a/sweep", {"model.depth": [2, 8, 12], "model.width": [64, 1024]})
    runs = load_config(config, SCHEMA)
    assert list(runs)[:2] == ["a/d02_w0064", "a/d02_w1024"]
    assert len(runs) == 6
    spec = runs["a/d12_w1024"]
    assert spec["model"]["depth"] == 12 and spec["model"]["width"] == 1024
    assert spec["train"]["steps"] == 100 and spec["train"]["lr"] == 1e-3  # defaults filled in
    assert runs == load_config(copy.deepcopy(config), SCHEMA)  # stable


def test_seeds_become_replicate_runs_with_their_own_train_seed():
    config = with_change("experiments/a/sweep", {"model.width": [16, 32]}, with_change("experiments/a/seeds", 3))
    config["experiments"]["a"]["train"] = {"seed": 10}
    runs = load_config(config, SCHEMA)
    assert list(runs) == [f"a/w{w}_s{s}" for w in (16, 32) for s in (10, 11, 12)]
    assert [run["train"]["seed"] for run in runs.values()] == [10, 11, 12] * 2
    single = load_config(with_change("experiments/a/seeds", 1), SCHEMA)
    assert list(single) == ["a/base"]  # one seed keeps the run ids of a config without seeds


def test_figure_settings_are_not_roles():
    from netdyn.config import figure_roles, figure_settings

    config = with_change("figures", {"fig3": {"depth": "a", "settings": {"depth": 2}}})
    load_config(config, SCHEMA)
    assert figure_roles(config, "fig3") == {"depth": ["a"]} and figure_settings(config, "fig3") == {"depth": 2}


def test_max_steps_thins_one_analysis_evenly_keeping_the_first_and_final_steps():
    config = with_change("experiments/a/snapshots", {"log": 40})
    config["experiments"]["a"]["analysis"] = {"max_steps": {"hessian": 5, "cka": 1}}
    analysis = load_config(config, SCHEMA)["a/base"]["analysis"]
    steps, thinned = analysis["steps"], analysis["steps_of"]["hessian"]
    assert len(steps) > 5 and len(thinned) == 5 and set(thinned) <= set(steps)
    assert thinned[0] == steps[0] and thinned[-1] == steps[-1]
    positions = [steps.index(step) for step in thinned]
    gaps = [b - a for a, b in zip(positions, positions[1:], strict=False)]
    assert max(gaps) - min(gaps) <= 1
    assert analysis["steps_of"]["cka"] == [steps[-1]] and analysis["steps_of"]["rpd"] == steps


def test_experiment_settings_override_defaults_and_epochs_become_steps():
    config = with_change("experiments/a/train", {"epochs": 3, "steps": None, "n_train": 1000, "batch_size": 128})
    run = expand_runs(config, load_yaml(SCHEMA))["a/base"]
    assert run["train"]["steps"] == 3 * (1000 // 128)
    assert run["train"]["batch_size"] == 128


def test_shipped_configs_are_valid():
    for path in [ROOT / "config.yaml", *sorted((ROOT / "presets").glob("*.yaml"))]:
        assert load_config(load_yaml(path), SCHEMA), path


@pytest.mark.parametrize(
    ("schedule", "total", "expected"),
    [
        ([5, 3], 10, [0, 3, 5, 10]),
        ({"log": 4}, 1000, [0, 1, 10, 100, 1000]),
        ({"log": {"num": 3, "stop": 100}, "dense_until": 3}, 500, [0, 1, 2, 3, 10, 100, 500]),
    ],
)
def test_snapshot_schedule_always_holds_first_and_last_step(schedule, total, expected):
    assert snapshot_steps(schedule, total, "x") == expected


def test_dumps_beyond_the_disk_limit_stop_with_advice_and_temporary_dumps_count_once():
    config = with_change("experiments/a/sweep", {"model.width": [2048, 4096]})
    config["dumps"] = {"max_gb": 1}
    with pytest.raises(
        ConfigError, match=r"dumps.max_gb: the activation dumps would take about .* dumps.dtype: float16"
    ):
        load_config(config, SCHEMA)
    config["dumps"] = {"max_gb": 1000}
    from netdyn.config import check_dump_size, dump_bytes

    runs = load_config(config, SCHEMA)
    sizes = [dump_bytes(run, "float32") for run in runs.values()]
    # every snapshot x 4,000 mnist5k training analysis samples x (h and x of 2 layers + logits) x 4 B
    run = runs["a/w2048"]
    expected = len(run["snapshots"]) * 4000 * (2 * 2048 * 2 + 10) * 4
    assert sizes[0] == expected
    assert check_dump_size(runs, {"temporary": True}) == pytest.approx(max(sizes) / 1e9)
    assert check_dump_size(runs, {"dtype": "float16"}) == pytest.approx(sum(sizes) / 2e9)


LEAVES = [
    "defaults/train/lr",
    "defaults/train/batch_size",
    "defaults/train/steps",
    "experiments/a/model/depth",
    "experiments/a/model/width",
    "experiments/a/model/activation",
    "experiments/a/model/dropout",
    "experiments/a/train/optimizer",
    "experiments/a/snapshots",
    "experiments/a/analysis/samples",
    "experiments/a/analysis/rpd_bins",
]


@settings(max_examples=60, deadline=None)
@given(
    leaf=st.sampled_from(LEAVES),
    value=st.one_of(
        st.text(max_size=5), st.integers(-5, 3), st.floats(allow_nan=False, allow_infinity=False), st.none(),
        st.lists(st.integers(-2, 5), max_size=3), st.booleans(),
    ),
)  # fmt: skip
def test_any_mutated_config_is_valid_or_rejected_naming_its_key(leaf, value):
    config = with_change(leaf, value)
    try:
        runs = load_config(config, SCHEMA)
    except ConfigError as error:
        message = str(error)
        parent = ".".join(leaf.split("/")[:2])  # defaults.train or experiments.a
        assert message.startswith((parent, "experiments.a", "dumps.max_gb")), message
        assert "\n" not in message
    else:
        assert runs["a/base"]["model"]["depth"] >= 0


def test_snapshot_weights_analysed_keeps_the_steps_its_analyses_read_and_the_final_one():
    config = with_change("experiments/a/snapshots", {"log": 12, "dense_until": 5, "weights": "analysed"})
    config["experiments"]["a"]["analysis"] = {
        "run": ["rpd", "cka"],
        "final_step_only": ["cka"],
        "max_steps": {"rpd": 3},
    }
    run = load_config(config, SCHEMA)["a/base"]
    rpd = run["analysis"]["steps_of"]["rpd"]
    assert run["weights"] == sorted(set(rpd) | {run["snapshots"][-1]}) and len(run["weights"]) == 3
    assert "weights" in training_spec(run)  # which weights a job writes is part of its training spec
    config["experiments"]["a"]["analysis"] = {"run": []}  # no analysis: only the final weights
    assert load_config(config, SCHEMA)["a/base"]["weights"] == [100]
    config["experiments"]["a"]["snapshots"]["weights"] = "all"  # the default: every step, and no key at all
    assert "weights" not in load_config(config, SCHEMA)["a/base"]
    config["experiments"]["a"]["snapshots"]["weights"] = "some"
    with pytest.raises(ConfigError, match="experiments.a.snapshots.weights: 'some' is not one of"):
        load_config(config, SCHEMA)
