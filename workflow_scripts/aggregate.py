"""Rule aggregate: one experiment's metrics of every run, joined with each run's settings (netdyn.collection)."""

from netdyn.atomic import write_csv
from netdyn.collection import experiment_table, load_runs
from netdyn.workflow import logged

with logged(snakemake.log[0]):
    write_csv(snakemake.output[0], experiment_table(load_runs(snakemake.params.folders)))
