# Shared helpers: the validated run table and the paths the stages agree on.
import os
import sys

from netdyn.config import ConfigError, dataset_definition, load_config, RUN_ID_PATTERN

try:
    RUNS = load_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as error:
    sys.exit(f"config error: {error}")


def library(*modules):
    """Library modules as input files, so that editing one module reruns exactly the jobs using it."""
    root = os.path.relpath(os.path.join(workflow.basedir, "netdyn"))
    return [os.path.join(root, f"{module}.py") for module in modules]


def run_spec(wildcards):
    return RUNS[wildcards.run]


def run_dataset(wildcards):
    return f"results/data/{RUNS[wildcards.run]['dataset']}.h5"


def all_outputs():
    return [f"results/runs/{run}/run.json" for run in RUNS]
