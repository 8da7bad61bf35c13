"""Rule analyse_basins: accuracy under input and weight noise, and the basin sizes (netdyn.basins)."""

from netdyn.atomic import write_csv
from netdyn.pipeline import basin_tables
from netdyn.workflow import logged

with logged(snakemake.log[0]):
    curves, metrics = basin_tables(
        snakemake.wildcards.run,
        snakemake.input.snapshots,
        snakemake.input.data,
        snakemake.params.steps,
        snakemake.params.train_spec,
        snakemake.params.settings,
        threads=snakemake.threads,
    )
    write_csv(snakemake.output.curves, curves)
    write_csv(snakemake.output.metrics, metrics)
