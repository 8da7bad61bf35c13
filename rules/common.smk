# Shared helpers: the validated run table and the paths every rule agrees on.
import sys

from netdyn.config import ConfigError, dataset_definition, load_config, RUN_ID_PATTERN

try:
    RUNS = load_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as error:
    sys.exit(f"config error: {error}")


wildcard_constraints:
    run=RUN_ID_PATTERN,
    dataset=r"[a-z][a-z0-9_]*",


def library(*modules):
    """The netdyn source files a rule runs, as inputs: editing one reruns exactly its rules."""
    return [f"netdyn/{module}.py" for module in modules]


def run_spec(wildcards):
    return RUNS[wildcards.run]


def run_dataset(wildcards):
    return f"results/data/{RUNS[wildcards.run]['dataset']}.h5"


def all_outputs():
    return [f"results/runs/{run}/run.json" for run in RUNS]
