# Shared helpers: the validated run table and the paths the stages agree on.
import os
import re
import sys

# torch looks for out-of-tree device backends (entry points) at every import: about 1 s of each job's start-up here,
# for backends netdyn never uses (it runs on the CPU or CUDA). Jobs inherit the setting; an exported value wins.
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from netdyn.config import (
    ConfigError,
    check_dump_size,
    RUN_ID_PATTERN,
    dataset_definition,
    DUMP_DEFAULTS,
    dump_steps as steps_to_dump,
    figure_roles as experiments_by_role,
    figure_settings,
    load_config,
    stack_groups,
    training_spec,
    writes_dumps,
)
from netdyn.imports import code_inputs as closure_of
from netdyn.stages import STAGES

try:
    RUNS = load_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as error:
    sys.exit(f"config error: {error}")

DUMPS = {**DUMP_DEFAULTS, **config.get("dumps", {})}
print(
    f"netdyn: {len(RUNS)} runs; activation dumps at most {check_dump_size(RUNS, DUMPS):.2f} GB "
    f"(uncompressed, {DUMPS['dtype']}; limit dumps.max_gb = {DUMPS['max_gb']:g})",
    file=sys.stderr,
)
EXTERNAL_RUNS = [run for run, spec in RUNS.items() if "external" in spec]
# Runs imported from checkpoints; "(?!)" matches nothing when there are none.
EXTERNAL_PATTERN = "|".join(re.escape(run) for run in EXTERNAL_RUNS) or "(?!)"
# Stacked-training groups (netdyn.config.stack_groups): each trains in one job of its own rule (rules/train.smk);
# every other run has a job of rule train.
STACKS = stack_groups(RUNS)
STACKED_RUNS = {run for members in STACKS.values() for run in members}
SINGLE_PATTERN = (
    "|".join(re.escape(run) for run in RUNS if run not in STACKED_RUNS) or "(?!)"
)


NON_WORD = re.compile(r"\W")


def stack_rule(group):
    """The name of stack group ``group``'s training rule: ``train_<experiment>_stack<k>``."""
    return f"train_{NON_WORD.sub('_', group)}"


def external_checkpoints(wildcards):
    return list(RUNS[wildcards.run]["external"]["files"].values())


def dump_directory():
    """The activation folder of a run; temporary when ``dumps.temporary`` is set."""
    folder = directory("results/runs/{run}/activations")
    return temp(folder) if DUMPS["temporary"] else folder


def code_inputs(script, *modules):
    """The netdyn files workflow script ``script`` can import (netdyn.imports), with those of ``modules`` (dotted
    names it imports dynamically): editing any of them reruns exactly the jobs that can run it.
    """
    path = os.path.join(workflow.basedir, "workflow_scripts", f"{script}.py")
    return closure_of(path, workflow.basedir, *modules)


def run_training_spec(wildcards):
    return training_spec(RUNS[wildcards.run])


def key_sorted(value):
    """``value`` with every dict's keys sorted: reordering keys in a YAML file must not look like a changed param."""
    if isinstance(value, dict):
        return {key: key_sorted(value[key]) for key in sorted(value)}
    return [key_sorted(item) for item in value] if isinstance(value, list) else value


def analysis_setting(key):
    """A params function giving one of a run's analysis settings."""
    return lambda wildcards: key_sorted(RUNS[wildcards.run]["analysis"][key])


def analysis_steps(name):
    """A params function giving the snapshot steps analysis ``name`` looks at for a run."""
    return lambda wildcards: RUNS[wildcards.run]["analysis"]["steps_of"][name]


def dump_steps(wildcards):
    """Steps that need an activation dump: those of every requested analysis that reads dumps."""
    return steps_to_dump(RUNS[wildcards.run])


def activation_input(wildcards):
    """The run's activation dumps as an input, where it has them (netdyn.config.writes_dumps); without them the
    analysis computes the fields from the snapshots."""
    if writes_dumps(RUNS[wildcards.run], DUMPS):
        return {"activations": f"results/runs/{wildcards.run}/activations"}
    return {}


def run_dataset(wildcards):
    return f"results/data/{RUNS[wildcards.run]['dataset']}.h5"


def stage_inputs(name):
    """An input function for stage ``name``'s rule: the run's snapshots and dataset, its activation dumps where it has
    them and the stage reads fields, its history and record where the stage reads them, and the code it runs.
    """
    stage = STAGES[name]
    code = code_inputs("analyse", f"netdyn.stages.{name}")

    def inputs(wildcards):
        run = wildcards.run
        found = {
            "snapshots": f"results/runs/{run}/snapshots",
            "data": run_dataset(wildcards),
        }
        if stage.reads_fields:
            found.update(activation_input(wildcards))
        if stage.reads_history:
            found["history"] = f"results/runs/{run}/history.csv"
            found["run_json"] = f"results/runs/{run}/run.json"
        return {**found, "code": code}

    return inputs


def stage_params(name):
    """The params of stage ``name``'s rule: the stage, its steps, the run's training spec and its settings."""
    return {
        "stage": name,
        "steps": analysis_steps(name),
        "train_spec": lambda wildcards: key_sorted(RUNS[wildcards.run]["train"]),
        "settings": lambda wildcards: key_sorted(
            {key: RUNS[wildcards.run]["analysis"][key] for key in STAGES[name].settings}
        ),
    }


def run_outputs(run):
    """The per-run tables of ``run``'s requested stages (netdyn.stages.Stage.tables)."""
    requested = RUNS[run]["analysis"]["run"]
    return [
        f"results/runs/{run}/{table}.csv"
        for name, stage in STAGES.items()
        if name in requested
        for table in stage.tables
    ]


def metric_parts(wildcards):
    """The per-stage metric tables that ``collect`` merges for one run."""
    requested = RUNS[wildcards.run]["analysis"]["run"]
    return [
        f"results/runs/{wildcards.run}/parts/{name}.csv"
        for name, stage in STAGES.items()
        if name in requested and stage.metrics
    ]


FIGURES = config.get("figures", {})


def figure_roles(figure):
    """``{run folder: role}`` of every run that feeds ``figure``."""
    roles = {}
    for role, names in experiments_by_role(config, figure).items():
        for experiment in names:
            for run, spec in RUNS.items():
                if spec["experiment"] == experiment:
                    roles[f"results/runs/{run}"] = role
    return roles


def run_tables(run):
    """Every table ``collect`` and the curve analyses write for ``run``."""
    tables = [
        f"results/runs/{run}/{name}"
        for name in ("metrics.csv", "events.json", "history.csv", "run.json")
    ]
    return tables + run_outputs(run)


def figure_inputs(wildcards):
    return [
        table
        for folder in figure_roles(wildcards.figure)
        for table in run_tables(folder.removeprefix("results/runs/"))
    ]


def experiment_runs(experiment):
    return [run for run, spec in RUNS.items() if spec["experiment"] == experiment]


def claim_roles():
    """``{run folder: role}`` over every figure, for the claims scorecard (a run keeps its first role)."""
    roles = {}
    for figure in FIGURES:
        for folder, role in figure_roles(figure).items():
            roles.setdefault(folder, role)
    return roles


def caption_text(figure):
    """The figure's caption (report/{figure}.rst), which says what it shows and which claim it tests."""
    return open(os.path.join(workflow.basedir, "report", f"{figure}.rst")).read()


def figure_experiments(figure):
    """The resolved training and analysis settings of the experiments behind a figure, for its caption."""
    settings = {}
    for role, names in experiments_by_role(config, figure).items():
        for experiment in names:
            runs = experiment_runs(experiment)
            settings[experiment] = {
                "role": role,
                "runs": runs,
                "first_run": RUNS[runs[0]],
            }
    return settings


def claims_context():
    """What the claims scorecard needs to know beyond the tables (e.g. the dataset of each role)."""
    datasets = {spec["dataset"] for spec in RUNS.values()}
    sources = {dataset_definition(config, name)["source"] for name in datasets}
    return {"datasets": sorted(datasets), "sources": sorted(sources)}


def all_outputs():
    outputs = []
    for run, spec in RUNS.items():
        outputs += [
            f"results/runs/{run}/metrics.csv",
            f"results/runs/{run}/events.json",
            *run_outputs(run),
        ]
    experiments = sorted({spec["experiment"] for spec in RUNS.values()})
    outputs += [f"results/tables/{experiment}.csv" for experiment in experiments]
    outputs += [
        f"results/figures/{figure}.{ext}"
        for figure in FIGURES
        for ext in ("png", "pdf", "csv")
    ]
    if FIGURES:
        outputs.append("results/claims.csv")
    return outputs
