# Shared helpers: the validated run table and the paths the stages agree on.
import os
import sys

from netdyn.config import (
    ConfigError,
    RUN_ID_PATTERN,
    dataset_definition,
    DUMP_DEFAULTS,
    load_config,
    training_spec,
)

try:
    RUNS = load_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as error:
    sys.exit(f"config error: {error}")

DUMPS = {**DUMP_DEFAULTS, **config.get("dumps", {})}


def dump_directory():
    """The activation folder of a run; temporary when ``dumps.temporary`` is set."""
    folder = directory("results/runs/{run}/activations")
    return temp(folder) if DUMPS["temporary"] else folder


def library(*modules):
    """Library modules as input files, so that editing one module reruns exactly the jobs using it."""
    root = os.path.relpath(os.path.join(workflow.basedir, "netdyn"))
    return [os.path.join(root, f"{module}.py") for module in modules]


def run_training_spec(wildcards):
    return training_spec(RUNS[wildcards.run])


def analysis_setting(*keys):
    """A params function giving a run's analysis settings ``keys`` (one value, or a dict of several)."""

    def get(wildcards):
        settings = RUNS[wildcards.run]["analysis"]
        return settings[keys[0]] if len(keys) == 1 else {key: settings[key] for key in keys}

    return get


DUMP_ANALYSES = {"rpd", "pruning", "geometry"}
CURVE_TABLES = {"rpd": "rpd", "basins": "basins", "geometry": "geometry", "projection": "projection"}
METRIC_PARTS = {"rpd", "pruning", "basins", "geometry", "bn_modes"}


def run_dataset(wildcards):
    return f"results/data/{RUNS[wildcards.run]['dataset']}.h5"


def metric_parts(wildcards):
    """The per-analysis metric tables that ``collect`` merges for one run."""
    requested = RUNS[wildcards.run]["analysis"]["run"]
    return [f"results/runs/{wildcards.run}/parts/{name}.csv" for name in requested if name in METRIC_PARTS]


def all_outputs():
    outputs = []
    for run, spec in RUNS.items():
        outputs += [f"results/runs/{run}/metrics.csv", f"results/runs/{run}/events.json"]
        for name in spec["analysis"]["run"]:
            if name in CURVE_TABLES:
                outputs.append(f"results/runs/{run}/{CURVE_TABLES[name]}.csv")
    return outputs
