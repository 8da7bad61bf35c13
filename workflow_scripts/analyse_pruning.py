"""Rule analyse_pruning: LP and L-map pruning accuracy for every start layer (netdyn.pruning)."""

from netdyn.atomic import write_csv
from netdyn.pipeline import pruning_tables
from netdyn.workflow import logged

with logged(snakemake.log[0]):
    metrics = pruning_tables(
        snakemake.wildcards.run,
        snakemake.input.snapshots,
        snakemake.input.data,
        snakemake.params.steps,
        snakemake.params.train_spec,
        **snakemake.params.settings,
    )
    write_csv(snakemake.output.metrics, metrics)
