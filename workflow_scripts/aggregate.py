"""Rule aggregate: one experiment's metrics of every run, joined with each run's settings (netdyn.tables)."""

from netdyn.atomic import write_csv
from netdyn.logs import logged
from netdyn.tables import experiment_table, load_runs

with logged(snakemake.log[0]):
    write_csv(snakemake.output[0], experiment_table(load_runs(snakemake.params.folders)))
