# Shared helpers: the validated run table and the paths the stages agree on.
import functools
import os
import re
import socket
import sys

# torch looks for out-of-tree device backends (entry points) at every import: about 1 s of each job's start-up here,
# for backends netdyn never uses (it runs on the CPU or CUDA). Jobs inherit the setting; an exported value wins.
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
# Jobs on this host start warm: in a forked child of a server that has imported torch once (netdyn.warmstart, about
# 3 s saved per job here). Cluster jobs run elsewhere or under SLURM and start cold. NETDYN_WARM_START=0 turns it off.
if workflow.is_main_process:
    os.environ.setdefault("NETDYN_WARM_START", "1")
    os.environ.setdefault("NETDYN_WARM_HOST", socket.gethostname())

from netdyn.claims import scored_role
from netdyn.config import (
    ConfigError,
    check_dump_size,
    RUN_ID_PATTERN,
    dataset_definition,
    DUMP_DEFAULTS,
    dump_steps,
    figure_roles,
    figure_settings,
    load_config,
    stack_groups,
    train_size,
    training_spec,
    writes_dumps,
)
from netdyn.rerun_triggers import script_dependencies
from netdyn.stages import STAGES, outputs as stage_outputs

# The repository's folder, found from this file, not the working directory: the workflow also runs with --directory
# elsewhere and as a module of another Snakefile (whose folder workflow.basedir would then be). Single files are read
# through workflow.source_path(); the code closure of a script needs the folder itself, which a local module keeps.
WORKFLOW_DIR = os.path.dirname(str(workflow.current_basedir))

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
EXPERIMENTS = sorted({spec["experiment"] for spec in RUNS.values()})
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


def external_checkpoints(wildcards):
    return list(RUNS[wildcards.run]["external"]["files"].values())


def dump_directory():
    """The activation folder of a run; temporary when ``dumps.temporary`` is set."""
    folder = directory("results/runs/{run}/activations")
    return temp(folder) if DUMPS["temporary"] else folder


def script_code(script, *modules):
    """The netdyn files workflow script ``script`` can import (netdyn.rerun_triggers), with those of ``modules`` (dotted
    names it imports dynamically): editing any of them reruns exactly the jobs that can run it.
    """
    return list(_script_code(script, *modules))


@functools.cache  # a closure takes ~60 ms and a preset's stack groups ask for the same few hundreds of times
def _script_code(script, *modules):
    path = os.path.join(WORKFLOW_DIR, "workflow_scripts", f"{script}.py")
    return tuple(script_dependencies(path, WORKFLOW_DIR, *modules))


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


def run_dump_steps(wildcards):
    """Steps that need an activation dump: those of every requested analysis that reads dumps."""
    return dump_steps(RUNS[wildcards.run])


def run_dataset(wildcards):
    return f"results/data/{RUNS[wildcards.run]['dataset']}.h5"


def run_stage_inputs(name, run):
    """Stage ``name``'s inputs for ``run``: its snapshots and dataset, its activation dumps where it has them and the
    stage reads fields, its history and record where the stage reads them."""
    stage = STAGES[name]
    found = {
        "snapshots": f"results/runs/{run}/snapshots",
        "data": f"results/data/{RUNS[run]['dataset']}.h5",
    }
    if stage.reads_fields and writes_dumps(RUNS[run], DUMPS):
        found["activations"] = f"results/runs/{run}/activations"
    if stage.reads_history:
        found["history"] = f"results/runs/{run}/history.csv"
        found["run_json"] = f"results/runs/{run}/run.json"
    return found


def stage_inputs(name):
    """An input function for stage ``name``'s rule: run_stage_inputs and the code it runs."""
    code = script_code("analyse", f"netdyn.stages.{name}")
    return lambda wildcards: {**run_stage_inputs(name, wildcards.run), "code": code}


def run_stage_params(name, run):
    """Stage ``name``'s params for ``run``: its steps, the run's training spec and its settings."""
    analysis = RUNS[run]["analysis"]
    return {
        "steps": analysis["steps_of"][name],
        "train_spec": key_sorted(RUNS[run]["train"]),
        "settings": key_sorted({key: analysis[key] for key in STAGES[name].settings}),
    }


def stage_params(name):
    """The params of stage ``name``'s rule: the stage and run_stage_params."""
    return {"stage": name} | {
        key: (lambda wildcards, key=key: run_stage_params(name, wildcards.run)[key])
        for key in ("steps", "train_spec", "settings")
    }


def stage_table_paths(name, run):
    """``{output name: path}`` of stage ``name``'s tables for ``run`` (netdyn.stages.outputs)."""
    return {
        table: (
            f"results/runs/{run}/parts/{name}.csv"
            if table == "metrics"
            else f"results/runs/{run}/{table}.csv"
        )
        for table in stage_outputs(name)
    }


def group_rule(rule, group):
    """The name of stack group ``group``'s job of ``rule``: ``<rule>__<group>``, e.g. ``train__fig4_width__stack1``."""
    return f"{rule}__{group}"


def group_stages(group):
    """The stages the group's experiment requests, in registry order."""
    requested = RUNS[STACKS[group][0]]["analysis"]["run"]
    return [name for name in STAGES if name in requested]


def group_resources(rule, **own):
    """A stack group's resources: its own, updated with what a profile's ``set-resources`` gives ``rule`` (a GPU
    partition, a time limit, ...), since set-resources matches rule names exactly and a group's rule is
    ``<rule>__<group>``."""
    given = workflow.resource_settings.overwrite_resources.get(rule, {})
    raw = {name: getattr(value, "raw", value) for name, value in dict(given).items()}
    return own | {name: value for name, value in raw.items() if value is not None}


def group_lists(per_run):
    """``{key: [value of each member]}`` from a list of per-member dicts with the same keys."""
    return {key: [entry[key] for entry in per_run] for key in per_run[0]}


def run_outputs(run):
    """The per-run tables of ``run``'s requested stages (netdyn.stages.Stage.tables)."""
    requested = RUNS[run]["analysis"]["run"]
    return [
        f"results/runs/{run}/{table}.csv"
        for name, stage in STAGES.items()
        if name in requested
        for table in stage.tables
    ]


def metric_parts(run):
    """The per-stage metric tables that ``collect`` merges for one run."""
    requested = RUNS[run]["analysis"]["run"]
    return [
        f"results/runs/{run}/parts/{name}.csv"
        for name, stage in STAGES.items()
        if name in requested and stage.metrics
    ]


FIGURES = config.get("figures", {})


def figure_run_roles(figure):
    """``{run folder: role}`` of every run that feeds ``figure``."""
    roles = {}
    for role, names in figure_roles(config, figure).items():
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
        for folder in figure_run_roles(wildcards.figure)
        for table in run_tables(folder.removeprefix("results/runs/"))
    ]


def experiment_runs(experiment):
    return [run for run, spec in RUNS.items() if spec["experiment"] == experiment]


def claim_roles():
    """``{run folder: role}`` for the claims scorecard: the roles of the paper's figures and those of the
    supplementary figures that the beyond-paper rows read (netdyn.claims.scored_role); a run keeps its first role.
    """
    roles = {}
    for figure in FIGURES:
        for folder, role in figure_run_roles(figure).items():
            if scored_role(figure, role):
                roles.setdefault(folder, role)
    return roles


def figure_experiments(figure):
    """The resolved training and analysis settings of the experiments behind a figure, for its caption."""
    settings = {}
    for role, names in figure_roles(config, figure).items():
        for experiment in names:
            runs = experiment_runs(experiment)
            settings[experiment] = {
                "role": role,
                "runs": runs,
                "first_run": RUNS[runs[0]],
            }
    return settings


def flatness_runs():
    """The runs of Fig. S1's ``sweep`` role, whose flatness the report correlates with test accuracy."""
    if "figS1" not in FIGURES:
        return []
    roles = figure_run_roles("figS1")
    return [
        folder.removeprefix("results/runs/")
        for folder in roles
        if roles[folder] == "sweep"
    ]


def claims_context():
    """What the claims scorecard needs to know beyond the tables (e.g. the dataset of each role)."""
    datasets = {spec["dataset"] for spec in RUNS.values()}
    sources = {dataset_definition(config, name)["source"] for name in datasets}
    context = {"datasets": sorted(datasets), "sources": sorted(sources)}
    sizes = {train_size(config, name) for name in datasets}
    # The full training set, for runs with train.n_train null.
    if len(sizes) == 1 and None not in sizes:
        context["n_train"] = sizes.pop()
    return context


def all_outputs():
    outputs = []
    for run, spec in RUNS.items():
        outputs += [
            f"results/runs/{run}/metrics.csv",
            f"results/runs/{run}/events.json",
            *run_outputs(run),
        ]
    outputs += [f"results/tables/{experiment}.csv" for experiment in EXPERIMENTS]
    outputs += [
        f"results/figures/{figure}.{ext}"
        for figure in FIGURES
        for ext in ("png", "pdf", "csv")
    ]
    if FIGURES:
        outputs += ["results/claims.csv", "results/report/front.rst"]
    if flatness_runs():
        outputs.append("results/tables/flatness_correlations.csv")
    return outputs
