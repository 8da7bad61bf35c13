"""Rules analyse_<stage>: one analysis stage of one run at every analysed step (netdyn.stages, the registry).

The stage is the rule's ``params.stage``; its tables go to the rule's outputs of the same names."""

import torch

from netdyn.atomic import write_csv
from netdyn.logs import logged
from netdyn.stages import Sources, outputs, runner

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    stage = snakemake.params.stage
    if sorted(outputs(stage)) != sorted(snakemake.output.keys()):
        raise ValueError(f"rule {snakemake.rule}: outputs {sorted(snakemake.output.keys())} != stage {stage}'s tables")
    sources = Sources(
        snapshots=snakemake.input.snapshots,
        data=snakemake.input.data,
        train_spec=snakemake.params.train_spec,
        activations=snakemake.input.get("activations"),  # absent without dumps: fields computed from snapshots
        history=snakemake.input.get("history"),
        run_json=snakemake.input.get("run_json"),
    )
    tables = runner(stage)(
        snakemake.wildcards.run, sources, snakemake.params.steps, snakemake.params.settings, log=print
    )
    for name, table in tables.items():
        write_csv(snakemake.output[name], table)
