"""Rule analyse_rpd: RPD curves and gradients of every hidden layer, and each neuron's mode, at every analysed step
(netdyn.rpd, netdyn.modes)."""

from netdyn.atomic import write_csv
from netdyn.pipeline import rpd_tables
from netdyn.workflow import logged

with logged(snakemake.log[0]):
    curves, neurons, metrics = rpd_tables(
        snakemake.wildcards.run,
        snakemake.input.snapshots,
        snakemake.input.get("activations"),  # absent when the run has no dumps: fields computed from snapshots
        snakemake.params.steps,
        data_path=snakemake.input.data,
        train_spec=snakemake.params.train_spec,
        **snakemake.params.settings,
    )
    write_csv(snakemake.output.curves, curves)
    write_csv(snakemake.output.neurons, neurons)
    write_csv(snakemake.output.metrics, metrics)
