"""Rules analyse_<stage>: one analysis stage of one run, or of every run of a stack group, at every analysed step
(netdyn.stages, the registry).

The stage is the rule's ``params.stage``; its tables go to the rule's outputs of the same names. A group's job
(``params.runs``) has a list per input, param and output, one entry per run, and runs the stage for each in turn."""

from netdyn.warmstart import hand_off

hand_off(globals())  # with NETDYN_WARM_START=1, run in a process that has imported torch (netdyn.warmstart)

import torch

from netdyn.atomic import write_csv
from netdyn.gpus import job_gpu_slot
from netdyn.logs import logged
from netdyn.stages import Sources, outputs, runner

with logged(snakemake.log[0]):
    slot = job_gpu_slot(snakemake.resources)  # before CUDA starts: this job's own GPU on a multi-GPU machine
    torch.set_num_threads(snakemake.threads)
    stage = snakemake.params.stage
    if sorted(outputs(stage)) != sorted(snakemake.output.keys()):
        raise ValueError(f"rule {snakemake.rule}: outputs {sorted(snakemake.output.keys())} != stage {stage}'s tables")
    grouped = "runs" in snakemake.params.keys()
    runs = list(snakemake.params.runs) if grouped else [snakemake.wildcards.run]
    count = len(runs)

    def field(container, key):
        value = container.get(key) if hasattr(container, "get") else None
        if value is None:
            return [None] * count
        return list(value) if grouped else [value]

    inputs, params = snakemake.input, snakemake.params
    columns = {key: field(inputs, key) for key in ("snapshots", "data", "activations", "history", "run_json")}
    settings = {key: field(params, key) for key in ("steps", "train_spec", "settings")}
    tables_out = {name: field(snakemake.output, name) for name in outputs(stage)}
    for index, run in enumerate(runs):
        sources = Sources(
            snapshots=columns["snapshots"][index],
            data=columns["data"][index],
            train_spec=settings["train_spec"][index],
            activations=columns["activations"][index],  # absent without dumps: fields computed from snapshots
            history=columns["history"][index],
            run_json=columns["run_json"][index],
        )
        if grouped:
            print(f"{stage}: run {index + 1} of {count}, {run}")
        tables = runner(stage)(run, sources, settings["steps"][index], settings["settings"][index], log=print)
        for name, table in tables.items():
            write_csv(tables_out[name][index], table)
